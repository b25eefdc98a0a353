"""Reference values for tests/roberta_tiny.rs: a tiny RoBERTa and its HF outputs.

The test writes the whole checkpoint folder itself: config.json, vocab.json and merges.txt
from the same constants as below, and model.safetensors (with a `roberta.` prefix) from the
same deterministic pseudo-random formula as below (`weight`): parameter number k of the
sorted parameter names, element j: 0.5·sin(0.37·j + 1.3·k + 0.1), computed in float64 and
rounded to float32 (LayerNorm weights: 1 + 0.1·sin(...)). No weights are stored in the repo.

Writes tests/fixtures/tiny_roberta_reference.json: input_ids, attention_mask (from HF's
RobertaTokenizer) and last_hidden_state (HF RobertaModel, eval mode), flattened.
"""
import json
import os
import sys
import tempfile

import torch
from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny_roberta_reference.json")

# Keep in sync with tests/roberta_tiny.rs.
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
PIECES = ["Ġ"] + LETTERS + ["Ġ" + c for c in LETTERS] + ["th", "Ġth", "Ġthe", "at", "Ġcat", "er", "re", "Ġthere", "he", "ll", "llo", "hello", "Ġhello", ".", "Ġ."]
VOCAB = {t: i for i, t in enumerate(SPECIAL + PIECES)}
MERGES = ["t h", "Ġ th", "Ġth e", "a t", "Ġ c", "Ġc at", "e r", "r e", "Ġthe re", "h e", "l l", "ll o", "he llo", "Ġ hello"]
TEXTS = [("the cat", None), ("hello there.", "the cat"), ("cat", None)]

def weight(name, k, shape):
    j = torch.arange(int(torch.tensor(shape).prod()), dtype=torch.float64)
    v = torch.sin(0.37 * j + 1.3 * k + 0.1)
    v = 1.0 + 0.1 * v if name.endswith("LayerNorm.weight") else 0.5 * v
    return v.to(torch.float32).reshape(shape)


cfg = RobertaConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
model = RobertaModel(cfg, add_pooling_layer=False).eval()
params = dict(model.named_parameters())
with torch.no_grad():
    for k, name in enumerate(sorted(params)):
        params[name].copy_(weight(name, k, params[name].shape))

with tempfile.TemporaryDirectory() as d:
    json.dump(VOCAB, open(os.path.join(d, "vocab.json"), "w"))
    open(os.path.join(d, "merges.txt"), "w").write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tok = RobertaTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    encs = [tok(a, b) if b is not None else tok(a) for a, b in TEXTS]
T = max(len(e["input_ids"]) for e in encs)
ids = torch.full((len(encs), T), cfg.pad_token_id, dtype=torch.long)
mask = torch.zeros(len(encs), T, dtype=torch.long)
for i, e in enumerate(encs):
    ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
    mask[i, : len(e["input_ids"])] = 1
with torch.no_grad():
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "shape": list(h.shape),
           "last_hidden_state": [round(x, 7) for x in h.flatten().tolist()]}, open(out, "w"))
print("ids", ids.tolist())
print(f"wrote {out}")
