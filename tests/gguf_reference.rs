//! GGUF reading (src/model/gguf.rs) against Python, with reference values made by
//! scripts/reference/make_gguf_fixture.py (tests/fixtures/gguf_reference.json):
//!
//! - a tiny GGUF file this test writes itself (`write_tiny`: byte for byte the file gguf-py's
//!   GGUFWriter writes in the script, from the same formula; its sha256 is in the reference):
//!   every value of one small tensor per tensor type against gguf-py's dequantisation, the
//!   metadata accessors on every value type, and its small SentencePiece vocabulary against
//!   transformers' tokenizer for it;
//! - the two real models (SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M): statistics and leading
//!   values of a few tensors of each type against gguf-py, every tensor readable, metadata,
//!   and token ids against transformers' `AutoTokenizer.from_pretrained(dir, gguf_file=…)`.
//!   These are skipped with a note when the model file is not installed;
//! - bad input (not GGUF, truncated, missing tensor, unsupported type, wrong metadata types):
//!   an `Error::Input` naming the file, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::gguf_write::{GgmlType, GgufFile, Meta};
use prefix_subspace::model::gguf::Gguf;
use prefix_subspace::Error;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::Tensor;

/// The reference values.
fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A float field of a tiny block (make_gguf_fixture.py's `field_bits`).
#[derive(Clone, Copy)]
enum Field {
    /// A positive f16 scale in [2^-7, 2^-3).
    Scale,
    /// An f16 / bf16 / f32 value of either sign in [2^-6, 2^6).
    Half,
    Bf16,
    Single,
}

/// A tensor type of the tiny file, its tensor's name, and the byte offsets and kinds of the
/// float fields of one block.
type TinyType = (GgmlType, &'static str, &'static [(usize, Field)]);

/// The tensor types of the tiny file, in the file's order (the float fields: the f16 scales
/// d / dmin; the value itself for F32, F16, BF16).
const TINY_TYPES: [TinyType; 13] = {
    use Field::{Bf16, Half, Scale, Single};
    use GgmlType::*;
    [
        (F32, "f32", &[(0, Single)]),
        (F16, "f16", &[(0, Half)]),
        (BF16, "bf16", &[(0, Bf16)]),
        (Q4_0, "q4_0", &[(0, Scale)]),
        (Q4_1, "q4_1", &[(0, Scale), (2, Scale)]),
        (Q5_0, "q5_0", &[(0, Scale)]),
        (Q5_1, "q5_1", &[(0, Scale), (2, Scale)]),
        (Q8_0, "q8_0", &[(0, Scale)]),
        (Q2_K, "q2_k", &[(80, Scale), (82, Scale)]),
        (Q3_K, "q3_k", &[(108, Scale)]),
        (Q4_K, "q4_k", &[(0, Scale), (2, Scale)]),
        (Q5_K, "q5_k", &[(0, Scale), (2, Scale)]),
        (Q6_K, "q6_k", &[(208, Scale)]),
    ]
};

/// The bits and byte width of a float field from a hash: sign = bit 31, e = bits 24..30,
/// mantissa = the low bits.
fn field_bits(kind: Field, h: u32) -> (u32, usize) {
    let (sign, e) = (h >> 31, (h >> 24) & 0x7F);
    match kind {
        Field::Scale => (((8 + e % 4) << 10) | (h & 0x3FF), 2),
        Field::Half => ((sign << 15) | ((9 + e % 12) << 10) | (h & 0x3FF), 2),
        Field::Bf16 => ((sign << 15) | ((121 + e % 12) << 7) | (h & 0x7F), 2),
        Field::Single => ((sign << 31) | ((121 + e % 12) << 23) | (h & 0x7F_FFFF), 4),
    }
}

/// The raw bytes of a tiny tensor: formula bytes, then the float fields of every block.
fn tiny_blocks(ty: GgmlType, name: &str, fields: &[(usize, Field)], values: usize) -> Vec<u8> {
    let (block, size) = ty.block();
    let n_blocks = values / block;
    let mut raw = common::formula_bytes(name, n_blocks * size);
    let fields_name = format!("{name}.fields");
    for b in 0..n_blocks {
        for (f, &(off, kind)) in fields.iter().enumerate() {
            let (bits, width) = field_bits(kind, common::formula_hash(&fields_name, b * fields.len() + f));
            raw[b * size + off..b * size + off + width].copy_from_slice(&bits.to_le_bytes()[..width]);
        }
    }
    raw
}

/// The tiny SentencePiece vocabulary (make_gguf_fixture.py's `tiny_vocabulary`): specials,
/// byte tokens, the characters of the texts, a few pieces.
fn tiny_vocabulary(texts: &[String]) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    #[rustfmt::skip]
    const PIECES: [&str; 86] = [
        "▁t", "he", "▁the", "in", "▁a", "er", "on", "▁s", "re", "▁w", "ing", "an", "▁in", "▁c", "is", "▁p", "ou",
        "es", "▁f", "it", "en", "▁▁", "▁▁▁", "or", "▁m", "ar", "qu", "▁qu", "ick", "ro", "own", "▁br", "▁brown", "ox",
        "▁fox", "um", "mp", "▁j", "ump", "▁jump", "ov", "▁ov", "▁over", "az", "▁l", "▁lazy", "og", "▁d", "▁dog", "ll",
        "▁He", "He", "llo", "▁world", "ld", "wor", "12", "34", "123", "▁3", "ent", "im", "iment", "▁Sent",
        "▁Sentiment", "▁Review", "vie", "ive", "▁positive", "▁negative", "at", "ative", "ipp", "▁gr", "▁gripping",
        "▁film", "il", "lm", "n't", "'s", "'ll", "ca", "fé", "▁café", "ïve", "▁na",
    ];
    let mut v = (Vec::new(), Vec::new(), Vec::new());
    let add = |v: &mut (Vec<String>, Vec<f32>, Vec<i32>), t: String, s: f64, k: i32| {
        v.0.push(t);
        v.1.push(s as f32);
        v.2.push(k);
    };
    add(&mut v, "<unk>".into(), 0.0, 2); // UNKNOWN
    for t in ["<s>", "</s>", "<pad>"] {
        add(&mut v, t.into(), 0.0, 3); // CONTROL
    }
    add(&mut v, "<|user|>".into(), 0.0, 4); // USER_DEFINED
    for b in 0..256 {
        add(&mut v, format!("<0x{b:02X}>"), 0.0, 6); // BYTE
    }
    let text = texts.concat().replace(' ', "\u{2581}");
    let chars: std::collections::BTreeSet<char> = text.chars().filter(|&c| (c as u32) < 0x3000).collect();
    let mut seen: std::collections::HashSet<String> = v.0.iter().cloned().collect();
    for (i, c) in chars.iter().enumerate() {
        if seen.insert(c.to_string()) {
            add(&mut v, c.to_string(), -100.0 - i as f64, 1);
        }
    }
    for (i, p) in PIECES.iter().enumerate() {
        if seen.insert(p.to_string()) {
            add(&mut v, p.to_string(), -1.0 - 0.5 * i as f64, 1);
        }
    }
    v
}

