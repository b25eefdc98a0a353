//! The GGUF decoders against Hugging Face transformers on the same files: final hidden states
//! and LM logits at the last position, without and with a prefix in the cache, and a padded
//! batch against the same inputs one by one. The fixtures come from
//! scripts/reference/make_decoder_fixture.py (transformers 5.25, torch 2.13); the prefix is
//! built here from the formula the script uses (tests/common, scripts/reference/formula.py).

mod common;

use std::path::PathBuf;

use common::close;

use prefix_subspace::model::decoder::Decoder;
use prefix_subspace::model::tokenizer::pad_batch;
use prefix_subspace::model::{Forward, Pooling, Positions};
use tch::{Device, Kind, Tensor};

struct Case {
    ids: Vec<i64>,
    hidden_last: Vec<f64>,
    hidden_mean: Vec<f64>,
    logits_last: Vec<f64>,
}

fn model_path(sub: &str, file: &str) -> Option<PathBuf> {
    let p = prefix_subspace::paths::home().join("models").join(sub).join(file);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipped: {} is not installed (scripts/setup.sh installs it)", p.display());
        None
    }
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// The prefix of the reference run `(L, 2, 1, p, kv·D)`: keys uniform with standard deviation
/// 2, values 0.5 (make_decoder_fixture.py: `values("<name>.prefix.keys", …, 2·√3)`, …).
fn formula_prefix(name: &str, layers: i64, p: i64, width: i64) -> Tensor {
    let n = (layers * p * width) as usize;
    let sqrt3 = 3.0f64.sqrt();
    let part = |what: &str, scale: f64| {
        let v = common::formula_values(&format!("{name}.prefix.{what}"), n, scale, 0.0);
        Tensor::from_slice(&v).view([layers, 1, 1, p, width])
    };
    Tensor::cat(&[part("keys", 2.0 * sqrt3), part("values", 0.5 * sqrt3)], 1)
}

fn check(name: &str, sub: &str, file: &str) {
    let Some(path) = model_path(sub, file) else { return };
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/decoder_{name}.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let probe = ints(&v["probe_ids"]);
    let cases: Vec<Case> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            ids: ints(&c["ids"]),
            hidden_last: floats(&c["hidden_last"]),
            hidden_mean: floats(&c["hidden_mean"]),
            logits_last: floats(&c["logits_last"]),
        })
        .collect();
    let dec = Decoder::load(&path, Device::Cpu).unwrap();
    let rows = dec.output_weight().index_select(0, &Tensor::from_slice(&probe));
    let _g = tch::no_grad_guard();
    let mut singles = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let batch = pad_batch(&[(c.ids.clone(), vec![0; c.ids.len()])], 0, Device::Cpu);
        let h = dec.forward(&batch, None, Forward::default()).get(0);
        let last = h.get(-1);
        close(&format!("{name} case {i} hidden_last"), &last, &c.hidden_last, 2e-4, 1e-4);
        close(&format!("{name} case {i} hidden_mean"), &h.mean_dim(0, false, Kind::Float), &c.hidden_mean, 2e-4, 1e-4);
        close(&format!("{name} case {i} logits_last"), &rows.mv(&last), &c.logits_last, 2e-4, 1e-3);
        singles.push(last);
    }
    // One right-padded batch: the last real token of each row is its single run.
    let items: Vec<_> = cases.iter().map(|c| (c.ids.clone(), vec![0; c.ids.len()])).collect();
    let batch = pad_batch(&items, 0, Device::Cpu);
    let h = dec.forward(&batch, None, Forward::default());
    let last = Pooling::Last.pool(&h, &batch.attention_mask);
    for (i, s) in singles.iter().enumerate() {
        let d = (last.get(i as i64) - s).abs().max().double_value(&[]);
        assert!(d < 1e-3 * s.abs().max().double_value(&[]).max(1.0), "{name}: padded row {i} differs by {d}");
    }
    // A prefix in the cache (HF: the input at positions p..p+T-1, as `positions = shifted`).
    let p = v["prefix_len"].as_i64().unwrap();
    let prefix = formula_prefix(name, dec.config.layers, p, dec.kv_width());
    let ids = ints(&v["prefix_ids"]);
    let batch = pad_batch(&[(ids.clone(), vec![0; ids.len()])], 0, Device::Cpu);
    let opts = Forward { dropout: false, positions: Positions::Shifted };
    let last = dec.forward(&batch, Some(&prefix), opts).get(0).get(-1);
    close(&format!("{name} prefix hidden_last"), &last, &floats(&v["prefix_hidden_last"]), 2e-4, 1e-4);
    close(&format!("{name} prefix logits_last"), &rows.mv(&last), &floats(&v["prefix_logits_last"]), 2e-4, 1e-3);
}

#[test]
fn smollm2_matches_transformers() {
    check("smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3", "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf");
}

/// The keys and values of a text, used as a prefix with shifted positions, continue it: the
/// in-context-learning shortcut gives the numbers of the whole sequence run at once.
#[test]
fn keys_values_continue_the_sequence() {
    let Some(path) = model_path("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let dec = Decoder::load(&path, Device::Cpu).unwrap();
    let _g = tch::no_grad_guard();
    let head: Vec<i64> = vec![1, 504, 2323, 314, 253, 1345, 30, 198];
    let tail: Vec<i64> = vec![5248, 421, 2213, 28];
    let whole: Vec<i64> = head.iter().chain(&tail).copied().collect();
    let b = |ids: &[i64]| pad_batch(&[(ids.to_vec(), vec![0; ids.len()])], 0, Device::Cpu);
    let full = dec.forward(&b(&whole), None, Forward::default()).get(0).get(-1);
    let kv = dec.keys_values(&b(&head));
    let opts = Forward { dropout: false, positions: Positions::Shifted };
    let cont = dec.forward(&b(&tail), Some(&kv), opts).get(0).get(-1);
    let d = (&full - &cont).abs().max().double_value(&[]);
    assert!(d < 1e-3, "continuation differs by {d}");
}
