//! Tiny random GGUF decoders written here: a llama-architecture file (tied and untied output)
//! and a gemma3 file, each with the same weights as a tiny Hugging Face folder of the same
//! family written beside it (weights from the formula of tests/common, `formula_hf_weight`).
//! The folders are converted as llama.cpp's convert_hf_to_gguf.py converts them: GGUF tensor
//! names, the Q/K row permutation of llama files, Gemma's norms stored as 1 + w; some tensors
//! stored as F16 or Q8_0 (the folder then holds the values those dequantise to).
//!
//! The Hugging Face path is checked against transformers in tests/hf_decoder.rs; here the GGUF
//! path must give the same configuration, the same weights bit for bit, hence the same hidden
//! states and logits. And on the GGUF decoders: the keys and values of a text, used as a
//! prefix, continue that text (with `positions = shifted`; with unshifted positions once the
//! prefix keys are turned back by the length of the text, rotary positions being relative).

mod common;

use std::path::PathBuf;

use common::gguf_write::{GgmlType, GgufFile, Meta};
use prefix_subspace::model::decoder::{Decoder, DecoderConfig, Family};
use prefix_subspace::model::gguf::Gguf;
use prefix_subspace::model::hf_decoder;
use prefix_subspace::model::tokenizer::pad_batch;
use prefix_subspace::model::{Forward, Positions, TextTokenizer};
use prefix_subspace::prompt::Prompt;
use tch::{Device, Tensor};

const VOCAB: i64 = 300;
const HIDDEN: i64 = 32;
const FFN: i64 = 64;

/// The checkpoints of this file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tiny {
    /// Llama: 2 layers, 4 query heads and 2 key/value heads of 8, tied or untied output.
    Llama { tied: bool },
    /// Gemma 3: 6 layers (5 sliding-window layers, window 8, then a full one), 2 query heads
    /// and 1 key/value head of 16, QK-norm, tied output.
    Gemma3,
}

impl Tiny {
    fn layers(self) -> i64 {
        match self {
            Tiny::Llama { .. } => 2,
            Tiny::Gemma3 => 6,
        }
    }

    /// (query heads, key/value heads, head dimension).
    fn heads(self) -> (i64, i64, i64) {
        match self {
            Tiny::Llama { .. } => (4, 2, 8),
            Tiny::Gemma3 => (2, 1, 16),
        }
    }

    fn config_json(self) -> serde_json::Value {
        let (heads, kv, hd) = self.heads();
        match self {
            Tiny::Llama { tied } => serde_json::json!({
                "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
                "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": self.layers(),
                "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
                "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "hidden_act": "silu",
                "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
                "attention_bias": false, "mlp_bias": false, "tie_word_embeddings": tied,
                "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0
            }),
            Tiny::Gemma3 => {
                let mut types = vec!["sliding_attention"; 5];
                types.push("full_attention");
                serde_json::json!({
                    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": VOCAB,
                    "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": self.layers(),
                    "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
                    "query_pre_attn_scalar": hd, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6,
                    "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 8, "layer_types": types,
                    "rope_parameters": {
                        "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}
                    },
                    "attention_bias": false, "tie_word_embeddings": true,
                    "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2
                })
            }
        }
    }
}

/// How the converter turns a Hugging Face tensor into its GGUF tensor.
#[derive(Debug, Clone, Copy)]
enum Convert {
    /// As is.
    Same,
    /// llama.cpp's rotary row permutation, over this many heads.
    Permute(usize),
    /// Gemma's norm weights: 1 + w.
    PlusOne,
}

/// One tensor: its Hugging Face name, GGUF name, shape, GGUF type and conversion.
struct Entry {
    hf: String,
    gguf: String,
    shape: Vec<i64>,
    ty: GgmlType,
    convert: Convert,
}

