"""Loads an adapter written by `prefix-subspace export --format peft` with PEFT + transformers
and compares its predictions with ours.

Usage (see scripts/reference/venv.sh for the Python environment):
  prefix-subspace train --task sst2 ... --set positions=shifted --out RUN
  prefix-subspace export --run RUN --out EXPORT
  prefix-subspace predict --run RUN --input texts.txt > ours.jsonl
  python scripts/reference/check_peft_export.py EXPORT texts.txt ours.jsonl

Works for encoder runs (a SEQ_CLS adapter + our pooled linear head) and decoder runs (a
CAUSAL_LM adapter on the transformers model of the same GGUF file; the class scores are the LM
logits of the label words at the last position of the filled template, + the head's bias;
each input runs alone, so no padding is involved).

Prints the max abs difference of the class probabilities; exits 1 above 1e-4.
"""
import json
import sys

import torch
from peft import PeftConfig, PeftModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

export, texts_path, ours_path = sys.argv[1:4]
cfg = PeftConfig.from_pretrained(export)
head_cfg = json.load(open(f"{export}/head_config.json"))
head = load_file(f"{export}/head.safetensors")
lines = [l.rstrip("\n") for l in open(texts_path, encoding="utf-8") if l.strip()]
pairs = [l.split("\t", 1) if "\t" in l else [l] for l in lines]


def compare(probs):
    ours = [json.loads(l) for l in open(ours_path)]
    labels = head_cfg["labels"]
    ours_p = torch.tensor([[o["probabilities"][k] for k in labels] for o in ours])
    diff = (probs - ours_p).abs().max().item()
    print(f"{len(lines)} inputs; max abs difference of probabilities, PEFT vs prefix-subspace: {diff:.3e}")
    sys.exit(0 if diff <= 1e-4 else 1)


if cfg.task_type == "CAUSAL_LM":
    where, gguf = cfg.base_model_name_or_path, head_cfg["gguf_file"]
    tok = AutoTokenizer.from_pretrained(where, gguf_file=gguf)
    base = AutoModelForCausalLM.from_pretrained(where, gguf_file=gguf, dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, export).eval()
    ids = torch.tensor(head_cfg["label_ids"])
    rows = []
    with torch.no_grad():
        for p in pairs:
            t = head_cfg["template"]
            text = t.replace("{s1}", p[0]).replace("{s2}", p[1]) if len(p) == 2 else t.replace("{s}", p[0])
            enc = tok(text, return_tensors="pt")
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            rows.append(torch.softmax(out.logits[0, -1, ids].float() + head["bias"], dim=-1))
    compare(torch.stack(rows))

# An encoder run (SEQ_CLS adapter).
tok = AutoTokenizer.from_pretrained(cfg.base_model_name_or_path)
base = AutoModel.from_pretrained(cfg.base_model_name_or_path).eval()
# The adapter says SEQ_CLS; its head is ours (pooling + linear, head.safetensors), not the
# base model's pooler + classifier, so the prefix is loaded onto the bare encoder.
cfg.task_type = "FEATURE_EXTRACTION"
model = PeftModel.from_pretrained(base, export, config=cfg).eval()
with torch.no_grad():
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs] if all(len(p) == 2 for p in pairs) else None,
              padding=True, truncation=True, max_length=128, return_tensors="pt")
    # PEFT builds the prefix (past_key_values) from the adapter and runs the base model.
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                token_type_ids=enc.get("token_type_ids"))
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    if head_cfg["pooling"] == "mean":
        m = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1)
    else:
        pooled = hidden[:, 0]
    probs = torch.softmax(pooled @ head["weight"].T + head["bias"], dim=-1)

compare(probs)
