"""Reference values for tests/mpnet_tiny.rs: a tiny MPNet and its HF outputs.

The test writes the whole checkpoint folder itself: config.json from the same constants as
below, and model.safetensors (with an `mpnet.` prefix) from the same deterministic
pseudo-random formula as below (`weight`, as scripts/reference/make_tiny_roberta_fixture.py):
parameter number k of the sorted parameter names of MPNetModel (no pooler), element j:
0.5·sin(0.37·j + 1.3·k + 0.1), computed in float64 and rounded to float32 (LayerNorm
weights: 1 + 0.1·sin(...)). No weights are stored in the repo.

Writes tests/fixtures/tiny_mpnet_reference.json:
  input_ids, attention_mask   one padded batch: a 140-token sequence (relative distances up to
                              139 reach every bucket, the last one from 128 on), a 20-token
                              and a 5-token one (padding with id 1)
  last_hidden_state           HF MPNetModel (eval mode) final hidden states, flattened, with its shape
  buckets                     HF MPNetEncoder.relative_position_bucket of relative positions
                              -200..200 (memory - context)

Usage (needs torch + transformers; see scripts/reference/venv.sh):
  python scripts/reference/make_tiny_mpnet_fixture.py [OUT]
"""
import json
import os
import sys

import torch
from transformers import MPNetConfig, MPNetModel
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny_mpnet_reference.json")

# Keep in sync with tests/mpnet_tiny.rs.
VOCAB, HIDDEN, LAYERS, HEADS, FFN, MAX_POS = 40, 16, 2, 4, 32, 160
LENGTHS = [140, 20, 5]


def weight(name, k, shape):
    j = torch.arange(int(torch.tensor(shape).prod()), dtype=torch.float64)
    v = torch.sin(0.37 * j + 1.3 * k + 0.1)
    v = 1.0 + 0.1 * v if name.endswith("LayerNorm.weight") else 0.5 * v
    return v.to(torch.float32).reshape(shape)


def token(i, j, n):
    """Token j of sequence i of length n: <s> (0) … </s> (2), words from 3..VOCAB-1 between."""
    if j == 0:
        return 0
    if j == n - 1:
        return 2
    return 3 + (7 * j + 11 * i) % (VOCAB - 3)


cfg = MPNetConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, max_position_embeddings=MAX_POS, relative_attention_num_buckets=32,
                  layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)
model = MPNetModel(cfg, add_pooling_layer=False).eval()
params = dict(model.named_parameters())
with torch.no_grad():
    for k, name in enumerate(sorted(params)):
        params[name].copy_(weight(name, k, params[name].shape))

T = max(LENGTHS)
ids = torch.full((len(LENGTHS), T), cfg.pad_token_id, dtype=torch.long)
mask = torch.zeros(len(LENGTHS), T, dtype=torch.long)
for i, n in enumerate(LENGTHS):
    ids[i, :n] = torch.tensor([token(i, j, n) for j in range(n)])
    mask[i, :n] = 1
with torch.no_grad():
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
buckets = MPNetEncoder.relative_position_bucket(torch.arange(-200, 201))
json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "shape": list(h.shape),
           "last_hidden_state": [round(x, 6) for x in h.flatten().tolist()], "buckets": buckets.tolist(),
           "parameters": sorted(params)}, open(out, "w"))
print("parameters", sorted(params))
print(f"wrote {out}: hidden {tuple(h.shape)}")
