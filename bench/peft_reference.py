"""Reference speed of PyTorch + transformers + PEFT on the figures `prefix-subspace speed`
measures (same names, same JSON keys), for scripts/speed.sh's side-by-side table.

Usage (the venv: scripts/reference/venv.sh creates it and prints its python):
  PY=$(scripts/reference/venv.sh)
  $PY bench/peft_reference.py --only fixed-prefix                    # one figure per process: clean peak RSS
  $PY bench/peft_reference.py --only sst2-prefix --data-dir ../shared/data/glue
  $PY bench/peft_reference.py --only fixed-full --shape base --steps 3
  $PY bench/peft_reference.py                                        # every figure, one process

Figures (--only; default: all, in one process, each then reporting the peak RSS so far):
  fixed-prefix  PEFT prefix tuning (PrefixTuningConfig, SEQ_CLS, 16 virtual tokens, no
                projection): training steps at batch 16 x 128 random ids (full attention
                mask); --warmup untimed steps, then the median of --steps timed steps
  fixed-lora    LoRA (r 8, alpha 16, query/value (MPNet: q/v), no LoRA dropout), same shape
  fixed-full    full fine-tuning, same shape
  sst2-prefix   prefix tuning on 16 SST-2 train examples per class (32, seed --seed, or the
                ids of a `prefix-subspace speed --split-out` / run split.json via --split-json),
                tokenised once, batch 8, dynamic padding per batch, shuffled each epoch;
                --epochs epochs, the first untimed; samples/s over the timed steps
  sst2-lora     the same with LoRA (the comparison on MPNet, which PEFT cannot prefix-tune)
  infer-prefix  inference with the prefix model on SST-2 dev (872 sentences), batch 64,
                dynamic padding, file order, eval mode, torch.inference_mode; one untimed
                pass then the median of --passes passes
  infer-prefix-sorted   the same with the sentences sorted by length first (what
                `prefix-subspace` eval does), for a like-for-like comparison
  infer-lora, infer-lora-sorted   the same two with the LoRA model (adapter not merged)

Every training figure: AutoModelForSequenceClassification (num_labels 2; the default model
folder has no classifier weights, so pooler + classifier start random), fp32, model.train()
(Hugging Face's dropout), cross-entropy, AdamW (weight decay 0.01) over the trainable
parameters, gradient clipping at 1.0, torch.set_num_threads(--threads). Peak RSS is
resource.getrusage(RUSAGE_SELF).ru_maxrss, in MiB. One JSON line per figure on stdout:
  {"impl":"peft","what":...,"samples_per_second":...,"step_seconds_median":...,"peak_rss_mb":...,"threads":...,...}
"""
import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
import warnings

FIGURES = ["fixed-prefix", "fixed-lora", "fixed-full", "sst2-prefix", "sst2-lora", "infer-prefix",
           "infer-prefix-sorted", "infer-lora", "infer-lora-sorted"]
HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HOME, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=FIGURES)
    ap.add_argument("--steps", type=int, default=10, help="timed steps of the fixed-shape figures")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of sst2-prefix (the first is warm-up)")
    ap.add_argument("--passes", type=int, default=3, help="timed passes of the inference figures")
    ap.add_argument("--batch", type=int, default=16, help="batch of the fixed shape")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per example of the fixed shape")
    ap.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"), help="GLUE folder (default: $GLUE_DIR)")
    ap.add_argument("--shape", choices=["model", "base"], default="model",
                    help="base: a random BERT-base-shaped model (12 x 768), fixed-shape figures only")
    ap.add_argument("--seed", type=int, default=13, help="seed of the SST-2 sample")
    ap.add_argument("--split-json", help="use the train_ids of this split.json (ours) for sst2-prefix")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (every figure runs there)")
    ap.add_argument("--phases", action="store_true",
                    help="also time the fixed-shape steps' phases (forward, backward, update; medians)")
    a = ap.parse_args()
    if a.epochs < 2 or a.steps < 1 or a.passes < 1:
        ap.error("--epochs must be at least 2, --steps and --passes at least 1")
    return a


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def load_base(args, num_labels=2):
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    if args.shape == "base":
        cfg = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512, num_labels=num_labels)
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32)
    return AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=num_labels, dtype=torch.float32)


