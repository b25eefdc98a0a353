"""Reference hidden states from Hugging Face transformers, for tests/encoder_parity.rs.

Writes tests/fixtures/minilm_parity.json with, for one padded batch:
  input_ids, attention_mask, token_type_ids   (from the HF tokenizer)
  hidden_first48   final hidden states (HF BertModel, eval mode), dimensions 0..47 of every position
  mean_pooled      the mask-weighted mean of the final hidden states over real tokens (all 384 dims)
(a subset of the hidden states keeps the fixture small; the mean involves every dimension).

Usage (needs torch + transformers; see scripts/reference/venv.sh):
  python scripts/reference/make_parity_fixture.py [MODEL_DIR] [OUT]
"""
import json
import os
import sys

import torch
from transformers import AutoModel, AutoTokenizer

HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))
model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HOME, "models", "all-MiniLM-L6-v2")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "minilm_parity.json")

# Singles and pairs of different lengths, in one padded batch.
INPUTS = [
    ("A man is playing a guitar.", None),
    ("Someone plays an instrument.", None),
    ("it 's a charming and often affecting journey .", None),
    ("The quick brown fox jumps over the lazy dog, while the five boxing wizards jump quickly; "
     "meanwhile naïve cafés serve crème brûlée to 1,234 customers.", None),
    ("Hi", None),
    ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq."),
    ("How do I learn Rust?", "What is the best way to learn the Rust programming language quickly?"),
    ("The cat sat on the mat.", "A cat is sitting."),
    ("Unbelievably", "unrecognisable tokenisation: xylophones & émojis 🙂"),
    ("", "an empty first segment"),
]

tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
a = [x for x, _ in INPUTS]
b = [y for _, y in INPUTS]
encs = [tok(x, y) if y is not None else tok(x) for x, y in INPUTS]
T = max(len(e["input_ids"]) for e in encs)
ids = torch.zeros(len(encs), T, dtype=torch.long)
mask = torch.zeros(len(encs), T, dtype=torch.long)
types = torch.zeros(len(encs), T, dtype=torch.long)
for i, e in enumerate(encs):
    n = len(e["input_ids"])
    ids[i, :n] = torch.tensor(e["input_ids"])
    mask[i, :n] = 1
    types[i, :n] = torch.tensor(e["token_type_ids"])
ids[mask == 0] = tok.pad_token_id
with torch.no_grad():
    h = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
m = mask.unsqueeze(-1).float()
pooled = (h * m).sum(1) / m.sum(1)
r = lambda t: [[round(x, 7) for x in row] for row in t.tolist()] if t.dim() == 2 else [r(x) for x in t]
json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "token_type_ids": types.tolist(),
           "hidden_first48": r(h[:, :, :48]), "mean_pooled": r(pooled)}, open(out, "w"))
print(f"wrote {out}: batch {tuple(ids.shape)}, hidden {tuple(h.shape)}")