/// The tensors of a tiny checkpoint. The projections' GGUF types cycle through F16, Q8_0 and
/// F32 over the projections and the layers; the norms are F32 as in llama.cpp's files.
fn entries(tiny: Tiny) -> Vec<Entry> {
    let (heads, kv, hd) = tiny.heads();
    let gemma = tiny == Tiny::Gemma3;
    let norm = if gemma { Convert::PlusOne } else { Convert::Same };
    let e = |hf: String, gguf: String, shape: Vec<i64>, ty, convert| Entry { hf, gguf, shape, ty, convert };
    let embd_type = if gemma { GgmlType::Q8_0 } else { GgmlType::F16 };
    let mut out = vec![e(
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        vec![VOCAB, HIDDEN],
        embd_type,
        Convert::Same,
    )];
    let cycle = [GgmlType::F16, GgmlType::Q8_0, GgmlType::F32];
    for l in 0..tiny.layers() {
        let projections = [
            ("self_attn.q_proj", "attn_q", vec![heads * hd, HIDDEN]),
            ("self_attn.k_proj", "attn_k", vec![kv * hd, HIDDEN]),
            ("self_attn.v_proj", "attn_v", vec![kv * hd, HIDDEN]),
            ("self_attn.o_proj", "attn_output", vec![HIDDEN, heads * hd]),
            ("mlp.gate_proj", "ffn_gate", vec![FFN, HIDDEN]),
            ("mlp.up_proj", "ffn_up", vec![FFN, HIDDEN]),
            ("mlp.down_proj", "ffn_down", vec![HIDDEN, FFN]),
        ];
        for (k, (hf, g, shape)) in projections.into_iter().enumerate() {
            let convert = match (gemma, g) {
                (false, "attn_q") => Convert::Permute(heads as usize),
                (false, "attn_k") => Convert::Permute(kv as usize),
                _ => Convert::Same,
            };
            let ty = cycle[(k + l as usize) % cycle.len()];
            out.push(e(format!("model.layers.{l}.{hf}.weight"), format!("blk.{l}.{g}.weight"), shape, ty, convert));
        }
        let mut norms = vec![("input_layernorm", "attn_norm", HIDDEN)];
        if gemma {
            norms.extend([
                ("self_attn.q_norm", "attn_q_norm", hd),
                ("self_attn.k_norm", "attn_k_norm", hd),
                ("post_attention_layernorm", "post_attention_norm", HIDDEN),
                ("pre_feedforward_layernorm", "ffn_norm", HIDDEN),
                ("post_feedforward_layernorm", "post_ffw_norm", HIDDEN),
            ]);
        } else {
            norms.push(("post_attention_layernorm", "ffn_norm", HIDDEN));
        }
        for (hf, g, n) in norms {
            out.push(e(
                format!("model.layers.{l}.{hf}.weight"),
                format!("blk.{l}.{g}.weight"),
                vec![n],
                GgmlType::F32,
                norm,
            ));
        }
    }
    out.push(e("model.norm.weight".into(), "output_norm.weight".into(), vec![HIDDEN], GgmlType::F32, norm));
    if tiny == (Tiny::Llama { tied: false }) {
        out.push(e(
            "lm_head.weight".into(),
            "output.weight".into(),
            vec![VOCAB, HIDDEN],
            GgmlType::Q8_0,
            Convert::Same,
        ));
    }
    out
}

/// The bytes of `values` stored as `ty`, and the values they dequantise to.
fn encode(ty: GgmlType, values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    match ty {
        GgmlType::F32 => (values.iter().flat_map(|x| x.to_le_bytes()).collect(), values.to_vec()),
        GgmlType::F16 => common::f16_round(values),
        GgmlType::Q8_0 => common::q8_0(values),
        other => panic!("{other:?} is not used here"),
    }
}

/// convert_hf_to_gguf.py's `permute` of the rows of a matrix (here its stored bytes, row by
/// row: a block never spans two rows): `w.reshape(heads, 2, rows / heads / 2, …).swapaxes(1, 2)`.
fn permute_rows(bytes: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    let (row, half) = (bytes.len() / rows, rows / heads / 2);
    let mut out = Vec::with_capacity(bytes.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * 2 * half + j * half + i;
                out.extend_from_slice(&bytes[src * row..(src + 1) * row]);
            }
        }
    }
    out
}

