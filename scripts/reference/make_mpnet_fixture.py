"""Reference hidden states of all-mpnet-base-v2 from Hugging Face transformers, for
tests/mpnet_parity.rs (the model comes from scripts/setup-mpnet.sh).

Writes tests/fixtures/mpnet_parity.json with, for one padded batch (padding id 1):
  input_ids, attention_mask   (from the HF tokenizer; MPNet has no token types)
  hidden_first32   final hidden states (HF MPNetModel, eval mode), dimensions 0..31 of every position
  mean_pooled      the mask-weighted mean of the final hidden states over real tokens (all 768 dims)
  cosine           cosine of the mean-pooled, normalised embeddings of INPUTS[0] and INPUTS[1]
(a subset of the hidden states keeps the fixture small; the mean involves every dimension).

Usage (needs torch + transformers; see scripts/reference/venv.sh):
  python scripts/reference/make_mpnet_fixture.py [MODEL_DIR] [OUT]
"""
import json
import os
import sys

import torch
from transformers import AutoModel, AutoTokenizer

HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))
model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HOME, "models", "all-mpnet-base-v2")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "mpnet_parity.json")

# Keep in sync with tests/mpnet_parity.rs. Singles and pairs of different lengths, in one padded batch.
INPUTS = [
    ("A man is playing a guitar.", None),
    ("Someone plays an instrument.", None),
    ("it 's a charming and often affecting journey .", None),
    ("The quick brown fox jumps over the lazy dog, while the five boxing wizards jump quickly; "
     "meanwhile naïve cafés serve crème brûlée to 1,234 customers.", None),
    ("Hi", None),
    ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq."),
    ("How do I learn Rust?", "What is the best way to learn the Rust programming language quickly?"),
    ("Unbelievably", "unrecognisable tokenisation: xylophones & émojis 🙂"),
]

tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
encs = [tok(x, y) if y is not None else tok(x) for x, y in INPUTS]
T = max(len(e["input_ids"]) for e in encs)
ids = torch.full((len(encs), T), tok.pad_token_id, dtype=torch.long)
mask = torch.zeros(len(encs), T, dtype=torch.long)
for i, e in enumerate(encs):
    n = len(e["input_ids"])
    ids[i, :n] = torch.tensor(e["input_ids"])
    mask[i, :n] = 1
with torch.no_grad():
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
m = mask.unsqueeze(-1).float()
pooled = (h * m).sum(1) / m.sum(1)
unit = torch.nn.functional.normalize(pooled, dim=-1)
cosine = float(unit[0] @ unit[1])
r = lambda t: [[round(x, 6) for x in row] for row in t.tolist()] if t.dim() == 2 else [r(x) for x in t]
json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "hidden_first32": r(h[:, :, :32]),
           "mean_pooled": r(pooled), "cosine": cosine}, open(out, "w"))
print(f"wrote {out}: batch {tuple(ids.shape)}, hidden {tuple(h.shape)}, lengths {mask.sum(1).tolist()}, cosine {cosine:.4f}")