/// Writes tiny_quants.gguf into a temporary folder: the file make_gguf_fixture.py writes with
/// gguf-py (same calls, same formula), checked byte for byte against the reference's sha256.
fn write_tiny() -> (tempfile::TempDir, PathBuf) {
    let fx = fixture();
    let texts: Vec<String> = serde_json::from_value(fx["texts"].clone()).unwrap();
    let mut w = GgufFile::new("llama");
    // llama.* keys so that transformers accepts the file as a llama model for its tokenizer.
    w.meta("llama.block_count", Meta::U32(1))
        .meta("llama.context_length", Meta::U32(64))
        .meta("llama.embedding_length", Meta::U32(8))
        .meta("llama.feed_forward_length", Meta::U32(16))
        .meta("llama.attention.head_count", Meta::U32(2))
        .meta("llama.attention.head_count_kv", Meta::U32(1))
        .meta("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-6f64 as f32))
        .meta("llama.rope.freq_base", Meta::F32(10000.0));
    // One value of every metadata type, for the accessors.
    w.meta("test.u8", Meta::U8(200))
        .meta("test.i8", Meta::I8(-5))
        .meta("test.i8_pos", Meta::I8(7))
        .meta("test.u16", Meta::U16(60000))
        .meta("test.i16", Meta::I16(1234))
        .meta("test.u32", Meta::U32(4_000_000_000))
        .meta("test.i32", Meta::I32(-1))
        .meta("test.u64_small", Meta::U64(77))
        .meta("test.u64_big", Meta::U64(1 << 40))
        .meta("test.i64", Meta::I64(123_456_789))
        .meta("test.f32", Meta::F32(0.25))
        .meta("test.f64", Meta::F64(1.5))
        .meta("test.bool", Meta::Bool(true))
        .meta("test.string", Meta::Str("naïve café".into()))
        .meta("test.array", Meta::I32s(vec![1, 2, 3]));
    let (tokens, scores, types) = tiny_vocabulary(&texts);
    w.meta("tokenizer.ggml.model", Meta::Str("llama".into()))
        .meta("tokenizer.ggml.pre", Meta::Str("default".into()))
        .meta("tokenizer.ggml.tokens", Meta::Strs(tokens))
        .meta("tokenizer.ggml.scores", Meta::F32s(scores))
        .meta("tokenizer.ggml.token_type", Meta::I32s(types))
        .meta("tokenizer.ggml.bos_token_id", Meta::U32(1))
        .meta("tokenizer.ggml.eos_token_id", Meta::U32(2))
        .meta("tokenizer.ggml.unknown_token_id", Meta::U32(0))
        .meta("tokenizer.ggml.padding_token_id", Meta::U32(3));
    // No add_bos_token key: transformers then adds BOS to a sentencepiece vocabulary.
    for (ty, name, fields) in TINY_TYPES {
        w.tensor(name, &[2, 256], ty, tiny_blocks(ty, name, fields, 512));
    }
    // A 3-D tensor (dimension order), and a 1-D F32 tensor a test patches to an unsupported type.
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let v = common::formula_values("f32_3d", 2 * 3 * 32, 3.0f64.sqrt(), 0.0);
    w.tensor("f32_3d", &[2, 3, 32], GgmlType::F32, f32_bytes(&v));
    w.tensor("patch_me", &[32], GgmlType::F32, f32_bytes(&(0..32).map(|i| i as f32).collect::<Vec<_>>()));
    let bytes = w.to_bytes();
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        (bytes.len() as u64, sha.as_str()),
        (fx["tiny"]["size"].as_u64().unwrap(), fx["tiny"]["sha256"].as_str().unwrap()),
        "the tiny GGUF file written here differs from the one make_gguf_fixture.py writes"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny_quants.gguf");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// An installed model file, or `None` (with a note) when it is not installed.
fn model_file(folder: &str, file: &str, setup: &str) -> Option<PathBuf> {
    let path = prefix_subspace::paths::home().join("models").join(folder).join(file);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("note: {} is not installed; skipping its GGUF checks ({setup} installs it)", path.display());
        None
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

/// Asserts `err` is an input error whose message names `path`; returns the message.
fn input_error<T: std::fmt::Debug>(r: Result<T, Error>, path: &Path) -> String {
    match r {
        Err(Error::Input(m)) => {
            assert!(m.contains(&path.display().to_string()), "message does not name {}: {m}", path.display());
            assert!(!m.contains('\n'), "message is not one line: {m}");
            m
        }
        other => panic!("expected Error::Input, got {other:?}"),
    }
}

/// Type, shape, sums and leading values of each reference tensor; every value when the
/// reference has them.
fn check_tensors(g: &mut Gguf, reference: &Value) {
    for (name, r) in reference.as_object().unwrap() {
        let shape: Vec<i64> = r["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
        assert_eq!(g.tensor_type(name).unwrap(), r["type"].as_str().unwrap(), "{name}");
        assert_eq!(g.tensor_shape(name).unwrap(), shape, "{name}");
        let t = g.tensor(name).unwrap();
        assert_eq!(t.size(), shape, "{name}");
        assert_eq!(t.kind(), tch::Kind::Float, "{name}");
        let v = to_vec(&t);
        let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
        let sum_sq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let (rs, rsq) = (r["sum"].as_f64().unwrap(), r["sum_sq"].as_f64().unwrap());
        // Relative to the sum of magnitudes' scale (a sum can be near zero by cancellation).
        let scale = rsq.sqrt() * (v.len() as f64).sqrt();
        assert!((sum - rs).abs() <= 1e-5 * rs.abs().max(scale * 1e-3), "{name}: sum {sum} vs {rs}");
        assert!((sum_sq - rsq).abs() <= 1e-5 * rsq, "{name}: sum of squares {sum_sq} vs {rsq}");
        let cols = *shape.last().unwrap() as usize;
        let close = |got: &[f32], want: &[f64], what: &str| {
            assert_eq!(got.len(), want.len(), "{name} {what}");
            for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
                // The reference is the shortest decimal of a float32: compare as float32, to
                // 1e-6 (relative above 1).
                let b = b as f32;
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{name} {what}[{i}]: {a} vs {b}");
            }
        };
        close(&v[..8.min(cols)], &floats(&r["row0_first8"]), "row 0");
        let last = v.len() - cols;
        close(&v[last..last + 8.min(cols)], &floats(&r["last_row_first8"]), "last row");
        if let Some(all) = r.get("values") {
            close(&v, &floats(all), "values");
        }
    }
}

/// Each reference metadata value through the accessor of its type.
fn check_metadata(g: &Gguf, reference: &Value) {
    for (key, want) in reference.as_object().unwrap() {
        assert!(g.has(key), "{key}");
        match want {
            Value::String(s) => assert_eq!(&g.string(key).unwrap(), s, "{key}"),
            Value::Bool(b) => assert_eq!(g.bool(key).unwrap(), *b, "{key}"),
            Value::Number(n) if n.is_u64() || n.is_i64() => {
                let i = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)).unwrap();
                match u32::try_from(i) {
                    Ok(u) => assert_eq!(g.u32(key).unwrap(), u, "{key}"),
                    Err(_) => {
                        let m = input_error(g.u32(key), g.path());
                        assert!(m.contains(key), "{m}");
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap();
                assert!((f64::from(g.f32(key).unwrap()) - x).abs() <= 1e-6 * x.abs(), "{key}");
            }
            other => panic!("{key}: unexpected reference {other}"),
        }
    }
}

/// The tokenizer's ids for every reference text, its special ids and BOS flag.
fn check_tokenizer(g: &Gguf, reference: &Value, texts: &[Value]) -> f64 {
    let start = Instant::now();
    let t = g.tokenizer().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let id = |k: &str| reference[k].as_u64().map(|x| x as u32);
    assert_eq!(t.add_bos, reference["add_bos"].as_bool().unwrap(), "add_bos");
    assert_eq!(t.bos_id, id("bos_id"), "bos id");
    assert_eq!(t.eos_id, id("eos_id"), "eos id");
    assert_eq!(t.pad_id, id("pad_id"), "pad id");
    let ids = reference["ids"].as_array().unwrap();
    assert_eq!(ids.len(), texts.len());
    for (text, want) in texts.iter().zip(ids) {
        let text = text.as_str().unwrap();
        let want: Vec<u32> = want.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = t.tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{text:?}");
        // Without special tokens: the same ids without BOS.
        let plain = t.tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        let skip = usize::from(t.add_bos);
        assert_eq!(plain, want[skip..], "{text:?} without special tokens");
    }
    seconds
}

/// All checks of a real model, with timings.
fn check_model(key: &str, folder: &str, file: &str, setup: &str) {
    let Some(path) = model_file(folder, file, setup) else { return };
    let fx = fixture();
    let r = &fx[key];
    let start = Instant::now();
    let mut g = Gguf::open(&path).unwrap();
    let opened = start.elapsed().as_secs_f64();
    assert_eq!(g.tensor_names().len() as u64, r["tensor_count"].as_u64().unwrap());
    check_metadata(&g, &r["metadata"]);
    check_tensors(&mut g, &r["tensors"]);
    let tok = check_tokenizer(&g, &r["tokenizer"], fx["texts"].as_array().unwrap());
    // Every tensor dequantises to its declared shape, with finite values (timed: open and
    // dequantise only).
    let start = Instant::now();
    let mut g = Gguf::open(&path).unwrap();
    let (mut all, mut values) = (start.elapsed().as_secs_f64(), 0i64);
    for name in g.tensor_names() {
        let start = Instant::now();
        let t = g.tensor(&name).unwrap();
        all += start.elapsed().as_secs_f64();
        assert_eq!(t.size(), g.tensor_shape(&name).unwrap(), "{name}");
        assert!(bool::try_from(t.isfinite().all()).unwrap(), "{name} has non-finite values");
        values += t.numel() as i64;
    }
    println!(
        "{file}: open {opened:.3} s; open + dequantise all {} tensors ({values} values) {all:.2} s; tokenizer build {tok:.2} s",
        g.tensor_names().len()
    );
}

#[test]
fn smollm2_tensors_metadata_and_tokenizer_match_python() {
    check_model("smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", "scripts/setup.sh");
}

#[test]
fn gemma3_tensors_metadata_and_tokenizer_match_python() {
    check_model("gemma3", "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", "scripts/setup-gemma.sh");
}

#[test]
fn tiny_quants_every_type_matches_gguf_py() {
    let fx = fixture();
    let (_dir, path) = write_tiny();
    let mut g = Gguf::open(&path).unwrap();
    let r = &fx["tiny"]["tensors"];
    assert_eq!(g.tensor_names().len(), r.as_object().unwrap().len());
    let types: Vec<String> = g.tensor_names().iter().map(|n| g.tensor_type(n).unwrap()).collect();
    for t in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(types.iter().any(|x| x == t), "no {t} tensor in tiny_quants.gguf");
    }
    assert_eq!(g.tensor_shape("f32_3d").unwrap(), [2, 3, 32]);
    assert_eq!(g.tensor_shape("q6_k").unwrap(), [2, 256]);
    check_tensors(&mut g, r);
}

#[test]
fn tiny_metadata_accessors_take_every_value_type() {
    let fx = fixture();
    let (_dir, path) = write_tiny();
    let g = Gguf::open(&path).unwrap();
    check_metadata(&g, &fx["tiny"]["metadata"]);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.f32("test.f64").unwrap(), 1.5);
    assert!(!g.has("no.such.key"));
    let m = input_error(g.u32("no.such.key"), &path);
    assert!(m.contains("no.such.key"), "{m}");
    let m = input_error(g.u32("test.i32"), &path); // -1
    assert!(m.contains("test.i32"), "{m}");
    let m = input_error(g.f32("test.string"), &path);
    assert!(m.contains("test.string"), "{m}");
    let m = input_error(g.string("test.u32"), &path);
    assert!(m.contains("test.u32"), "{m}");
    let m = input_error(g.bool("test.f32"), &path);
    assert!(m.contains("test.f32"), "{m}");
    input_error(g.u32("test.array"), &path);
    assert!(g.metadata_keys().iter().any(|k| k == "tokenizer.ggml.tokens"));
}

#[test]
fn tiny_sentencepiece_tokenizer_matches_transformers() {
    // A llama-architecture vocabulary with scores and no merges: transformers'
    // LlamaTokenizer (Metaspace), merges recovered from the scores, byte fallback, BOS by
    // default (the file has no add_bos_token).
    let fx = fixture();
    let (_dir, path) = write_tiny();
    let g = Gguf::open(&path).unwrap();
    check_tokenizer(&g, &fx["tiny"]["tokenizer"], fx["texts"].as_array().unwrap());
}

#[test]
fn a_file_that_is_not_gguf_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("text.gguf", b"hello, this is not a model\n".to_vec()),
        ("empty.gguf", Vec::new()),
        ("zeros.gguf", vec![0u8; 4096]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        input_error(Gguf::open(&path), &path);
    }
    // A missing file is an I/O error naming it.
    let missing = dir.path().join("missing.gguf");
    match Gguf::open(&missing) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("missing.gguf"), "{e}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn a_truncated_file_is_an_input_error() {
    let (dir, path) = write_tiny();
    let bytes = std::fs::read(path).unwrap();
    // Inside the magic, the counts, the metadata, the tensor table, and the tensor data.
    for cut in [2, 10, 20, 200, 3000, bytes.len() * 3 / 4, bytes.len() - 1] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let m = input_error(Gguf::open(&path), &path);
        if cut > bytes.len() / 2 {
            assert!(m.contains("truncated"), "{m}");
        }
    }
}

