//! Decoders loaded from Hugging Face folders against transformers on the same folders: tiny
//! checkpoints of each family, final hidden states at every position, LM logits at the last
//! one, a padded batch, the tokenizer's ids; and folders the loader must refuse with an error
//! that names the file and the key or tensor.
//!
//! Each folder is written here into a temporary directory: the committed text files of
//! tests/fixtures/hf_decoders/<name> (config.json, tokenizer files, reference.json) and the
//! weights from the formula of tests/common (`formula_hf_weight`), in the files, dtype and
//! shards reference.json lists. scripts/reference/make_hf_decoder_fixture.py (transformers 5.25,
//! torch 2.13) writes the same weights by the same formula, runs transformers on them and
//! records the sha256 of the stored bytes, which `fixture` checks.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::close;
use prefix_subspace::error::Error;
use prefix_subspace::model::decoder::{Decoder, Family, Weights};
use prefix_subspace::model::hf_decoder::{self, HfWeights};
use prefix_subspace::model::tokenizer::pad_batch;
use prefix_subspace::model::{Forward, TextTokenizer};
use prefix_subspace::prompt::Prompt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

const FAMILIES: [&str; 5] = ["llama", "qwen2", "mistral", "gemma3_text", "gemma3"];

/// A tiny folder written into a temporary directory (removed on drop).
struct Folder(tempfile::TempDir);

