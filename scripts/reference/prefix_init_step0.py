"""Step-0 behaviour of deep-prefix initialisations on SmolLM2-135M-Instruct (Q4_1 GGUF), with
Hugging Face transformers: how far an *untrained* prefix moves the model from its zero-shot
predictions, on held-out GLUE *train* examples (dev data, never the test sets).

Each prefix is p = 16 keys and values per layer put in the cache, read with the input at
positions 0..T-1 (`positions = unshifted`) or p..p+T-1 (`shifted`), as our decoder does. Printed
per prefix: accuracy, agreement with the zero-shot predictions, mean |P(class 1) - zero-shot's|
and mean P(class 1). Prefixes: copies of the template's first token; the keys and values of an
in-context demonstration (template, label word, blank line; `init = text`) for one vertex and
the centroid of three; of random vocabulary tokens (`init = vocab`) for one and three; of some
fixed texts; N(0, std^2) for `normal` (N(0, 0.02^2) is `init = normal`).
docs/models.md reports the SST-2 numbers.

Usage: GLUE_DIR=... python scripts/reference/prefix_init_step0.py sst2 153
       (RTE: rte 103; a third argument stops after the `normal` rows)
"""
import os
import sys, random, torch, csv
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.cache_utils import DynamicCache
torch.set_num_threads(1)
d = os.path.join(os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace")), "models", "smollm2-135m-instruct"); f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(d, gguf_file=f); model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
task = sys.argv[1]; N = int(sys.argv[2])
rng = random.Random(7)
def rows(path):
    with open(path) as fh:
        r = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE); h = next(r); return h, list(r)
if task == "sst2":
    h, rs = rows(os.path.join(os.environ["GLUE_DIR"], "SST-2", "train.tsv")); rs = [r for r in rs if len(r[0].split()) >= 15 and r[0].rstrip().endswith('.')]; rng.shuffle(rs)
    ex = [(r[0], int(r[1])) for r in rs[:N]]
    tmpl = lambda e: f"Review: {e}\nSentiment (positive or negative):"; words = [" negative", " positive"]
else:
    h, rs = rows(os.path.join(os.environ["GLUE_DIR"], "RTE", "train.tsv")); rng.shuffle(rs)
    ex = [((r[1], r[2]), 0 if r[3] == "entailment" else 1) for r in rs[:N]]
    tmpl = lambda e: f"{e[0]} ? {e[1]} Answer:"; words = [" Yes", " No"]
wid = [tok(w, add_special_tokens=False).input_ids[0] for w in words]
P = 16
L = model.config.num_hidden_layers
def kv(ids):
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
    c = out.past_key_values
    return [(c.layers[i].keys.clone(), c.layers[i].values.clone()) for i in range(L)]
def mix(kvs):
    return [(sum(k[i][0] for k in kvs) / len(kvs), sum(k[i][1] for k in kvs) / len(kvs)) for i in range(L)]
ZS = None
def acc(prefix, shifted):
    global ZS
    ok = 0; ps = []
    for e, y in ex[:-3]:
        ids = tok(tmpl(e), add_special_tokens=False).input_ids[-120:]
        T = len(ids)
        if prefix is None:
            pos = torch.arange(T)[None]; cache = None; am = torch.ones(1, T, dtype=torch.long)
        else:
            cache = DynamicCache()
            for i, (k, v) in enumerate(prefix): cache.update(k.clone(), v.clone(), i)
            pos = (torch.arange(T) + (P if shifted else 0))[None]; am = torch.ones(1, P + T, dtype=torch.long)
        with torch.no_grad():
            lg = model(torch.tensor([ids]), past_key_values=cache, position_ids=pos, attention_mask=am, use_cache=cache is not None).logits[0, -1]
        ok += int(lg[wid].argmax().item() == y)
        ps.append(torch.softmax(lg[wid], 0)[1].item())
    if ZS is None:
        ZS = ps
    agree = sum(int((a > .5) == (b > .5)) for a, b in zip(ps, ZS)) / len(ps)
    mad = sum(abs(a - b) for a, b in zip(ps, ZS)) / len(ps)
    return f"acc {ok/len(ps):.3f} agree {agree:.3f} |dP| {mad:.3f} meanP {sum(ps)/len(ps):.2f}"
def ids16(text):
    ids = tok(text, add_special_tokens=False).input_ids
    while len(ids) < P: ids = ids + ids
    return ids[:P]
print(task, N, "zero-shot", acc(None, False), flush=True)
g = torch.Generator().manual_seed(1)
vocab = [kv(torch.randint(1000, tok.vocab_size if hasattr(tok,'vocab_size') else 49152, (P,), generator=g).tolist()) for _ in range(3)]
import sys as _s
gn = torch.Generator().manual_seed(2)
def normal(std):
    return [(torch.randn(k.shape, generator=gn) * std, torch.randn(v.shape, generator=gn) * std) for k, v in kvshape]
kvshape = kv(list(range(1000, 1000 + P)))
for std in [0.02, 0.2, 1.0]:
    print("normal", std, "v0", acc(normal(std), False), flush=True)
if len(_s.argv) > 3: raise SystemExit
first = tok(tmpl(ex[0][0]), add_special_tokens=False).input_ids[0]
k1 = kv([first]); sink = [(k.repeat(1, 1, P, 1), v.repeat(1, 1, P, 1)) for k, v in k1]
print("sink copies of", repr(tok.decode([first])), "unshifted", acc(sink, False), flush=True)
demos = []
for e, y in ex[-3:]:
    demos.append(kv(ids16(tmpl(e) + words[y] + "\n\n")))
print("demo v0 unshifted", acc(demos[0], False), "shifted", acc(demos[0], True), flush=True)
print("demo centroid3 unshifted", acc(mix(demos), False), "shifted", acc(mix(demos), True), flush=True)
print("vocab v0 unshifted", acc(vocab[0], False), "shifted", acc(vocab[0], True), flush=True)
print("vocab centroid3 unshifted", acc(mix(vocab), False), "shifted", acc(mix(vocab), True), flush=True)
texts = {
  "newlines": "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
  "system": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
  "instr": "Read the text and answer the question that follows it.\n\n",
  "task-words": "Answer with one word:" + "".join(words) + ".\n\n",
}
for name, t in texts.items():
    ids = ids16(t); k = kv(ids)
    print(name, repr(tok.decode(ids)), "shifted", acc(k, True), "unshifted", acc(k, False), flush=True)