/// A minimal SentencePiece vocabulary of VOCAB tokens: the specials, the 256 byte tokens,
/// `▁` and the lowercase letters, a few merged pieces (their merges recovered from the scores).
fn vocabulary(tiny: Tiny) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let specials: &[(&str, i32)] = match tiny {
        Tiny::Llama { .. } => &[("<unk>", 2), ("<s>", 3), ("</s>", 3)],
        Tiny::Gemma3 => &[("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<mask>", 3)],
    };
    let (mut tokens, mut scores, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for &(t, k) in specials {
        tokens.push(t.to_string());
        scores.push(0.0);
        types.push(k);
    }
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(6);
    }
    for (i, c) in std::iter::once('▁').chain('a'..='z').enumerate() {
        tokens.push(c.to_string());
        scores.push(-100.0 - i as f32);
        types.push(1);
    }
    let pieces = ["▁t", "he", "▁the", "▁a", "in", "er", "on", "re", "an", "▁s", "▁w", "at", "en", "is", "▁f"];
    for (i, p) in pieces.iter().enumerate().take(VOCAB as usize - tokens.len()) {
        tokens.push(p.to_string());
        scores.push(-1.0 - 0.5 * i as f32);
        types.push(1);
    }
    assert_eq!(tokens.len() as i64, VOCAB);
    (tokens, scores, types)
}

/// Writes the Hugging Face folder `hf/` and the GGUF file `tiny.gguf` of `tiny` into a
/// temporary directory.
fn write(tiny: Tiny) -> (tempfile::TempDir, PathBuf, PathBuf) {
    write_edited(tiny, |_| {})
}

/// [`write`], with `edit` applied to every tensor entry first (to write malformed files).
fn write_edited(tiny: Tiny, edit: impl Fn(&mut Entry)) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, file) = (tmp.path().join("hf"), tmp.path().join("tiny.gguf"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), tiny.config_json().to_string()).unwrap();
    let gemma = tiny == Tiny::Gemma3;
    let (heads, kv, hd) = tiny.heads();
    let arch = if gemma { "gemma3" } else { "llama" };
    let mut g = GgufFile::new(arch);
    let key = |k: &str| format!("{arch}.{k}");
    g.meta("general.name", Meta::Str(format!("tiny {arch}")))
        .meta(&key("context_length"), Meta::U32(if gemma { 1024 } else { 128 }))
        .meta(&key("embedding_length"), Meta::U32(HIDDEN as u32))
        .meta(&key("block_count"), Meta::U32(tiny.layers() as u32))
        .meta(&key("feed_forward_length"), Meta::U32(FFN as u32))
        .meta(&key("attention.head_count"), Meta::U32(heads as u32))
        .meta(&key("attention.head_count_kv"), Meta::U32(kv as u32));
    if gemma {
        g.meta(&key("attention.key_length"), Meta::U32(hd as u32))
            .meta(&key("attention.value_length"), Meta::U32(hd as u32))
            .meta(&key("rope.freq_base"), Meta::F32(1_000_000.0))
            .meta(&key("attention.sliding_window"), Meta::U32(8))
            .meta(&key("attention.layer_norm_rms_epsilon"), Meta::F32(1e-6f64 as f32));
    } else {
        g.meta(&key("rope.dimension_count"), Meta::U32(hd as u32))
            .meta(&key("rope.freq_base"), Meta::F32(10_000.0))
            .meta(&key("attention.layer_norm_rms_epsilon"), Meta::F32(1e-5f64 as f32));
    }
    let (tokens, scores, types) = vocabulary(tiny);
    let (bos, eos, unk, pad) = if gemma { (2, 1, 3, 0) } else { (1, 2, 0, 0) };
    g.meta("tokenizer.ggml.model", Meta::Str("llama".into()))
        .meta("tokenizer.ggml.pre", Meta::Str("default".into()))
        .meta("tokenizer.ggml.tokens", Meta::Strs(tokens))
        .meta("tokenizer.ggml.scores", Meta::F32s(scores))
        .meta("tokenizer.ggml.token_type", Meta::I32s(types))
        .meta("tokenizer.ggml.bos_token_id", Meta::U32(bos))
        .meta("tokenizer.ggml.eos_token_id", Meta::U32(eos))
        .meta("tokenizer.ggml.unknown_token_id", Meta::U32(unk))
        .meta("tokenizer.ggml.padding_token_id", Meta::U32(pad))
        .meta("tokenizer.ggml.add_bos_token", Meta::Bool(true))
        .meta("tokenizer.ggml.add_eos_token", Meta::Bool(false));
    let norm_base = if gemma { 0.0 } else { 1.0 };
    let mut hf = Vec::new();
    for mut e in entries(tiny) {
        edit(&mut e);
        let w = common::formula_hf_weight(&e.hf, &e.shape, norm_base);
        let (bytes, stored) = encode(e.ty, &Vec::<f32>::try_from(w.flatten(0, -1)).unwrap());
        let bytes = match e.convert {
            Convert::Same => bytes,
            Convert::Permute(h) => permute_rows(&bytes, e.shape[0] as usize, h),
            Convert::PlusOne => encode(GgmlType::F32, &stored.iter().map(|x| x + 1.0).collect::<Vec<f32>>()).0,
        };
        g.tensor(&e.gguf, &e.shape, e.ty, bytes);
        hf.push((e.hf, Tensor::from_slice(&stored).view(e.shape.as_slice())));
    }
    Tensor::write_safetensors(&hf, dir.join("model.safetensors")).unwrap();
    g.write(&file);
    (tmp, dir, file)
}