impl Folder {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl std::ops::Deref for Folder {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

/// The tiny folder `name`, written afresh (a copy to break, too): the committed text files,
/// then the weights from the formula in the layout reference.json lists (several files: with
/// model.safetensors.index.json), checked against the reference script's sha256.
fn fixture(name: &str) -> Folder {
    let tmp = tempfile::tempdir().unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_decoders").join(name);
    for e in std::fs::read_dir(&committed).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let v = reference(tmp.path());
    let kind = match v["safetensors_dtype"].as_str().unwrap() {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        other => panic!("{name}: dtype {other}"),
    };
    let norm_base = v["norm_base"].as_f64().unwrap();
    let files = v["files"].as_array().unwrap();
    let (mut stored, mut weight_map, mut total) = (BTreeMap::new(), serde_json::Map::new(), 0);
    for f in files {
        let file = f["file"].as_str().unwrap();
        let tensors: Vec<(String, Tensor)> = f["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let n = t[0].as_str().unwrap().to_string();
                let w = common::formula_hf_weight(&n, &ints(&t[1]), norm_base).to_kind(kind);
                (n, w)
            })
            .collect();
        for (n, t) in &tensors {
            let bytes = common::tensor_bytes(t);
            total += bytes.len();
            weight_map.insert(n.clone(), file.into());
            stored.insert(n.clone(), bytes);
        }
        Tensor::write_safetensors(&tensors, tmp.path().join(file)).unwrap();
    }
    if files.len() > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(tmp.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    let mut sha = Sha256::new();
    stored.values().for_each(|b| sha.update(b));
    let sha: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, v["weights_sha256"].as_str().unwrap(), "{name}: the weights differ from the reference script's");
    Folder(tmp)
}

fn reference(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    fn flat(v: &Value, out: &mut Vec<f64>) {
        match v.as_array() {
            Some(a) => a.iter().for_each(|x| flat(x, out)),
            None => out.push(v.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

/// A fresh folder to break.
fn copy(name: &str) -> Folder {
    fixture(name)
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let p = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn edit_weights(dir: &Path, f: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let p = dir.join("model.safetensors");
    let mut t = Tensor::read_safetensors(&p).unwrap();
    f(&mut t);
    Tensor::write_safetensors(&t, &p).unwrap();
}

/// The message of an `Error::Input`, after checking that it names every one of `needles`.
fn input_error<T: std::fmt::Debug>(r: prefix_subspace::error::Result<T>, needles: &[&str]) -> String {
    match r {
        Err(Error::Input(m)) => {
            for n in needles {
                assert!(m.contains(n), "error {m:?} does not name {n:?}");
            }
            eprintln!("refused: {m}");
            m
        }
        other => panic!("expected Error::Input naming {needles:?}, got {other:?}"),
    }
}

fn check_family(name: &str) {
    let dir = fixture(name);
    let v = reference(&dir);
    let dec = hf_decoder::load(&dir, Device::Cpu).unwrap();
    let _g = tch::no_grad_guard();
    let probe = Tensor::from_slice(&ints(&v["probe_ids"]));
    let rows = dec.output_weight().index_select(0, &probe);
    let cases = v["cases"].as_array().unwrap();
    let mut items = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let ids = ints(&c["ids"]);
        let batch = pad_batch(&[(ids.clone(), vec![0; ids.len()])], 0, Device::Cpu);
        let h = dec.forward(&batch, None, Forward::default()).get(0);
        close(&format!("{name} case {i} hidden"), &h, &floats(&c["hidden"]), 1e-5, 1e-6);
        close(&format!("{name} case {i} logits_last"), &rows.mv(&h.get(-1)), &floats(&c["logits_last"]), 1e-5, 1e-6);
        items.push((ids.clone(), vec![0; ids.len()]));
    }
    // Right-padded together: each row's real positions are its single run.
    let batch = pad_batch(&items, 0, Device::Cpu);
    let h = dec.forward(&batch, None, Forward::default());
    for (i, c) in cases.iter().enumerate() {
        let t = items[i].0.len() as i64;
        close(&format!("{name} padded row {i}"), &h.get(i as i64).narrow(0, 0, t), &floats(&c["hidden"]), 1e-5, 1e-6);
    }
}

#[test]
fn llama_matches_transformers() {
    check_family("llama");
}

#[test]
fn qwen2_matches_transformers() {
    check_family("qwen2");
}

#[test]
fn mistral_matches_transformers() {
    check_family("mistral");
}

#[test]
fn gemma3_text_matches_transformers() {
    check_family("gemma3_text");
}

#[test]
fn gemma3_multimodal_text_model_matches_transformers() {
    check_family("gemma3");
}

/// The configuration agrees with what transformers derives from config.json.
#[test]
fn configs_as_transformers_reads_them() {
    for name in FAMILIES {
        assert!(hf_decoder::is_hf_decoder(&fixture(name)), "{name}");
    }
    assert!(!hf_decoder::is_hf_decoder(Path::new(env!("CARGO_MANIFEST_DIR"))));
    let c = hf_decoder::config(&fixture("llama")).unwrap();
    assert_eq!((c.family, c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim), (Family::Llama, 2, 32, 4, 2, 8));
    assert_eq!((c.vocab, c.context, c.eps, c.rope_base, c.sliding_window), (300, 128, 1e-5, 10_000.0, None));
    assert!(!c.permuted_qk);
    let c = hf_decoder::config(&fixture("qwen2")).unwrap();
    assert_eq!((c.kv_heads, c.head_dim, c.rope_base, c.sliding_window, c.ffn), (1, 8, 1000.0, None, 48));
    // Mistral's window is on every layer.
    let c = hf_decoder::config(&fixture("mistral")).unwrap();
    assert_eq!((c.sliding_window, c.head_dim, c.rope_base, c.rope_local_base), (Some(4), 16, 500.0, 500.0));
    assert!((0..c.layers).all(|i| c.is_local(i)));
    // Gemma 3: layer_types [sliding, full, sliding]; each kind its rotary base.
    for name in ["gemma3_text", "gemma3"] {
        let c = hf_decoder::config(&fixture(name)).unwrap();
        assert_eq!(c.family, Family::Gemma3);
        assert_eq!((c.sliding_window, c.rope_base, c.rope_local_base), (Some(4), 10_000.0, 100.0));
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap()).unwrap();
        let text = if name == "gemma3" { &cfg["text_config"] } else { &cfg };
        let types: Vec<bool> =
            text["layer_types"].as_array().unwrap().iter().map(|t| t == "sliding_attention").collect();
        assert_eq!(types.len() as i64, c.layers);
        assert!(types.contains(&true) && types.contains(&false));
        for (i, &local) in types.iter().enumerate() {
            assert_eq!(c.is_local(i as i64), local, "{name} layer {i}");
        }
    }
}

/// The older Gemma 3 keys (rope_theta, rope_local_base_freq, sliding_window_pattern) give the
/// same configuration as transformers 5's rope_parameters and layer_types.
#[test]
fn gemma3_legacy_keys() {
    let tmp = copy("gemma3_text");
    edit_config(tmp.path(), |c| {
        c.remove("rope_parameters");
        c.remove("layer_types");
        c.insert("rope_theta".into(), 10_000.0.into());
        c.insert("rope_local_base_freq".into(), 100.0.into());
        c.insert("sliding_window_pattern".into(), 2.into());
    });
    let c = hf_decoder::config(tmp.path()).unwrap();
    assert_eq!((c.rope_base, c.rope_local_base, c.sliding_window, c.global_every), (10_000.0, 100.0, Some(4), 2));
    // Without any: transformers' defaults (1e6 and 1e4, every 6th layer global).
    edit_config(tmp.path(), |c| {
        for k in ["rope_theta", "rope_local_base_freq", "sliding_window_pattern"] {
            c.remove(k);
        }
    });
    let c = hf_decoder::config(tmp.path()).unwrap();
    assert_eq!((c.rope_base, c.rope_local_base, c.sliding_window), (1_000_000.0, 10_000.0, Some(4)));
    assert!((0..3).all(|i| c.is_local(i)), "three layers: all before the 6th, all sliding");
}

/// The multimodal checkpoint also loads under transformers 4.5x's names (model.language_model.*).
#[test]
fn gemma3_other_naming() {
    let tmp = copy("gemma3");
    edit_weights(tmp.path(), |ts| {
        for (n, _) in ts.iter_mut() {
            if let Some(rest) = n.strip_prefix("language_model.model.") {
                *n = format!("model.language_model.{rest}");
            } else if !n.starts_with("vision_tower.") && !n.starts_with("multi_modal_projector.") {
                panic!("unexpected tensor {n}");
            }
        }
    });
    let w = HfWeights::open(tmp.path()).unwrap();
    assert_eq!(
        w.hf_name("blk.1.ffn_norm.weight"),
        Some("model.language_model.layers.1.pre_feedforward_layernorm.weight")
    );
    let a = hf_decoder::load(tmp.path(), Device::Cpu).unwrap();
    let b = hf_decoder::load(&fixture("gemma3"), Device::Cpu).unwrap();
    assert!(a.embed.equal(&b.embed) && a.blocks[1].attn.q.weight.equal(&b.blocks[1].attn.q.weight));
}

/// Gemma's norms come as 1 + w; Qwen2's biases, the untied head.
#[test]
fn weights_layout() {
    let gemma = fixture("gemma3_text");
    let mut w = HfWeights::open(&gemma).unwrap();
    let stored = Tensor::read_safetensors(gemma.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "model.layers.0.self_attn.q_norm.weight")
        .unwrap()
        .1;
    assert!(w.tensor("blk.0.attn_q_norm.weight").unwrap().equal(&(stored + 1.0)));
    assert!(!w.has("output.weight") && !w.has("blk.0.attn_q.bias"));
    let qwen = fixture("qwen2");
    let w = HfWeights::open(&qwen).unwrap();
    assert!(w.has("output.weight") && w.has("blk.1.attn_v.bias") && !w.has("blk.1.attn_output.bias"));
    let d = hf_decoder::load(&qwen, Device::Cpu).unwrap();
    assert!(d.lm_head.is_some() && d.blocks[0].attn.k.bias.is_some() && d.blocks[0].attn.o.bias.is_none());
    assert!(hf_decoder::load(&fixture("llama"), Device::Cpu).unwrap().lm_head.is_none());
}

/// tie_word_embeddings with lm_head.weight stored too: tied when the same numbers (transformers
/// ties them), two matrices otherwise (transformers does not tie them then).
#[test]
fn tied_head_stored_twice() {
    let tmp = copy("llama");
    let embed =
        |ts: &Vec<(String, Tensor)>| ts.iter().find(|(n, _)| n == "model.embed_tokens.weight").unwrap().1.copy();
    edit_weights(tmp.path(), |ts| {
        let e = embed(ts);
        ts.push(("lm_head.weight".into(), e));
    });
    assert!(hf_decoder::load(tmp.path(), Device::Cpu).unwrap().lm_head.is_none());
    edit_weights(tmp.path(), |ts| {
        let e = embed(ts) * 2.0;
        ts.retain(|(n, _)| n != "lm_head.weight");
        ts.push(("lm_head.weight".into(), e));
    });
    let d = hf_decoder::load(tmp.path(), Device::Cpu).unwrap();
    assert!(d.lm_head.unwrap().equal(&(d.embed * 2.0)));
}

#[test]
fn tokenizer_ids_match_transformers() {
    for name in ["llama", "qwen2"] {
        let dir = fixture(name);
        let v = reference(&dir);
        let t = hf_decoder::tokenizer(&dir).unwrap();
        let as_u32 = |x: &Value| x.as_u64().map(|i| i as u32);
        assert_eq!(t.bos_id, as_u32(&v["bos_id"]), "{name} bos");
        assert_eq!(t.eos_id, as_u32(&v["eos_id"]), "{name} eos");
        assert_eq!(t.pad_id, as_u32(&v["pad_id"]), "{name} pad");
        let cases = v["tokens"].as_array().unwrap();
        // transformers adds BOS when tokenizing the empty text iff it adds it to every text.
        let empty = cases.iter().find(|c| c["text"] == "").unwrap();
        assert_eq!(t.add_bos, !ints(&empty["ids"]).is_empty(), "{name} add_bos");
        assert!(!t.add_eos);
        for c in cases {
            let text = c["text"].as_str().unwrap();
            let with: Vec<i64> = t.tokenizer.encode(text, true).unwrap().get_ids().iter().map(|&i| i as i64).collect();
            let plain: Vec<i64> =
                t.tokenizer.encode(text, false).unwrap().get_ids().iter().map(|&i| i as i64).collect();
            assert_eq!(with, ints(&c["ids"]), "{name}: {text:?}");
            assert_eq!(plain, ints(&c["ids_plain"]), "{name}: {text:?} without special tokens");
        }
        // The prompt tokenizer: BOS (when added) then the ids of the filled template.
        let prompt = Prompt { template: "{s} It was".into(), words: vec![" bad".into(), " good".into()] };
        let tt = TextTokenizer::from_hf_decoder(&dir, 64, prompt).unwrap();
        let (ids, _) = tt.encode("The quick brown fox", None).unwrap();
        let want = t.tokenizer.encode("The quick brown fox It was", true).unwrap();
        assert_eq!(ids, want.get_ids().iter().map(|&i| i as i64).collect::<Vec<_>>(), "{name} prompt");
        assert_eq!(tt.pad_id(), i64::from(t.pad_id.unwrap()));
        assert_eq!(tt.bos(), t.add_bos.then(|| i64::from(t.bos_id.unwrap())));
    }
    // tokenizer_config.json's add_bos_token / add_eos_token rebuild the post-processor.
    let tmp = copy("qwen2");
    let p = tmp.path().join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["bos_token"] = "<s>".into();
    cfg["eos_token"] = "</s>".into();
    cfg["add_bos_token"] = true.into();
    cfg["add_eos_token"] = true.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let t = hf_decoder::tokenizer(tmp.path()).unwrap();
    assert_eq!((t.add_bos, t.bos_id, t.add_eos, t.eos_id), (true, Some(1), true, Some(2)));
    assert_eq!(t.tokenizer.encode("", true).unwrap().get_ids(), &[1, 2]);
}

// ------------------------------------------------------------------------------------------
// Refused folders: an Error::Input naming the file and the key or tensor, never a panic.

/// An edit of config.json.
type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;

#[test]
fn refuses_bad_configs() {
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        ("llama", Box::new(|c| drop(c.remove("hidden_size"))), vec!["config.json", "\"hidden_size\"", "missing"]),
        ("qwen2", Box::new(|c| drop(c.remove("vocab_size"))), vec!["config.json", "\"vocab_size\""]),
        ("gemma3", Box::new(|c| drop(c.remove("text_config"))), vec!["config.json", "\"text_config\""]),
        ("llama", Box::new(|c| drop(c.remove("model_type"))), vec!["config.json", "\"model_type\""]),
        ("llama", Box::new(|c| drop(c.insert("model_type".into(), "gpt2".into()))), vec!["config.json", "gpt2"]),
        ("llama", Box::new(|c| drop(c.insert("hidden_size".into(), "32".into()))), vec!["\"hidden_size\"", "integer"]),
        ("llama", Box::new(|c| drop(c.insert("num_hidden_layers".into(), 0.into()))), vec!["\"num_hidden_layers\""]),
        (
            "llama",
            Box::new(|c| drop(c.insert("num_key_value_heads".into(), 3.into()))),
            vec!["\"num_key_value_heads\""],
        ),
        (
            "llama",
            Box::new(|c| {
                let r = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
                c.insert("rope_scaling".into(), r);
            }),
            vec!["config.json", "\"rope_scaling\"", "llama3"],
        ),
        (
            "qwen2",
            Box::new(|c| {
                drop(c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "yarn", "factor": 4.0})))
            }),
            vec!["\"rope_parameters\"", "yarn"],
        ),
        (
            "gemma3_text",
            Box::new(|c| {
                drop(c.insert("rope_scaling".into(), serde_json::json!({"rope_type": "linear", "factor": 8.0})))
            }),
            vec!["\"rope_scaling\"", "linear"],
        ),
        (
            "gemma3",
            Box::new(|c| {
                c["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = "dynamic".into();
            }),
            vec!["\"text_config.rope_parameters.full_attention\"", "dynamic"],
        ),
        ("llama", Box::new(|c| drop(c.insert("attention_bias".into(), true.into()))), vec!["\"attention_bias\""]),
        ("llama", Box::new(|c| drop(c.insert("mlp_bias".into(), true.into()))), vec!["\"mlp_bias\""]),
        ("llama", Box::new(|c| drop(c.insert("hidden_act".into(), "gelu".into()))), vec!["\"hidden_act\""]),
        (
            "llama",
            Box::new(|c| drop(c.insert("quantization_config".into(), serde_json::json!({"quant_method": "gptq"})))),
            vec!["\"quantization_config\""],
        ),
        (
            "gemma3_text",
            Box::new(|c| drop(c.insert("query_pre_attn_scalar".into(), 32.into()))),
            vec!["\"query_pre_attn_scalar\""],
        ),
        (
            "gemma3_text",
            Box::new(|c| drop(c.insert("final_logit_softcapping".into(), 30.0.into()))),
            vec!["\"final_logit_softcapping\""],
        ),
        (
            "gemma3_text",
            Box::new(|c| drop(c.insert("use_bidirectional_attention".into(), true.into()))),
            vec!["\"use_bidirectional_attention\""],
        ),
        (
            "gemma3_text",
            Box::new(|c| {
                let t = serde_json::json!(["full_attention", "sliding_attention", "sliding_attention"]);
                c.insert("layer_types".into(), t);
            }),
            vec!["\"layer_types\"", "pattern"],
        ),
        (
            "gemma3_text",
            Box::new(|c| {
                drop(c.insert(
                    "layer_types".into(),
                    serde_json::json!(["chunked_attention", "chunked_attention", "chunked_attention"]),
                ))
            }),
            vec!["\"layer_types\"", "chunked_attention"],
        ),
        (
            "qwen2",
            Box::new(|c| {
                // Qwen2's sliding window from max_window_layers on: full then sliding layers.
                c.remove("layer_types");
                c.insert("use_sliding_window".into(), true.into());
                c.insert("sliding_window".into(), 8.into());
                c.insert("max_window_layers".into(), 1.into());
            }),
            vec!["\"layer_types\""],
        ),
        ("mistral", Box::new(|c| drop(c.insert("sliding_window".into(), 0.into()))), vec!["\"sliding_window\""]),
    ];
    for (name, f, needles) in cases {
        let tmp = copy(name);
        edit_config(tmp.path(), f);
        let m = input_error(hf_decoder::config(tmp.path()), &needles);
        input_error(hf_decoder::load(tmp.path(), Device::Cpu), &needles);
        assert!(m.contains(&tmp.path().join("config.json").display().to_string()), "{m}");
    }
    // Not JSON; no config.json at all.
    let tmp = copy("llama");
    std::fs::write(tmp.path().join("config.json"), "{ not json").unwrap();
    input_error(hf_decoder::config(tmp.path()), &["config.json", "JSON"]);
    assert!(!hf_decoder::is_hf_decoder(tmp.path()));
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    assert!(matches!(hf_decoder::config(tmp.path()), Err(Error::Io { .. })));
}

#[test]
fn refuses_bad_weights() {
    let q = "model.layers.1.self_attn.q_proj.weight";
    // A weight of the wrong shape.
    let tmp = copy("llama");
    edit_weights(tmp.path(), |ts| {
        for (n, t) in ts.iter_mut() {
            if n == q {
                *t = t.narrow(0, 0, 16);
            }
        }
    });
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors", q, "[16, 32]", "[32, 32]"]);
    // A missing tensor.
    let tmp = copy("llama");
    edit_weights(tmp.path(), |ts| ts.retain(|(n, _)| n != "model.layers.0.post_attention_layernorm.weight"));
    input_error(
        hf_decoder::load(tmp.path(), Device::Cpu),
        &["model.safetensors", "missing", "model.layers.0.post_attention_layernorm.weight"],
    );
    // Untied in config.json, but no lm_head in the file.
    let tmp = copy("llama");
    edit_config(tmp.path(), |c| drop(c.insert("tie_word_embeddings".into(), false.into())));
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["missing", "\"lm_head.weight\""]);
    // Attention biases in a family without them (transformers would drop them).
    let tmp = copy("llama");
    edit_weights(tmp.path(), |ts| {
        ts.push(("model.layers.0.self_attn.o_proj.bias".into(), Tensor::zeros([32], (Kind::Float, Device::Cpu))))
    });
    input_error(
        HfWeights::open(tmp.path()),
        &["model.safetensors", "model.layers.0.self_attn.o_proj.bias", "not part"],
    );
    // An integer "weight".
    let tmp = copy("llama");
    edit_weights(tmp.path(), |ts| {
        for (n, t) in ts.iter_mut() {
            if n == q {
                *t = t.to_kind(Kind::Int);
            }
        }
    });
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &[q, "I32"]);
    // A truncated file; garbage.
    let tmp = copy("llama");
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors", "not a valid safetensors"]);
    std::fs::write(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors", "not a valid safetensors"]);
    std::fs::write(&p, b"abc").unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors", "not a valid safetensors"]);
    // No weights; PyTorch weights only.
    std::fs::remove_file(&p).unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors"]);
    std::fs::write(tmp.path().join("pytorch_model.bin"), b"").unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["pytorch_model.bin", "safetensors"]);
    // A shard missing; an index that lists a tensor its shard does not hold.
    let tmp = copy("qwen2");
    std::fs::remove_file(tmp.path().join("model-00003-of-00004.safetensors")).unwrap();
    input_error(
        hf_decoder::load(tmp.path(), Device::Cpu),
        &["model.safetensors.index.json", "model-00003-of-00004.safetensors"],
    );
    let tmp = copy("qwen2");
    let p = tmp.path().join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00004.safetensors".into();
    std::fs::write(&p, index.to_string()).unwrap();
    input_error(hf_decoder::load(tmp.path(), Device::Cpu), &["model.safetensors.index.json", "model.norm.weight"]);
}

