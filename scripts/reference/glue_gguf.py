"""What make_zero_shot_fixture.py and make_multi_token_fixture.py share: SmolLM2-135M-Instruct
(Q4_1 GGUF) loaded by Hugging Face transformers, the first rows of a GLUE dev split, and the
fixture folder.

transformers loads the GGUF file itself (`from_pretrained(dir, gguf_file=name)`, PyPI `gguf`)
and dequantises it to float32, the weights our loader reads; the tokenizer comes from the same
GGUF.
"""
import csv
import os

HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))
MODEL_DIR = os.path.join(HOME, "models", "smollm2-135m-instruct")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")


def glue_dev_rows(folder, header, n):
    """The first `n` data rows of `$GLUE_DIR/<folder>/dev.tsv` (its header must be `header`)."""
    with open(os.path.join(os.environ["GLUE_DIR"], folder, "dev.tsv"), newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == header, rows[0]
    return rows[1 : n + 1]


def load_gguf():
    """The tokenizer and the float32 causal LM (in eval mode) of the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32).eval()
    return tok, model