/// The decoder's weights by GGUF name.
fn named(d: &Decoder) -> Vec<(String, &Tensor)> {
    let mut out = vec![("token_embd.weight".to_string(), &d.embed), ("output_norm.weight".to_string(), &d.norm.weight)];
    if let Some(h) = &d.lm_head {
        out.push(("output.weight".into(), h));
    }
    for (i, b) in d.blocks.iter().enumerate() {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let a = &b.attn;
        for (s, t) in [
            ("attn_q", &a.q.weight),
            ("attn_k", &a.k.weight),
            ("attn_v", &a.v.weight),
            ("attn_output", &a.o.weight),
            ("ffn_gate", &b.gate.weight),
            ("ffn_up", &b.up.weight),
            ("ffn_down", &b.down.weight),
            ("attn_norm", &b.attn_norm.weight),
            ("ffn_norm", &b.ffn_norm.weight),
        ] {
            out.push((n(s), t));
        }
        for (s, t) in [
            ("attn_q_norm", &a.q_norm),
            ("attn_k_norm", &a.k_norm),
            ("post_attention_norm", &b.post_attn_norm),
            ("post_ffw_norm", &b.post_ffn_norm),
        ] {
            if let Some(norm) = t {
                out.push((n(s), &norm.weight));
            }
        }
        assert!([&a.q, &a.k, &a.v, &a.o].iter().all(|l| l.bias.is_none()));
    }
    out
}

fn sizes(c: &DecoderConfig) -> (Family, i64, i64, i64, i64, i64, i64, i64, i64, Option<i64>) {
    (c.family, c.layers, c.hidden, c.ffn, c.heads, c.kv_heads, c.head_dim, c.vocab, c.context, c.sliding_window)
}

fn batch(rows: &[Vec<i64>]) -> prefix_subspace::model::Batch {
    let items: Vec<(Vec<i64>, Vec<i64>)> = rows.iter().map(|r| (r.clone(), vec![0; r.len()])).collect();
    pad_batch(&items, 0, Device::Cpu)
}

/// A sequence of n ids from a formula (no special tokens).
fn sequence(seed: i64, n: i64) -> Vec<i64> {
    (0..n).map(|j| 5 + (13 * j + 29 * seed + j * j) % (VOCAB - 5)).collect()
}

