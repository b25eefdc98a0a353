"""Class scores of label words of several tokens, from Hugging Face transformers, for
tests/multi_token_words.rs: SmolLM2-135M-Instruct (Q4_1 GGUF) on the first 100 pairs of the
RTE dev split, written into the project's pair template `{s1} ? {s2} Answer:`, with the class
names themselves as label words (what a user task gets by default): ` entailment` and
` not_entailment`, several tokens each.

The score of a word is its summed log-probability, Σⱼ log P(wⱼ | input, w₁ … wⱼ₋₁), read here
from one teacher-forced pass over the input followed by the whole word (the project computes it
differently: the first token at the input's last position, the others from the input followed by
the word less its last token). Each pair runs alone (no padding); no BOS, as the GGUF says.
Writes tests/fixtures/multi_token_smollm2_rte.json:
  words      the label words, and their token ids (tokens)
  pairs      [premise, hypothesis] per example
  labels     gold labels (0 entailment, 1 not_entailment)
  scores     [score of word 0, score of word 1] per pair

Usage (needs torch + transformers + gguf; see scripts/reference/venv.sh):
  GLUE_DIR=... python scripts/reference/make_multi_token_fixture.py
"""
import json
import os

import torch

from glue_gguf import FIXTURES, GGUF, glue_dev_rows, load_gguf

N = 100
WORDS = [" entailment", " not_entailment"]
OUT = os.path.join(FIXTURES, "multi_token_smollm2_rte.json")


def main():
    torch.set_num_threads(2)
    rows = glue_dev_rows("RTE", ["index", "sentence1", "sentence2", "label"], N)
    tok, model = load_gguf()
    tokens = [tok(w, add_special_tokens=False).input_ids for w in WORDS]
    assert all(len(t) > 1 for t in tokens), tokens
    pairs, labels, scores = [], [], []
    for _, a, b, y in rows:
        ids = tok(f"{a} ? {b} Answer:", add_special_tokens=False).input_ids
        row = []
        for t in tokens:
            with torch.no_grad():
                logp = model(torch.tensor([ids + t])).logits[0].log_softmax(-1)
            n = len(ids)
            row.append(round(sum(float(logp[n - 1 + j, k]) for j, k in enumerate(t)), 5))
        pairs.append([a, b])
        labels.append(["entailment", "not_entailment"].index(y))
        scores.append(row)
    with open(OUT, "w") as f:
        json.dump({"model": GGUF, "words": WORDS, "tokens": tokens, "pairs": pairs, "labels": labels, "scores": scores}, f)
        f.write("\n")
    print(f"wrote {OUT}: {len(pairs)} pairs, tokens {tokens}")


if __name__ == "__main__":
    main()
