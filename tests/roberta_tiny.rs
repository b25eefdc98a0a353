//! RoBERTa loading (with a `roberta.` name prefix) and the byte-level BPE tokenizer, on a
//! tiny checkpoint written here (pseudo-random weights from a formula); the outputs are
//! compared with Hugging Face values (scripts/reference/make_tiny_roberta_fixture.py: same
//! vocabulary, merges and weight formula as below).

mod common;

use prefix_subspace::model::{Arch, Encoder, Forward, TextTokenizer};
use tch::{Device, Kind, Tensor};

const SPECIAL: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];
const EXTRA: [&str; 15] =
    ["th", "Ġth", "Ġthe", "at", "Ġcat", "er", "re", "Ġthere", "he", "ll", "llo", "hello", "Ġhello", ".", "Ġ."];
const MERGES: [&str; 14] =
    ["t h", "Ġ th", "Ġth e", "a t", "Ġ c", "Ġc at", "e r", "r e", "Ġthe re", "h e", "l l", "ll o", "he llo", "Ġ hello"];

fn write_checkpoint(dir: &std::path::Path) {
    let mut tokens: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
    tokens.push("Ġ".into());
    tokens.extend(('a'..='z').map(|c| c.to_string()));
    tokens.extend(('a'..='z').map(|c| format!("Ġ{c}")));
    tokens.extend(EXTRA.iter().map(|s| s.to_string()));
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::json!(i))).collect();
    std::fs::write(dir.join("vocab.json"), serde_json::to_string(&vocab).unwrap()).unwrap();
    std::fs::write(dir.join("merges.txt"), format!("#version: 0.2\n{}\n", MERGES.join("\n"))).unwrap();
    let config = serde_json::json!({
        "model_type": "roberta", "vocab_size": tokens.len(), "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 40,
        "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-5, "hidden_act": "gelu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<i64>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![tokens.len() as i64, 32]),
        ("embeddings.position_embeddings.weight".into(), vec![40, 32]),
        ("embeddings.token_type_embeddings.weight".into(), vec![1, 32]),
        ("embeddings.LayerNorm.weight".into(), vec![32]),
        ("embeddings.LayerNorm.bias".into(), vec![32]),
    ];
    for l in 0..2 {
        for (n, o, i) in [
            ("attention.self.query", 32, 32),
            ("attention.self.key", 32, 32),
            ("attention.self.value", 32, 32),
            ("attention.output.dense", 32, 32),
            ("intermediate.dense", 64, 32),
            ("output.dense", 32, 64),
        ] {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![o, i]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![o]));
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![32]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![32]));
        }
    }
    shapes.sort();
    let weights: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let numel: i64 = shape.iter().product();
            let v: Vec<f32> = (0..numel)
                .map(|j| {
                    let s = (0.37 * j as f64 + 1.3 * k as f64 + 0.1).sin();
                    (if name.ends_with("LayerNorm.weight") { 1.0 + 0.1 * s } else { 0.5 * s }) as f32
                })
                .collect();
            (format!("roberta.{name}"), Tensor::from_slice(&v).view(shape.as_slice()))
        })
        .collect();
    Tensor::write_safetensors(&weights, dir.join("model.safetensors")).unwrap();
}

/// HF's reference: token ids, mask and final hidden states.
fn reference() -> (Tensor, Tensor, Tensor) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_roberta_reference.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ints = |k: &str| -> Tensor {
        let rows: Vec<Vec<i64>> = serde_json::from_value(v[k].clone()).unwrap();
        Tensor::from_slice2(&rows)
    };
    let shape: Vec<i64> = serde_json::from_value(v["shape"].clone()).unwrap();
    let h: Vec<f32> = serde_json::from_value(v["last_hidden_state"].clone()).unwrap();
    (ints("input_ids"), ints("attention_mask"), Tensor::from_slice(&h).view(shape.as_slice()))
}

#[test]
fn tiny_roberta_and_bpe_tokenizer_match_hugging_face() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path());
    let (ref_ids, ref_mask, ref_hidden) = reference();
    let tok = TextTokenizer::from_dir(tmp.path(), 64).unwrap();
    assert_eq!(tok.pad_id(), 1);
    let batch = tok.batch(&[("the cat", None), ("hello there.", Some("the cat")), ("cat", None)], Device::Cpu).unwrap();
    assert_eq!(batch.input_ids, ref_ids, "BPE ids differ from HF RobertaTokenizer");
    assert_eq!(batch.attention_mask, ref_mask);

    let enc = Encoder::load(tmp.path(), Device::Cpu).unwrap();
    assert_eq!(enc.arch, Arch::Roberta);
    let h = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
    let m = batch.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    let diff = common::max_abs_diff(&(&h * &m), &(&ref_hidden * &m));
    assert!(diff < 1e-4, "RoBERTa hidden states differ from HF by {diff}");
}

#[test]
fn roberta_positions_skip_padding() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path());
    let tok = TextTokenizer::from_dir(tmp.path(), 64).unwrap();
    let enc = Encoder::load(tmp.path(), Device::Cpu).unwrap();
    let alone = tok.batch(&[("cat", None)], Device::Cpu).unwrap();
    let padded = tok.batch(&[("cat", None), ("hello there. the cat", None)], Device::Cpu).unwrap();
    let a = tch::no_grad(|| enc.forward(&alone, None, Forward::default()));
    let b = tch::no_grad(|| enc.forward(&padded, None, Forward::default()));
    let t = a.size()[1];
    assert!(common::max_abs_diff(&a, &b.narrow(0, 0, 1).narrow(1, 0, t)) < 1e-5);
}

#[test]
fn a_shape_that_disagrees_with_the_config_names_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let cfg =
        std::fs::read_to_string(&cfg_path).unwrap().replace("\"intermediate_size\":64", "\"intermediate_size\":65");
    std::fs::write(&cfg_path, cfg).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("encoder.layer.0.intermediate.dense.weight") && err.contains("[64, 32]"), "{err}");
}

#[test]
fn unsupported_architecture_and_missing_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("no config.json"), "{err}");
    write_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace("\"roberta\"", "\"gpt2\"");
    std::fs::write(&cfg_path, cfg).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unsupported architecture") && err.contains("gpt2"), "{err}");
    // Another model's config.json lacks the encoder's keys: its model_type is what is named.
    std::fs::write(&cfg_path, r#"{"model_type": "phi3", "hidden_size": 3072}"#).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unsupported architecture model_type \"phi3\"") && err.contains("llama"), "{err}");
    // Truncated weights.
    write_checkpoint(tmp.path());
    let st = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("truncated or corrupted"), "{err}");
}
