"""Reference values for tests/gguf_reference.rs (src/model/gguf.rs against Python).

Writes tests/fixtures/gguf_reference.json with, for each real model and for a tiny GGUF file:
      metadata   a few keys and their values as gguf-py reads them
      tensors    for some tensors (one per quantisation type present, plus the ones named below):
                 the type, the shape in PyTorch order, and statistics of the values gguf-py's
                 `gguf.quants.dequantize` gives: sum and sum of squares (float64), the first 8
                 values of row 0 and of the last row (all values for the tiny file)
      tokenizer  token ids from `AutoTokenizer.from_pretrained(dir, gguf_file=name)(text)["input_ids"]`
                 for each of TEXTS, and the tokenizer's add_bos_token / bos / eos / pad ids
  and for the tiny file its size and sha256.

The tiny file (tiny_quants.gguf) is not stored: the test writes it itself, byte for byte the file
gguf-py's GGUFWriter writes here (into a temporary folder) from the same formula
(scripts/reference/formula.py, tests/common/mod.rs `formula_*`):
  - one 2 x 256 tensor per type of TINY_TYPES (named after the type), its raw bytes
    raw_bytes(name, n), then in every block the float fields of FIELDS overwritten (see
    `field_bits`: the f16 scales of the quantised blocks positive in [2^-7, 2^-3), each value of
    F32 / F16 / BF16 tensors of either sign in [2^-6, 2^6)), so that no value is NaN or infinite;
  - a 3-D F32 tensor values("f32_3d", 192, √3) and a 1-D F32 tensor 0..31 (`patch_me`, which
    the Rust test patches to an unsupported type);
  - metadata of every value type, and a tiny SentencePiece vocabulary built from TEXTS
    (architecture "llama", so transformers builds its generic LlamaTokenizer from it: Metaspace,
    merges recovered from scores).

Usage (needs transformers, gguf and numpy; see scripts/reference/venv.sh):
  python scripts/reference/make_gguf_fixture.py
The real models are read from $PREFIX_SUBSPACE_HOME/models (default ~/.cache/prefix-subspace).

Raw GGUF order: llama.cpp permutes the rows of attn_q / attn_k of llama-architecture files, and
transformers undoes that when it loads a model. The values here are gguf-py's, i.e. the file's
order, which is what `Gguf::tensor` returns.
"""
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from transformers import AutoTokenizer

from formula import SQRT3, hashes, raw_bytes, values

HOME = os.environ.get("PREFIX_SUBSPACE_HOME", os.path.expanduser("~/.cache/prefix-subspace"))
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "gguf_reference.json")
TINY_NAME = "tiny_quants.gguf"

# (key in the json, folder under models/, file, tensors always included, metadata keys)
MODELS = [
    ("smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf",
     ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight",
      "blk.0.attn_norm.weight", "output_norm.weight"],
     ["general.architecture", "llama.block_count", "llama.embedding_length", "llama.attention.head_count_kv",
      "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
      "tokenizer.ggml.add_bos_token", "general.name"]),
    ("gemma3", "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf",
     ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
      "blk.0.attn_output.weight", "blk.0.ffn_down.weight", "blk.0.attn_q_norm.weight", "output_norm.weight"],
     ["general.architecture", "gemma3.block_count", "gemma3.embedding_length", "gemma3.attention.key_length",
      "gemma3.attention.sliding_window", "gemma3.rope.freq_base", "gemma3.attention.layer_norm_rms_epsilon",
      "tokenizer.ggml.model", "tokenizer.ggml.add_bos_token", "general.name"]),
]

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "double  spaces  inside   and three",
    "12345 3.14",
    "Numbers: 1,234,567 and 0.001% of 2024-05-17",
    "Punctuation!?... (parens) [brackets] {braces} \"quotes\" 'single'",
    "Review: a gripping film\nSentiment (positive or negative):",
    "naïve café – 日本語 🙂",
    "line one\nline two\n\nline four\n",
    "tabs\tand\ttabs",
    "",
    " ",
    "   ",
    "\n",
    "It's, isn't it? We'll see; they'd've said \"no\".",
    "CamelCaseWord and snake_case_word",
    "https://example.com/path?q=1&r=2",
    "emoji 🙂🙂 and ÄÖÜ ß",
    "Question: Is the sky blue?\nAnswer:",
    "<|im_start|>user\nhi<|im_end|>",
    "<bos>text<eos> <mask>",
    "Ünïcödé wörds – “smart quotes” — em dash…",
    "supercalifragilisticexpialidocious",
    "premise: A man plays a guitar. hypothesis: Someone makes music.",
]