#[test]
fn a_missing_tensor_is_an_input_error() {
    let (_dir, path) = write_tiny();
    let mut g = Gguf::open(&path).unwrap();
    for r in [g.tensor("blk.0.no_such.weight").map(|_| ()), g.tensor_shape("blk.0.no_such.weight").map(|_| ())] {
        let m = input_error(r, &path);
        assert!(m.contains("blk.0.no_such.weight"), "{m}");
    }
    input_error(g.tensor_type("nope"), &path);
}

#[test]
fn an_unsupported_tensor_type_is_an_input_error() {
    // Rewrite the type of the 1-D F32 tensor `patch_me` in the tensor table (name, then
    // dimension count u32, one u64 dimension, type u32) to MXFP4 (39), which candle cannot read.
    let (dir, tiny) = write_tiny();
    let mut bytes = std::fs::read(tiny).unwrap();
    let name = b"patch_me";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8;
    assert_eq!(bytes[at..at + 4], 0u32.to_le_bytes(), "patch_me is not where expected");
    bytes[at..at + 4].copy_from_slice(&39u32.to_le_bytes());
    let path = dir.path().join("mxfp4.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let m = input_error(Gguf::open(&path), &path);
    assert!(m.contains("39"), "{m}");
}

#[test]
fn a_tokenizer_of_an_unknown_model_is_an_input_error() {
    // The tiny file with tokenizer.ggml.model "llama" respelled "xxxxx".
    let (dir, tiny) = write_tiny();
    let mut bytes = std::fs::read(tiny).unwrap();
    let key = b"tokenizer.ggml.model";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&bytes[at..at + 5], b"llama");
    bytes[at..at + 5].copy_from_slice(b"xxxxx");
    let path = dir.path().join("unknown.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let g = Gguf::open(&path).unwrap();
    let m = input_error(g.tokenizer(), &path);
    assert!(m.contains("xxxxx"), "{m}");
}