def peft_compat():
    """transformers 5 renamed the `past_key_values` argument of BERT's forward to `cache` (the
    old name is still accepted, deprecated until 5.40), and PEFT 0.21's prefix tuning looks
    for the old name in the signature of BertForSequenceClassification.forward before
    passing the prefix: advertise it there (the call itself is unchanged)."""
    import inspect

    from transformers import BertForSequenceClassification as M

    sig = inspect.signature(M.forward)
    if "past_key_values" in sig.parameters:
        return
    ps = list(sig.parameters.values())
    at = next(i for i, p in enumerate(ps) if p.kind == p.VAR_KEYWORD)
    ps.insert(at, inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None))
    M.forward.__signature__ = sig.replace(parameters=ps)


def build(args, method):
    """The model of a method, in train mode, and its AdamW."""
    import torch
    from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

    torch.manual_seed(1)
    base = load_base(args)
    if method == "prefix":
        model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=16,
                                                        prefix_projection=False))
        lr = 5e-3
    elif method == "lora":
        # Query and value projections: BERT names them query/value, MPNet q/v.
        targets = ["q", "v"] if base.config.model_type == "mpnet" else ["query", "value"]
        model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                                                target_modules=targets))
        lr = 5e-4
    else:
        model = base
        lr = 2e-5
    model.to(args.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    return model, params, opt


def train_step(model, params, opt, ids, mask, labels, phases=None):
    """One step; with a list `phases`, also appends its (forward, backward, update) seconds,
    each phase waiting for its kernels on a GPU (as ours does with --phases)."""
    import torch

    dev = next(model.parameters()).device
    clock = [time.perf_counter()]

    def mark():
        if phases is None:
            return 0.0
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        now = time.perf_counter()
        s, clock[0] = now - clock[0], now
        return s

    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels.to(dev))
    forward = mark()
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    backward = mark()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    loss = out.loss.item()  # waits for the step's kernels on a GPU too
    if phases is not None:
        phases.append((forward, backward, mark()))
    return loss


def line(args, what, **kw):
    d = {"impl": "peft", "what": what, "samples_per_second": kw.pop("samples_per_second"),
         "step_seconds_median": kw.pop("step_seconds_median"), "peak_rss_mb": None, "threads": args.threads,
         "device": args.device}
    d.update(kw)
    return d


