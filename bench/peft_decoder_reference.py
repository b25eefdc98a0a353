"""Reference speed of PyTorch + transformers + PEFT prefix tuning of a decoder LLM from its GGUF
file, on the figures `prefix-subspace speed --model smollm2-135m-instruct` measures (same names,
same JSON keys), for the decoder table of docs/performance.md.

transformers loads and dequantises the GGUF itself (`from_pretrained(dir, gguf_file=name)`,
fp32), as our loader does. The task is prompt-based classification as ours: each SST-2
sentence written into the instruction template `Review: {s}\nSentiment (positive or
negative):`, the class scores the LM logits of the first tokens of ` negative` / ` positive` at
the last real position, cross-entropy over those two. Inputs are left-padded so that the last
position is the answer slot of every row, and the model computes the logits of that position
only (`logits_to_keep=1`), which is how an efficient PEFT user runs it. PEFT's
PrefixTuningConfig (CAUSAL_LM, 16 virtual tokens, no projection).

Figures (--only; default: both, one process):
  sst2-prefix   training on the 32 examples of `prefix-subspace speed --split-out FILE`
                (--split-json FILE), batch 8, dynamic padding per batch, shuffled each epoch,
                AdamW (weight decay 0.01), clipping at 1.0, model.train(); --epochs epochs,
                the first untimed; samples/s over the timed steps
  infer-prefix  inference on SST-2 dev (872 sentences) sorted by length (what our eval does),
                batch 64, torch.inference_mode; one untimed pass, then the median of --passes

Peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss, MiB (one figure per process for a clean
peak). Usage:
  PY=$(scripts/reference/venv.sh)
  prefix-subspace speed --model smollm2-135m-instruct --only sst2-prefix --split-out /tmp/split.json
  $PY bench/peft_decoder_reference.py --only sst2-prefix --split-json /tmp/split.json
  $PY bench/peft_decoder_reference.py --only infer-prefix
"""
import argparse
import json
import os
import random
import statistics
import time

# HOME, the peak RSS and the SST-2 reader are those of the encoder reference (same folder).
from peft_reference import HOME, peak_rss_mb, read_tsv

TEMPLATE = "Review: {s}\nSentiment (positive or negative):"
WORDS = [" negative", " positive"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=os.path.join(HOME, "models", "smollm2-135m-instruct"))
    ap.add_argument("--gguf", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["sst2-prefix", "infer-prefix"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--prefix-len", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--data-dir", default=os.environ.get("GLUE_DIR", "../shared/data/glue"))
    ap.add_argument("--split-json", help="the train_ids of this split.json (ours) for sst2-prefix")
    a = ap.parse_args()
    if a.only == "sst2-prefix" and not a.split_json:
        ap.error("sst2-prefix needs --split-json (from `prefix-subspace speed --split-out`)")
    return a


def load(args):
    import torch
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir, gguf_file=args.gguf)
    base = AutoModelForCausalLM.from_pretrained(args.model_dir, gguf_file=args.gguf, dtype=torch.float32)
    cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.prefix_len)
    model = get_peft_model(base, cfg)
    words = [tok(w, add_special_tokens=False).input_ids[0] for w in WORDS]
    return tok, model, torch.tensor(words)


def encode(tok, sentences):
    # Trimmed, as our GLUE loader trims every text (SST-2's sentences end with a space).
    return [tok(TEMPLATE.format(s=s.strip()), add_special_tokens=False).input_ids[-128:] for s in sentences]


def left_pad(batch, pad_id):
    import torch

    t = max(len(x) for x in batch)
    ids = torch.full((len(batch), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), t), dtype=torch.long)
    for r, x in enumerate(batch):
        ids[r, t - len(x):] = torch.tensor(x)
        mask[r, t - len(x):] = 1
    return ids, mask


def scores(model, ids, mask, words):
    out = model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return out.logits[:, -1, :].index_select(1, words)


def line(args, what, **kw):
    v = {"impl": "peft", "what": what, **kw, "peak_rss_mb": peak_rss_mb(), "threads": args.threads}
    print(json.dumps(v), flush=True)


def sst2(args):
    import torch

    rows = read_tsv(os.path.join(args.data_dir, "SST-2", "train.tsv"))
    by_line = {n: (s, y) for n, s, y in rows}
    ids = json.load(open(args.split_json))["train_ids"]
    sample = [by_line[int(x.rsplit(":", 1)[1])] for x in ids]
    tok, model, words = load(args)
    enc = encode(tok, [s for s, _ in sample])
    labels = [y for _, y in sample]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    model.train()
    rng = random.Random(1)
    times, samples = [], 0
    for epoch in range(1, args.epochs + 1):
        order = list(range(len(enc)))
        rng.shuffle(order)
        for start in range(0, len(order), 8):
            chunk = order[start:start + 8]
            t0 = time.perf_counter()
            ids_t, mask = left_pad([enc[i] for i in chunk], pad)
            y = torch.tensor([labels[i] for i in chunk])
            loss = torch.nn.functional.cross_entropy(scores(model, ids_t, mask, words), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if epoch > 1:
                times.append(time.perf_counter() - t0)
                samples += len(chunk)
    line(args, "sst2-prefix", samples_per_second=samples / sum(times), step_seconds_median=statistics.median(times),
         steps=len(times), epochs_timed=args.epochs - 1, train_examples=len(enc), batch=8,
         mean_tokens=sum(map(len, enc)) / len(enc))


def infer(args):
    import torch

    rows = read_tsv(os.path.join(args.data_dir, "SST-2", "dev.tsv"))
    tok, model, words = load(args)
    enc = sorted(encode(tok, [s for _, s, _ in rows]), key=len)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    model.eval()

    def one_pass():
        with torch.inference_mode():
            for start in range(0, len(enc), 64):
                ids_t, mask = left_pad(enc[start:start + 64], pad)
                scores(model, ids_t, mask, words)

    one_pass()
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    p = statistics.median(times)
    batches = (len(enc) + 63) // 64
    line(args, "infer-prefix", samples_per_second=len(enc) / p, step_seconds_median=p / batches,
         passes=args.passes, examples=len(enc), batch=64, mean_tokens=sum(map(len, enc)) / len(enc))


def main():
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.only in (None, "sst2-prefix") and args.split_json:
        sst2(args)
    if args.only in (None, "infer-prefix"):
        infer(args)


if __name__ == "__main__":
    main()
