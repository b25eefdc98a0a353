"""Reference values for tests/roberta_tiny.rs: a tiny random RoBERTa and its HF outputs.

The test writes the checkpoint folder itself (config.json, vocab.json, merges.txt from the
same constants as below, model.safetensors from the weights stored here with a `roberta.`
prefix), then compares our encoder and tokenizer with what HF computed here.

Writes tests/fixtures/tiny_roberta.safetensors:
  w.<name>            every encoder weight (float32)
  input_ids, attention_mask, last_hidden_state   (HF tokenizer + RobertaModel, eval mode)
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny_roberta.safetensors")

# Keep in sync with tests/roberta_tiny.rs.
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
PIECES = ["Ġ"] + LETTERS + ["Ġ" + c for c in LETTERS] + ["th", "Ġth", "Ġthe", "at", "Ġcat", "er", "re", "Ġthere", "he", "ll", "llo", "hello", "Ġhello", ".", "Ġ."]
VOCAB = {t: i for i, t in enumerate(SPECIAL + PIECES)}
MERGES = ["t h", "Ġ th", "Ġth e", "a t", "Ġ c", "Ġc at", "e r", "r e", "Ġthe re", "h e", "l l", "ll o", "he llo", "Ġ hello"]
TEXTS = [("the cat", None), ("hello there.", "the cat"), ("cat", None)]

torch.manual_seed(0)
cfg = RobertaConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
model = RobertaModel(cfg, add_pooling_layer=False).eval()
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.5)

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
tensors = {"w." + k: v.contiguous() for k, v in model.state_dict().items()}
tensors.update({"input_ids": ids, "attention_mask": mask, "last_hidden_state": h.contiguous()})
save_file(tensors, out)
print("ids", ids.tolist())
print(f"wrote {out}")