#[test]
fn refuses_bad_tokenizers() {
    let tmp = copy("mistral");
    input_error(hf_decoder::tokenizer(tmp.path()), &["tokenizer.json"]);
    let tmp = copy("llama");
    std::fs::write(tmp.path().join("tokenizer.json"), "{}").unwrap();
    input_error(hf_decoder::tokenizer(tmp.path()), &["tokenizer.json"]);
    let tmp = copy("llama");
    std::fs::write(tmp.path().join("tokenizer_config.json"), "[1]").unwrap();
    input_error(hf_decoder::tokenizer(tmp.path()), &["tokenizer_config.json"]);
}

/// A decoder from the folder is the same whichever way its weights are handed over.
#[test]
fn from_weights_equals_load() {
    let dir = fixture("qwen2");
    let mut w = HfWeights::open(&dir).unwrap();
    let d = Decoder::from_weights(w.config().clone(), &mut w, Device::Cpu).unwrap();
    let e = hf_decoder::load(&dir, Device::Cpu).unwrap();
    assert!(d.blocks[1].down.weight.equal(&e.blocks[1].down.weight));
    assert_eq!(w.path().extension().and_then(|e| e.to_str()), Some("safetensors"));
}

/// Optional check on a real model: `HF_DECODER_CHECK=<folder>:<file.gguf>`, the folder being
/// the GGUF file converted by transformers (`from_pretrained(dir, gguf_file=...)`, then
/// `save_pretrained`, model and tokenizer). The two loaders must give the same final hidden
/// states, and the two tokenizers the same ids (and transformers' own ids, when the folder has
/// them in hf_ids.json: `[{"text", "ids"}]`). Skipped without the variable.
#[test]
fn real_folder_matches_its_gguf() {
    let Some(spec) = std::env::var_os("HF_DECODER_CHECK") else {
        eprintln!("skipped: set HF_DECODER_CHECK=<folder>:<file.gguf> to compare a converted model with its GGUF");
        return;
    };
    let spec = spec.to_string_lossy().to_string();
    let (dir, gguf) = spec.split_once(':').expect("HF_DECODER_CHECK=<folder>:<file.gguf>");
    let (dir, gguf) = (Path::new(dir), Path::new(gguf));
    let _g = tch::no_grad_guard();
    let mut g = prefix_subspace::model::gguf::Gguf::open(gguf).unwrap();
    let gt = g.tokenizer().unwrap();
    let ht = hf_decoder::tokenizer(dir).unwrap();
    eprintln!("gguf tokenizer {gt:?}\nhf tokenizer   {ht:?}");
    let mut texts: Vec<String> = [
        "Review: a gripping, beautifully shot film.\nSentiment (positive or negative):",
        "it 's a charming and often affecting journey . It was",
        "The quick brown fox jumps over the lazy dog, while naïve cafés serve crème brûlée to 1,234 customers.",
        "Hi",
        "  two leading spaces\tand a tab\n\nnew lines",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let recorded: Vec<(String, Vec<i64>)> = std::fs::read_to_string(dir.join("hf_ids.json"))
        .ok()
        .map(|s| {
            let v: Value = serde_json::from_str(&s).unwrap();
            v.as_array().unwrap().iter().map(|c| (c["text"].as_str().unwrap().to_string(), ints(&c["ids"]))).collect()
        })
        .unwrap_or_default();
    texts.extend(recorded.iter().map(|(t, _)| t.clone()));
    let enc = |t: &tokenizers::Tokenizer, s: &str, special: bool| -> Vec<i64> {
        t.encode(s, special).unwrap().get_ids().iter().map(|&i| i as i64).collect()
    };
    for s in &texts {
        for special in [true, false] {
            assert_eq!(
                enc(&gt.tokenizer, s, special),
                enc(&ht.tokenizer, s, special),
                "{s:?} (special tokens: {special})"
            );
        }
    }
    for (s, ids) in &recorded {
        assert_eq!(&enc(&ht.tokenizer, s, true), ids, "transformers' ids of {s:?}");
    }
    assert_eq!((gt.add_bos, gt.bos_id, gt.add_eos), (ht.add_bos, ht.bos_id, ht.add_eos));
    eprintln!("tokenizers agree on {} texts ({} with transformers' recorded ids)", texts.len(), recorded.len());

    let a = Decoder::from_gguf(&mut g, Device::Cpu).unwrap();
    let b = hf_decoder::load(dir, Device::Cpu).unwrap();
    let (ca, cb) = (&a.config, &b.config);
    let sizes = |c: &prefix_subspace::model::decoder::DecoderConfig| {
        (c.family, c.layers, c.hidden, c.ffn, c.heads, c.kv_heads, c.head_dim, c.vocab, c.context, c.sliding_window)
    };
    assert_eq!(sizes(ca), sizes(cb));
    assert_eq!((ca.rope_base, ca.eps as f32), (cb.rope_base, cb.eps as f32));
    if ca.sliding_window.is_some() {
        assert_eq!(ca.rope_local_base, cb.rope_local_base);
    }
    assert!((0..ca.layers).all(|i| ca.is_local(i) == cb.is_local(i)), "local layers");
    assert_eq!(a.lm_head.is_some(), b.lm_head.is_some(), "tied output");
    eprintln!("configs agree: {cb:?}");
    let mut worst = 0.0f64;
    for s in texts.iter().take(5) {
        let ids = enc(&ht.tokenizer, s, true);
        let batch = pad_batch(&[(ids.clone(), vec![0; ids.len()])], 0, Device::Cpu);
        let ha = a.forward(&batch, None, Forward::default());
        let hb = b.forward(&batch, None, Forward::default());
        let diff = (&ha - &hb).abs().max().double_value(&[]);
        let scale = ha.abs().max().double_value(&[]);
        let la = ha.get(0).get(-1).matmul(&a.output_weight().tr());
        let lb = hb.get(0).get(-1).matmul(&b.output_weight().tr());
        let ldiff = (&la - &lb).abs().max().double_value(&[]);
        let lscale = la.abs().max().double_value(&[]);
        eprintln!(
            "{} tokens: hidden max |diff| {diff:.3e} (scale {scale:.3e}, rel {:.3e}); logits max |diff| {ldiff:.3e} (scale {lscale:.3e})",
            ids.len(),
            diff / scale
        );
        worst = worst.max(diff / scale);
    }
    assert!(worst < 1e-5, "hidden states differ by {worst} relative");
}
