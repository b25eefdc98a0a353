"""Reference outputs of the two GGUF decoders from Hugging Face transformers, for
tests/decoder_parity.rs.

transformers loads a GGUF file itself (`from_pretrained(dir, gguf_file=name)`, with the PyPI
`gguf` package) and dequantises it to float32: the same weights our loader reads. For each model
this writes tests/fixtures/decoder_<name>.json with, per input (one unpadded sequence each):
  ids          the token ids (HF's tokenizer from the same GGUF)
  hidden_last  the final hidden state (after the final norm) at the last position, all H dims
  logits_last  the LM logits at the last position for the ids in `probe_ids`
  hidden_mean  the mean over positions of the final hidden states (all dims)
and one run with a prefix: p pseudo-random keys and values per layer and KV head put in the
cache, so that HF runs the input at positions p..p+T-1 (what `positions = shifted` does):
  prefix_len, prefix_ids, prefix_hidden_last, prefix_logits_last
The prefix is not stored: tests/decoder_parity.rs builds it from the same formula
(scripts/reference/formula.py): as our (L, 2, 1, p, kv*D) tensor, the keys (L, p, kv*D) are
values("<name>.prefix.keys", L*p*kv*D, 2·√3) and the values values("<name>.prefix.values", …,
0.5·√3), i.e. uniform with standard deviations 2 and 0.5, the scale of the model's own cache.

Usage (needs torch + transformers + gguf; see scripts/reference/venv.sh):
  python scripts/reference/make_decoder_fixture.py
"""
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from formula import SQRT3, values

HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
MODELS = {
    "smollm2": ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
}
TEXTS = [
    "Review: a gripping, beautifully shot film.\nSentiment (positive or negative):",
    "it 's a charming and often affecting journey . It was",
    "The quick brown fox jumps over the lazy dog, while naïve cafés serve crème brûlée to 1,234 customers.",
    "Hi",
]
PREFIX_LEN = 3

for name, (sub, file) in MODELS.items():
    d = os.path.join(HOME, "models", sub)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=file, dtype=torch.float32).eval()
    cfg = model.config
    probe = sorted(set(list(range(0, 8)) + tok(" positive negative great terrible Yes No")["input_ids"]))
    out = {"model": file, "probe_ids": probe, "cases": []}
    with torch.no_grad():
        for text in TEXTS:
            ids = tok(text)["input_ids"]
            r = model(torch.tensor([ids]), output_hidden_states=True)
            h = r.hidden_states[-1][0]
            out["cases"].append({
                "text": text,
                "ids": ids,
                "hidden_last": h[-1].tolist(),
                "hidden_mean": h.mean(0).tolist(),
                "logits_last": r.logits[0, -1, probe].tolist(),
            })
        # A prefix in the cache: keys/values of the scale the model's own cache holds.
        layers = cfg.num_hidden_layers
        kvh = cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        n = layers * PREFIX_LEN * kvh * hd
        ours_k = torch.from_numpy(values(f"{name}.prefix.keys", n, 2.0 * SQRT3)).view(layers, PREFIX_LEN, kvh * hd)
        ours_v = torch.from_numpy(values(f"{name}.prefix.values", n, 0.5 * SQRT3)).view(layers, PREFIX_LEN, kvh * hd)
        # HF's cache: (1, kv, p, D) per layer.
        keys = [ours_k[i].view(PREFIX_LEN, kvh, hd).transpose(0, 1).unsqueeze(0).contiguous() for i in range(layers)]
        vals = [ours_v[i].view(PREFIX_LEN, kvh, hd).transpose(0, 1).unsqueeze(0).contiguous() for i in range(layers)]
        cache = DynamicCache(config=cfg)
        for i in range(layers):
            cache.update(keys[i], vals[i], i)
        ids = tok(TEXTS[1])["input_ids"]
        t = len(ids)
        r = model(
            torch.tensor([ids]),
            past_key_values=cache,
            attention_mask=torch.ones(1, PREFIX_LEN + t, dtype=torch.long),
            output_hidden_states=True,
        )
        out["prefix_len"] = PREFIX_LEN
        out["prefix_ids"] = ids
        out["prefix_hidden_last"] = r.hidden_states[-1][0, -1].tolist()
        out["prefix_logits_last"] = r.logits[0, -1, probe].tolist()
    path = os.path.join(ROOT, "tests", "fixtures", f"decoder_{name}.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: {len(out['cases'])} cases, probe ids {probe}")