def fixed(args, what):
    import torch

    method = what.split("-", 1)[1]
    model, params, opt = build(args, method)
    g = torch.Generator().manual_seed(0)
    b, t = args.batch, args.seq_len
    ids = torch.randint(1000, 20000, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    labels = torch.arange(b) % 2
    times, phases = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        p = [] if args.phases else None
        train_step(model, params, opt, ids, mask, labels, p)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            phases += p or []
    med = statistics.median(times)
    extra = {}
    if args.phases:
        for i, k in enumerate(["forward", "backward", "update"]):
            extra[f"{k}_seconds_median"] = statistics.median(x[i] for x in phases)
    return line(args, what, samples_per_second=b / med, step_seconds_median=med, step_seconds_min=min(times),
                steps=args.steps, warmup_steps=args.warmup, batch=b, seq_len=t, method=method,
                shape="model" if args.shape == "model" else "base 12x768 (random weights)",
                trainable_parameters=sum(p.numel() for p in params), **extra)


def read_tsv(path):
    """(line number, sentence, label) of an SST-2 TSV (header on line 1)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, l in enumerate(f, start=1):
            if i == 1:
                continue
            l = l.rstrip("\n")
            if l:
                s, y = l.rsplit("\t", 1)
                rows.append((i, s, int(y)))
    return rows


def glue_file(args, name):
    if not args.data_dir:
        sys.exit("sst2 figures need --data-dir (the GLUE folder holding SST-2/) or $GLUE_DIR")
    return os.path.join(args.data_dir, "SST-2", name)


def pad(tokenised, pad_id=0):
    import torch

    t = max(len(x) for x in tokenised)
    ids = torch.full((len(tokenised), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(tokenised), t), dtype=torch.long)
    for r, x in enumerate(tokenised):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    return ids, mask


def tokenizer(args):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(args.model)


def sst2(args, what):
    import torch

    rows = read_tsv(glue_file(args, "train.tsv"))
    if args.split_json:
        by_line = {i: (s, y) for i, s, y in rows}
        ids = json.load(open(args.split_json))["train_ids"]
        sample = [(n, *by_line[n]) for n in (int(x.rsplit(":", 1)[1]) for x in ids)]
        source = f"train_ids of {args.split_json}"
    else:
        rng = random.Random(args.seed)
        sample = []
        for c in (0, 1):
            sample += rng.sample([r for r in rows if r[2] == c], 16)
        source = f"16 per class, random.Random({args.seed})"
    tok = tokenizer(args)
    enc = [tok(s, truncation=True, max_length=128)["input_ids"] for _, s, _ in sample]
    labels = [y for _, _, y in sample]
    method = what.split("-")[1]
    model, params, opt = build(args, method)
    rng = random.Random(1)
    order = list(range(len(sample)))
    times, samples = [], 0
    for epoch in range(args.epochs):
        rng.shuffle(order)
        for k in range(0, len(order), 8):
            chunk = order[k : k + 8]
            t0 = time.perf_counter()
            ids, mask = pad([enc[i] for i in chunk], tok.pad_token_id)
            train_step(model, params, opt, ids, mask, torch.tensor([labels[i] for i in chunk]))
            if epoch > 0:
                times.append(time.perf_counter() - t0)
                samples += len(chunk)
    return line(args, what, samples_per_second=samples / sum(times), step_seconds_median=statistics.median(times),
                steps=len(times), epochs_timed=args.epochs - 1, train_examples=len(sample), batch=8,
                mean_tokens=sum(map(len, enc)) / len(enc), sample=source, method=method)


def infer(args, what):
    import torch

    rows = read_tsv(glue_file(args, "dev.tsv"))
    tok = tokenizer(args)
    enc = [tok(s, truncation=True, max_length=128)["input_ids"] for _, s, _ in rows]
    order = list(range(len(enc)))
    if what.endswith("-sorted"):
        order.sort(key=lambda i: len(enc[i]))
    method = what.split("-")[1]
    model, _, _ = build(args, method)
    model.eval()
    bs = 64

    def one_pass():
        out = []
        with torch.inference_mode():
            for k in range(0, len(order), bs):
                ids, mask = pad([enc[i] for i in order[k : k + bs]], tok.pad_token_id)
                out.append(model(input_ids=ids.to(args.device), attention_mask=mask.to(args.device)).logits.softmax(-1))
        return torch.cat(out).cpu()  # ours copies each batch's probabilities back too

    one_pass()
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    batches = -(-len(enc) // bs)
    return line(args, what, samples_per_second=len(enc) / med, step_seconds_median=med / batches,
                step=f"one batch of {bs} (median pass time / {batches} batches)", passes=args.passes,
                examples=len(enc), batch=bs, method=method, mean_tokens=sum(map(len, enc)) / len(enc),
                order="sorted by length" if what.endswith("-sorted") else "file order")


def main():
    args = parse_args()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # past_key_values → cache (see peft_compat)
    torch.set_num_threads(args.threads)
    peft_compat()
    figures = [args.only] if args.only else FIGURES
    if args.shape == "base":
        bad = [f for f in figures if not f.startswith("fixed-")]
        if args.only and bad:
            sys.exit(f"--only {args.only}: --shape base applies to the fixed-shape figures only")
        figures = [f for f in figures if f.startswith("fixed-")]
    for what in figures:
        if what.startswith("fixed-"):
            d = fixed(args, what)
        elif what.startswith("sst2-"):
            d = sst2(args, what)
        else:
            d = infer(args, what)
        d["peak_rss_mb"] = peak_rss_mb()
        d["torch"] = torch.__version__
        d["transformers"] = transformers.__version__
        print(json.dumps(d), flush=True)


if __name__ == "__main__":
    main()
