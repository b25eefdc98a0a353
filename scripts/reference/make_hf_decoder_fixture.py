"""Tiny random Hugging Face decoder folders and their transformers outputs, for
tests/hf_decoder.rs.

No weights are stored in the repo: the test writes each folder's weights itself, from the
formula of scripts/reference/formula.py (`hf_weight`: a tensor's values from its name and
shape), in the layout recorded here. For each family this script builds the model, saves it
with `save_pretrained` into a temporary folder (dtype, shards as listed below), overwrites every
saved tensor with the formula's values (in the saved dtype), loads that folder with
`from_pretrained` in float32 and runs it. It writes tests/fixtures/hf_decoders/<name>/:
  config.json, and for some tokenizer.json + tokenizer_config.json   (text, as saved)
  reference.json:
    files        the weights files and, per file, the tensors [name, shape] it holds
                 (several files: the test also writes model.safetensors.index.json)
    safetensors_dtype, norm_base   the stored dtype; the formula's norm centre (1, Gemma 0)
    weights_sha256   sha256 of the stored bytes of every tensor, by sorted name
    probe_ids    a few vocabulary ids
    cases        per input (one unpadded sequence each, longer than the sliding window):
                   ids, hidden (the final hidden states after the final norm, (T, H)),
                   logits_last (the LM logits at the last position for probe_ids)
    tokens       (folders with a tokenizer) per string: text, ids (`tokenizer(text)["input_ids"]`),
                 ids_plain (`tokenizer(text, add_special_tokens=False)["input_ids"]`)
    bos_id, eos_id, pad_id, add_bos   as transformers' tokenizer has them

The folders:
  llama        GQA (4 query heads, 2 key/value heads), tied embeddings, float32, a tokenizer
               that adds BOS (tiny byte-level BPE trained here)
  qwen2        Q/K/V biases, untied lm_head, bfloat16, sharded in several files with
               model.safetensors.index.json, a tokenizer without BOS
  mistral      sliding window 4 on every layer, float16
  gemma3_text  QK-norm, sliding window 4, layer_types [sliding, full, sliding], different rotary
               bases for the two kinds, norm weights around 0 (stored as w, the model uses 1 + w)
  gemma3       the multimodal Gemma3ForConditionalGeneration (a tiny SigLIP tower), bfloat16;
               only its text model is compared

Usage (torch + transformers + safetensors + tokenizers; see scripts/reference/venv.sh):
  python scripts/reference/make_hf_decoder_fixture.py
"""
import glob
import hashlib
import json
import os
import shutil
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from formula import hf_weight

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_decoders")

VOCAB = 300
PROBE = [0, 1, 2, 7, 42, 150, 256, 299]
SEQS = [
    [5, 17, 260, 3, 99, 140, 8, 250, 61, 12, 33],
    [120, 7, 7, 298, 45, 2, 180, 66],
]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A gripping, beautifully shot film; the story is charming and often affecting.",
    "it 's a charming and often affecting journey .",
    "Sentiment (positive or negative): positive",
    "Naive cafes serve creme brulee to 1,234 customers every day.",
    "Hello world! Hello there, how are you today?",
]
TEXTS = [
    "The quick brown fox",
    " leading space and  two spaces",
    "naïve café: crème brûlée 1,234!",
    "hello </s> world",
    "",
]


def tiny_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