# The tensor types of the tiny file, and the byte offsets and kinds of the float fields of one
# block of each (the f16 scales d / dmin of the quantised blocks; the value itself for F32, F16
# and BF16, whose block is one value).
TINY_TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
FIELDS = {
    Q.F32: [(0, "f32")], Q.F16: [(0, "f16")], Q.BF16: [(0, "bf16")],
    Q.Q4_0: [(0, "scale")], Q.Q4_1: [(0, "scale"), (2, "scale")], Q.Q5_0: [(0, "scale")],
    Q.Q5_1: [(0, "scale"), (2, "scale")], Q.Q8_0: [(0, "scale")],
    Q.Q2_K: [(80, "scale"), (82, "scale")], Q.Q3_K: [(108, "scale")], Q.Q4_K: [(0, "scale"), (2, "scale")],
    Q.Q5_K: [(0, "scale"), (2, "scale")], Q.Q6_K: [(208, "scale")],
}


def field_bits(kind, h):
    """The bits of a float field from a hash h (uint64 array of 32-bit values): sign = bit 31,
    e = bits 24..30, mantissa = the low bits. `scale`: a positive f16 with exponent field
    8 + e % 4; `f16`: exponent field 9 + e % 12; `bf16` and `f32`: exponent field 121 + e % 12."""
    sign = h >> np.uint64(31)
    e = (h >> np.uint64(24)) & np.uint64(0x7F)
    if kind == "scale":
        return ((np.uint64(8) + e % np.uint64(4)) << np.uint64(10)) | (h & np.uint64(0x3FF)), 2
    if kind == "f16":
        return (sign << np.uint64(15)) | ((np.uint64(9) + e % np.uint64(12)) << np.uint64(10)) | (h & np.uint64(0x3FF)), 2
    if kind == "bf16":
        return (sign << np.uint64(15)) | ((np.uint64(121) + e % np.uint64(12)) << np.uint64(7)) | (h & np.uint64(0x7F)), 2
    assert kind == "f32"
    return (sign << np.uint64(31)) | ((np.uint64(121) + e % np.uint64(12)) << np.uint64(23)) | (h & np.uint64(0x7FFFFF)), 4


def tiny_blocks(qtype, rows, cols):
    """The raw bytes (rows, bytes per row) of a tiny tensor of `qtype` named after it."""
    name = qtype.name.lower()
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    raw = raw_bytes(name, n_blocks * size).reshape(n_blocks, size)
    fields = FIELDS[qtype]
    h = hashes(name + ".fields", n_blocks * len(fields)).reshape(n_blocks, len(fields))
    for f, (off, kind) in enumerate(fields):
        bits, width = field_bits(kind, h[:, f])
        for i in range(width):
            raw[:, off + i] = ((bits >> np.uint64(8 * i)) & np.uint64(0xFF)).astype(np.uint8)
    return raw.reshape(rows, -1)


def dequantised(t):
    """gguf-py's float values of a ReaderTensor, shaped in PyTorch (row-major) order."""
    shape = [int(d) for d in reversed(t.shape.tolist())]
    values = gguf.quants.dequantize(t.data, t.tensor_type)
    return np.asarray(values, dtype=np.float32).reshape(shape), shape


def f32(v):
    """The shortest decimal that reads back as the same float32."""
    return float(str(np.float32(v)))


def stats(t, all_values=False):
    x, shape = dequantised(t)
    rows = x.reshape(-1, shape[-1])
    out = {
        "type": t.tensor_type.name,
        "shape": shape,
        "sum": float(x.astype(np.float64).sum()),
        "sum_sq": float((x.astype(np.float64) ** 2).sum()),
        "row0_first8": [f32(v) for v in rows[0, :8]],
        "last_row_first8": [f32(v) for v in rows[-1, :8]],
    }
    if all_values:
        out["values"] = [f32(v) for v in x.reshape(-1)]
    return out


def field_value(f):
    v = f.contents()
    return v.item() if isinstance(v, np.generic) else v


def pick_tensors(reader, always):
    by_name = {t.name: t for t in reader.tensors}
    chosen = [n for n in always if n in by_name]
    seen = {by_name[n].tensor_type for n in chosen}
    for t in reader.tensors:
        if t.tensor_type not in seen:
            chosen.append(t.name)
            seen.add(t.tensor_type)
    return [by_name[n] for n in chosen]


def tokenizer_reference(folder, name):
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return {
        "class": type(tok).__name__,
        "add_bos": bool(tok.add_bos_token),
        "bos_id": tok.bos_token_id,
        "eos_id": tok.eos_token_id,
        "pad_id": tok.pad_token_id,
        "ids": [tok(text)["input_ids"] for text in TEXTS],
    }