/// The GGUF decoder against the Hugging Face one on the same weights: configuration, every
/// weight bit for bit, hidden states and logits (single sequences longer than the sliding
/// window, and a padded batch), and a tokenizer our loader builds from the file.
fn gguf_equals_hf(tiny: Tiny) {
    let (_tmp, dir, file) = write(tiny);
    let _g = tch::no_grad_guard();
    let mut g = Gguf::open(&file).unwrap();
    let a = Decoder::from_gguf(&mut g, Device::Cpu).unwrap();
    let b = hf_decoder::load(&dir, Device::Cpu).unwrap();
    let (ca, cb) = (&a.config, &b.config);
    assert_eq!(sizes(ca), sizes(cb), "{tiny:?}");
    assert_eq!((ca.rope_base, ca.eps as f32), (cb.rope_base, cb.eps as f32), "{tiny:?}");
    assert!(ca.permuted_qk == matches!(tiny, Tiny::Llama { .. }) && !cb.permuted_qk);
    if ca.sliding_window.is_some() {
        assert_eq!(ca.rope_local_base, cb.rope_local_base);
        let local: Vec<bool> = (0..ca.layers).map(|i| ca.is_local(i)).collect();
        assert_eq!(local, [true, true, true, true, true, false]);
    }
    assert!((0..ca.layers).all(|i| ca.is_local(i) == cb.is_local(i)), "local layers");
    assert_eq!(a.lm_head.is_some(), tiny == (Tiny::Llama { tied: false }));
    assert_eq!(a.lm_head.is_some(), b.lm_head.is_some());
    let (wa, wb) = (named(&a), named(&b));
    assert_eq!(wa.iter().map(|(n, _)| n).collect::<Vec<_>>(), wb.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for ((n, x), (_, y)) in wa.iter().zip(&wb) {
        assert!(x.equal(y), "{tiny:?}: {n} differs (max |diff| {})", common::max_abs_diff(x, y));
    }
    // The types the file holds (a sanity check of the writer).
    let mut types: Vec<String> = g.tensor_names().iter().map(|n| g.tensor_type(n).unwrap()).collect();
    types.sort();
    types.dedup();
    assert_eq!(types, ["F16", "F32", "Q8_0"]);

    let mut worst = 0.0f64;
    let rows = [sequence(1, 20), sequence(2, 13), sequence(3, 3)];
    for r in &rows {
        let one = batch(std::slice::from_ref(r));
        let (ha, hb) = (a.forward(&one, None, Forward::default()), b.forward(&one, None, Forward::default()));
        let scale = hb.abs().max().double_value(&[]);
        let la = ha.get(0).get(-1).matmul(&a.output_weight().tr());
        let lb = hb.get(0).get(-1).matmul(&b.output_weight().tr());
        let (dh, dl) = (common::max_abs_diff(&ha, &hb), common::max_abs_diff(&la, &lb));
        eprintln!("{tiny:?}, {} tokens: hidden max |diff| {dh:.3e} (scale {scale:.3e}), logits {dl:.3e}", r.len());
        worst = worst.max(dh / scale).max(dl / la.abs().max().double_value(&[]));
        assert!(scale > 0.1 && scale < 100.0, "hidden states of a sane size: {scale}");
    }
    let (ha, hb) =
        (a.forward(&batch(&rows), None, Forward::default()), b.forward(&batch(&rows), None, Forward::default()));
    for (i, r) in rows.iter().enumerate() {
        let t = r.len() as i64;
        let d = common::max_abs_diff(&ha.get(i as i64).narrow(0, 0, t), &hb.get(i as i64).narrow(0, 0, t));
        worst = worst.max(d / hb.abs().max().double_value(&[]));
    }
    assert!(worst <= 1e-6, "{tiny:?}: GGUF and Hugging Face decoders differ by {worst} (relative)");

    // The tokenizer of the file: BOS first, every id an embedding row.
    let t = g.tokenizer().unwrap();
    let (bos, pad) = if tiny == Tiny::Gemma3 { (2, 0) } else { (1, 0) };
    assert_eq!((t.add_bos, t.bos_id, t.pad_id, t.add_eos), (true, Some(bos), Some(pad), false), "{tiny:?}");
    let prompt = Prompt { template: "{s} it was".into(), words: vec![" bad".into(), " good".into()] };
    let tt = TextTokenizer::from_gguf(&g, 64, prompt).unwrap();
    assert!(tt.vocab_size() <= VOCAB, "{tiny:?}: {} token ids", tt.vocab_size());
    let (ids, _) = tt.encode("the quick brown fox jumps over the lazy dog!", None).unwrap();
    assert_eq!(ids[0], i64::from(bos));
    assert!(ids.len() > 10 && ids.iter().all(|&i| (0..VOCAB).contains(&i)), "{ids:?}");
    let h = a.forward(&batch(&[ids]), None, Forward::default());
    assert!(bool::try_from(h.isfinite().all()).unwrap());
}

#[test]
fn tiny_llama_gguf_equals_its_hf_folder() {
    gguf_equals_hf(Tiny::Llama { tied: true });
}

#[test]
fn tiny_llama_gguf_with_an_output_matrix_equals_its_hf_folder() {
    gguf_equals_hf(Tiny::Llama { tied: false });
}

#[test]
fn tiny_gemma3_gguf_equals_its_hf_folder() {
    gguf_equals_hf(Tiny::Gemma3);
}

/// Keys `(L, 2, B, p, kv·D)` with each layer's keys turned by `by` positions (Hugging Face's
/// rotate-half rotary embedding at the layer's base).
fn turn_keys(c: &DecoderConfig, kv: &Tensor, by: f64) -> Tensor {
    let d = c.head_dim;
    let layers: Vec<Tensor> = (0..c.layers)
        .map(|l| {
            let base = if c.is_local(l) { c.rope_local_base } else { c.rope_base };
            let angles: Vec<f64> = (0..d / 2).map(|i| by * base.powf(-2.0 * i as f64 / d as f64)).collect();
            let table = |f: fn(f64) -> f64| {
                let v: Vec<f32> = angles.iter().chain(&angles).map(|&x| f(x) as f32).collect();
                Tensor::from_slice(&v)
            };
            let (cos, sin) = (table(f64::cos), table(f64::sin));
            let k = kv.get(l).get(0);
            let (b, p, _) = k.size3().unwrap();
            let k4 = k.view([b, p, c.kv_heads, d]);
            let rotated = Tensor::cat(&[k4.narrow(3, d / 2, d / 2).neg(), k4.narrow(3, 0, d / 2)], 3);
            let turned = (&k4 * &cos + rotated * &sin).view([b, p, -1]);
            Tensor::stack(&[turned, kv.get(l).get(1)], 0)
        })
        .collect();
    Tensor::stack(&layers, 0)
}

/// The keys and values of a text, used as a prefix, continue the text: with shifted positions
/// as they are; with unshifted positions once its keys are turned back by its length. In
/// sliding-window layers every real token sees the whole prefix, so the text and its
/// continuation are kept within the window (head + tail − 1 < window).
fn prefix_continues_the_text(tiny: Tiny, head: Vec<i64>, tail: Vec<i64>) {
    let (_tmp, _dir, file) = write(tiny);
    let dec = Decoder::load(&file, Device::Cpu).unwrap();
    if let Some(w) = dec.config.sliding_window {
        assert!(((head.len() + tail.len()) as i64) <= w, "within the window");
    }
    let _g = tch::no_grad_guard();
    let (h, t) = (head.len() as i64, tail.len() as i64);
    let whole: Vec<i64> = head.iter().chain(&tail).copied().collect();
    let full = dec.forward(&batch(&[whole]), None, Forward::default()).get(0).narrow(0, h, t);
    let scale = full.abs().max().double_value(&[]);
    let kv = dec.keys_values(&batch(&[head]));
    assert_eq!(kv.size(), [dec.config.layers, 2, 1, h, dec.kv_width()]);
    let tail = batch(&[tail]);
    let run =
        |prefix: &Tensor, positions| dec.forward(&tail, Some(prefix), Forward { dropout: false, positions }).get(0);
    let shifted = common::max_abs_diff(&run(&kv, Positions::Shifted), &full);
    let plain = common::max_abs_diff(&run(&kv, Positions::Unshifted), &full);
    let turned = common::max_abs_diff(&run(&turn_keys(&dec.config, &kv, -(h as f64)), Positions::Unshifted), &full);
    eprintln!("{tiny:?}: continuation max |diff| shifted {shifted:.3e}, unshifted {plain:.3e}, unshifted with keys turned back {turned:.3e} (scale {scale:.3e})");
    assert!(shifted <= 1e-5 * scale, "{tiny:?}: shifted continuation differs by {shifted}");
    assert!(turned <= 1e-5 * scale, "{tiny:?}: unshifted continuation (keys turned back) differs by {turned}");
    assert!(plain > 1e-2 * scale, "{tiny:?}: unshifted positions should change the continuation ({plain})");
}

#[test]
fn tiny_llama_gguf_keys_values_continue_the_text() {
    prefix_continues_the_text(Tiny::Llama { tied: true }, sequence(4, 9), sequence(5, 5));
}

#[test]
fn tiny_gemma3_gguf_keys_values_continue_the_text() {
    prefix_continues_the_text(Tiny::Gemma3, sequence(6, 5), sequence(7, 3));
}

/// A token embedding that is not a matrix is one error naming the file and the tensor, not an
/// index out of bounds.
#[test]
fn a_token_embedding_of_the_wrong_rank_is_an_input_error() {
    let (_tmp, _dir, file) = write_edited(Tiny::Llama { tied: true }, |e| {
        if e.gguf == "token_embd.weight" {
            e.shape = vec![e.shape.iter().product()];
        }
    });
    let g = Gguf::open(&file).unwrap();
    let err = DecoderConfig::from_gguf(&g).unwrap_err();
    assert!(matches!(err, prefix_subspace::error::Error::Input(_)), "{err:?}");
    let (m, shape) = (err.to_string(), format!("token_embd.weight has shape [{}]", VOCAB * HIDDEN));
    assert!(m.contains(&file.display().to_string()) && m.contains(&shape), "{m}");
}