def reference(model, text_model, tok=None):
    out = {"probe_ids": PROBE, "cases": []}
    with torch.no_grad():
        for ids in SEQS:
            x = torch.tensor([ids])
            hidden = text_model(input_ids=x).last_hidden_state[0]
            logits = model(input_ids=x).logits[0, -1]
            out["cases"].append(
                {"ids": ids, "hidden": hidden.tolist(), "logits_last": logits[PROBE].tolist()}
            )
    if tok is not None:
        out["tokens"] = [
            {
                "text": t,
                "ids": tok(t)["input_ids"],
                "ids_plain": tok(t, add_special_tokens=False)["input_ids"],
            }
            for t in TEXTS
        ]
        out["bos_id"] = tok.bos_token_id
        out["eos_id"] = tok.eos_token_id
        out["pad_id"] = tok.pad_token_id
        out["add_bos"] = bool(tok.add_bos_token)
    return out


ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def formula_weights(d, norm_base):
    """Overwrites every tensor save_pretrained wrote in `d` with the formula's values, in the
    same dtype and file; returns the layout and the sha256 of the stored bytes."""
    files, stored = [], {}
    for path in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with safe_open(path, "pt") as f:
            names = sorted(f.keys())
            saved = {n: f.get_tensor(n) for n in names}
        out = {}
        for n in names:
            t = saved[n]
            out[n] = torch.from_numpy(hf_weight(n, list(t.shape), norm_base)).to(t.dtype).contiguous()
            stored[n] = out[n]
        save_file(out, path, metadata={"format": "pt"})
        files.append({"file": os.path.basename(path), "tensors": [[n, list(saved[n].shape)] for n in names]})
    sha = hashlib.sha256()
    for n in sorted(stored):
        sha.update(stored[n].reshape(-1).view(torch.uint8).numpy().tobytes())
    dtypes = {ST_DTYPE[t.dtype] for t in stored.values()}
    assert len(dtypes) == 1, dtypes
    return files, dtypes.pop(), sha.hexdigest()


def save(name, model, text_of, dtype=torch.float32, tokenizer=None, shard=None, norm_base=1.0):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {"max_shard_size": shard} if shard else {}
        model.to(dtype).save_pretrained(tmp, **kwargs)
        files, st_dtype, sha = formula_weights(tmp, norm_base)
        # The reference runs on the folder as written, loaded in float32 as a user would load
        # it (the buffers, rotary frequencies and Gemma's embedding scale, computed in float32).
        model = type(model).from_pretrained(tmp, dtype=torch.float32).eval()
        text_model = text_of(model)
        tok = None
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            tok = AutoTokenizer.from_pretrained(tmp)
        ref = reference(model, text_model, tok)
        for keep in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(tmp, keep)):
                shutil.copy(os.path.join(tmp, keep), os.path.join(d, keep))
    ref["model_class"] = type(model).__name__
    ref["files"] = files
    ref["safetensors_dtype"] = st_dtype
    ref["norm_base"] = norm_base
    ref["weights_sha256"] = sha
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(name, sorted(os.listdir(d)), [x["file"] for x in files], st_dtype)


def main():
    os.makedirs(OUT, exist_ok=True)
    bpe = tiny_tokenizer()

    # llama: GQA, tied embeddings, a tokenizer that adds BOS.
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=3,
    )
    m = LlamaForCausalLM(cfg)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<|endoftext|>", add_bos_token=True,
    )
    save("llama", m, lambda m: m.model, tokenizer=tok)

    # qwen2: biases on q/k/v, untied lm_head, bf16, sharded; no BOS.
    cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=0, pad_token_id=0,
    )
    m = Qwen2ForCausalLM(cfg)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>", add_bos_token=False,
    )
    save("qwen2", m, lambda m: m.model, dtype=torch.bfloat16, tokenizer=tok, shard="20KB")

    # mistral: a sliding window on every layer, float16.
    cfg = MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=500.0, sliding_window=4, tie_word_embeddings=False,
    )
    m = MistralForCausalLM(cfg)
    save("mistral", m, lambda m: m.model, dtype=torch.float16)

    # gemma3_text: QK-norm, local and global layers, different rotary bases.
    text = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
        max_position_embeddings=1024, rms_norm_eps=1e-6, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        },
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    m = Gemma3ForCausalLM(Gemma3TextConfig(**text))
    save("gemma3_text", m, lambda m: m.model, norm_base=0.0)

    # gemma3: the multimodal model around the same kind of text model.
    text2 = dict(text, num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"])
    cfg = Gemma3Config(
        text_config=text2,
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, image_size=28, patch_size=14,
        ),
        mm_tokens_per_image=4, boi_token_index=297, eoi_token_index=298, image_token_index=299,
    )
    m = Gemma3ForConditionalGeneration(cfg)
    save("gemma3", m, lambda m: m.model.language_model, dtype=torch.bfloat16, norm_base=0.0)

    total = sum(
        os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs
    )
    print(f"{OUT}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