def tiny_vocabulary():
    """A small SentencePiece vocabulary: specials, byte tokens, characters and pieces of TEXTS."""
    tokens, scores, types = [], [], []

    def add(token, score, kind):
        tokens.append(token)
        scores.append(score)
        types.append(kind)

    add("<unk>", 0.0, 2)  # UNKNOWN
    add("<s>", 0.0, 3)  # CONTROL
    add("</s>", 0.0, 3)
    add("<pad>", 0.0, 3)
    add("<|user|>", 0.0, 4)  # USER_DEFINED
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, 6)  # BYTE
    text = "".join(TEXTS).replace(" ", "\u2581")
    chars = sorted({c for c in text if ord(c) < 0x3000})  # CJK and emoji fall back to bytes
    pieces = ["\u2581t", "he", "\u2581the", "in", "\u2581a", "er", "on", "\u2581s", "re", "\u2581w",
              "ing", "an", "\u2581in", "\u2581c", "is", "\u2581p", "ou", "es", "\u2581f", "it", "en",
              "\u2581\u2581", "\u2581\u2581\u2581", "or", "\u2581m", "ar", "qu", "\u2581qu", "ick", "ro",
              "own", "\u2581br", "\u2581brown", "ox", "\u2581fox", "um", "mp", "\u2581j", "ump", "\u2581jump",
              "ov", "\u2581ov", "\u2581over", "az", "\u2581l", "\u2581lazy", "og", "\u2581d", "\u2581dog",
              "ll", "\u2581He", "He", "llo", "\u2581world", "ld", "wor", "12", "34", "123", "\u25813",
              "ent", "im", "iment", "\u2581Sent", "\u2581Sentiment", "\u2581Review", "vie", "ive",
              "\u2581positive", "\u2581negative", "at", "ative", "ipp", "\u2581gr", "\u2581gripping",
              "\u2581film", "il", "lm", "n't", "'s", "'ll", "ca", "fé", "\u2581café", "ïve", "\u2581na"]
    seen = set(tokens)
    for i, c in enumerate(chars):
        if c not in seen:
            add(c, -100.0 - i, 1)
            seen.add(c)
    for i, p in enumerate(pieces):
        if p not in seen:
            add(p, -1.0 - 0.5 * i, 1)
            seen.add(p)
    return tokens, scores, types


def write_tiny(path):
    w = gguf.GGUFWriter(path, "llama")
    # llama.* keys so that transformers accepts the file as a llama model for its tokenizer.
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    # One value of every metadata type, for the accessors.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_int8("test.i8_pos", 7)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", 1234)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -1)
    w.add_uint64("test.u64_small", 77)
    w.add_uint64("test.u64_big", 1 << 40)
    w.add_int64("test.i64", 123456789)
    w.add_float32("test.f32", 0.25)
    w.add_float64("test.f64", 1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "naïve café")
    w.add_array("test.array", [1, 2, 3])
    tokens, scores, types = tiny_vocabulary()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(3)
    # No add_bos_token key: transformers then adds BOS to a sentencepiece vocabulary.

    for qtype in TINY_TYPES:
        w.add_tensor(qtype.name.lower(), tiny_blocks(qtype, 2, 256), raw_dtype=qtype)
    # A 3-D tensor (dimension order), and a 1-D F32 tensor the Rust test patches to an unsupported type.
    w.add_tensor("f32_3d", values("f32_3d", 2 * 3 * 32, SQRT3).reshape(2, 3, 32))
    w.add_tensor("patch_me", np.arange(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def describe(path, always, keys, tokenizer_args, all_values=False):
    reader = gguf.GGUFReader(path)
    tensors = pick_tensors(reader, always) if not all_values else list(reader.tensors)
    return {
        "file": os.path.basename(path),
        "metadata": {k: field_value(reader.fields[k]) for k in keys if k in reader.fields},
        "tensor_count": len(reader.tensors),
        "tensors": {t.name: stats(t, all_values) for t in tensors},
        "tokenizer": tokenizer_reference(*tokenizer_args),
    }


def main():
    out = {"texts": TEXTS}
    tiny_keys = ["general.architecture", "test.u8", "test.i8", "test.i8_pos", "test.u16", "test.i16", "test.u32",
                 "test.i32", "test.u64_small", "test.u64_big", "test.i64", "test.f32", "test.f64", "test.bool",
                 "test.string"]
    with tempfile.TemporaryDirectory() as tmp:
        tiny = os.path.join(tmp, TINY_NAME)
        write_tiny(tiny)
        out["tiny"] = describe(tiny, [], tiny_keys, (tmp, TINY_NAME), all_values=True)
        data = open(tiny, "rb").read()
        out["tiny"]["size"] = len(data)
        out["tiny"]["sha256"] = hashlib.sha256(data).hexdigest()
    for key, folder, name, always, keys in MODELS:
        path = os.path.join(HOME, "models", folder, name)
        if not os.path.isfile(path):
            sys.exit(f"{path} is missing")
        out[key] = describe(path, always, keys, (os.path.dirname(path), name))
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); the tiny file has {out['tiny']['size']} bytes")
    for key in ["tiny"] + [m[0] for m in MODELS]:
        t = out[key]["tokenizer"]
        print(key, t["class"], "add_bos", t["add_bos"], "tensors", {n: v["type"] for n, v in out[key]["tensors"].items()})


if __name__ == "__main__":
    main()
