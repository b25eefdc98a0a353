"""Zero-shot predictions of SmolLM2-135M-Instruct (Q4_1 GGUF) from Hugging Face transformers on
the first 400 sentences of the SST-2 dev split, for tests/zero_shot_reference.rs.

transformers loads the GGUF file itself (`from_pretrained(dir, gguf_file=name)`, PyPI `gguf`)
and dequantises it to float32, the weights our loader reads. Each sentence is written into the
project's default SST-2 template for an instruction-tuned model,
`Review: {s}\nSentiment (positive or negative):`, tokenised by transformers' tokenizer from the
same GGUF (no BOS, as the GGUF says), run alone (no padding), and the LM logits of the first
tokens of ` negative` and ` positive` at the last position are stored. Writes
tests/fixtures/zero_shot_smollm2_sst2.json:
  sentences  the 400 sentences (first 400 data rows of SST-2/dev.tsv)
  labels     their gold labels
  logits     [negative, positive] logits per sentence
  accuracy   the zero-shot accuracy these logits give

Usage (needs torch + transformers + gguf; see scripts/reference/venv.sh):
  GLUE_DIR=... python scripts/reference/make_zero_shot_fixture.py
"""
import json
import os

import torch

from glue_gguf import FIXTURES, GGUF, glue_dev_rows, load_gguf

N = 400
OUT = os.path.join(FIXTURES, "zero_shot_smollm2_sst2.json")


def main():
    torch.set_num_threads(1)
    rows = glue_dev_rows("SST-2", ["sentence", "label"], N)
    tok, model = load_gguf()
    words = [tok(w, add_special_tokens=False).input_ids[0] for w in [" negative", " positive"]]
    sentences, labels, logits = [], [], []
    for s, y in rows:
        ids = tok(f"Review: {s}\nSentiment (positive or negative):", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model(torch.tensor([ids])).logits[0, -1]
        sentences.append(s)
        labels.append(int(y))
        logits.append([round(float(out[w]), 5) for w in words])
    correct = sum(int((l[1] > l[0]) == (y == 1)) for l, y in zip(logits, labels))
    acc = correct / len(labels)
    with open(OUT, "w") as f:
        json.dump({"model": GGUF, "sentences": sentences, "labels": labels, "logits": logits, "accuracy": acc}, f)
        f.write("\n")
    print(f"wrote {OUT}: accuracy {acc:.4f} on {len(labels)} sentences")


if __name__ == "__main__":
    main()
