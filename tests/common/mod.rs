//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

/// The installed default model; the tests need it (scripts/setup.sh installs it).
pub fn minilm_dir() -> PathBuf {
    let dir = prefix_subspace::paths::default_model();
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/setup.sh first (it installs the default model)",
        dir.display()
    );
    dir
}

/// The real GLUE data folder: $GLUE_DIR, else ../shared/data/glue beside the repository.
pub fn glue_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GLUE_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/glue")
}

/// Reads a JSON fixture: each array becomes a tensor of its nested shape, int64 for the
/// id/mask matrices, float32 otherwise.
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    fn shape(v: &serde_json::Value, out: &mut Vec<i64>) {
        if let Some(a) = v.as_array() {
            out.push(a.len() as i64);
            shape(&a[0], out);
        }
    }
    fn flat(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v.as_array() {
            Some(a) => a.iter().for_each(|x| flat(x, out)),
            None => out.push(v.as_f64().expect("a number")),
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter(|(_, x)| x.is_array())
        .map(|(k, x)| {
            let (mut s, mut values) = (Vec::new(), Vec::new());
            shape(x, &mut s);
            flat(x, &mut values);
            let t = Tensor::from_slice(&values).view(s.as_slice());
            let kind = if k.ends_with("_ids") || k.ends_with("_mask") { tch::Kind::Int64 } else { tch::Kind::Float };
            (k.clone(), t.to_kind(kind))
        })
        .collect()
}

/// libtorch's random generator is process-wide and the test harness runs tests on several
/// threads: a test that seeds it and then checks what it draws holds this lock throughout.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Max absolute difference of two float tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Random tensors of the given names and shapes (LayerNorm scales 1, the rest N(0, scale²)),
/// drawn in order from libtorch's generator: the weights of tiny test checkpoints.
pub fn random_weights(shapes: Vec<(String, Vec<i64>)>, scale: f64) -> Vec<(String, Tensor)> {
    use tch::{Device, Kind};
    shapes
        .into_iter()
        .map(|(n, s)| {
            let t = if n.ends_with("LayerNorm.weight") {
                Tensor::ones(s.as_slice(), (Kind::Float, Device::Cpu))
            } else {
                Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu)) * scale
            };
            (n, t)
        })
        .collect()
}

/// A tiny random BERT encoder (2 layers, hidden 16, 4 heads), for mechanics tests only.
pub fn tiny_bert(seed: i64) -> prefix_subspace::model::Encoder {
    use prefix_subspace::model::load::Weights;
    use tch::Device;
    tch::manual_seed(seed);
    let cfg: prefix_subspace::model::Config = serde_json::from_value(serde_json::json!({
        "model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 32, "max_position_embeddings": 64,
        "type_vocab_size": 2, "pad_token_id": 0
    }))
    .unwrap();
    let tensors: HashMap<String, Tensor> = random_weights(cfg.bert_parameter_shapes(), 0.3).into_iter().collect();
    let mut w = Weights::from_tensors(Path::new("tiny-bert"), tensors);
    prefix_subspace::model::Encoder::from_weights(cfg, &mut w, Device::Cpu).unwrap()
}

/// A batch of random token ids `(b, t)` for the tiny model.
pub fn tiny_batch(b: i64, t: i64) -> prefix_subspace::model::Batch {
    use tch::{Device, Kind};
    prefix_subspace::model::Batch {
        input_ids: Tensor::randint_low(1, 50, [b, t], (Kind::Int64, Device::Cpu)),
        attention_mask: Tensor::ones([b, t], (Kind::Int64, Device::Cpu)),
        token_type_ids: Tensor::zeros([b, t], (Kind::Int64, Device::Cpu)),
    }
}

/// A run directory's results.json.
pub fn results_json(run_dir: &Path) -> serde_json::Value {
    let path = run_dir.join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Loss, regulariser and dev metrics of every logged step of a run (without timings).
pub fn step_log(run_dir: &Path) -> Vec<serde_json::Value> {
    let path = run_dir.join("metrics.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("samples_per_second");
            v
        })
        .collect()
}

/// The highest step logged in a run's metrics.jsonl (0 before the first).
pub fn last_step(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0) as usize
}
