//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

pub mod zero_shot;

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

/// Whether the decoder `name` is installed in the cache (scripts/setup.sh installs SmolLM2;
/// CI runs it first); says "skipped" when it is not. Sets up the cache like [`minilm_dir`].
pub fn decoder_installed(name: &str) -> bool {
    minilm_dir();
    let ok = prefix_subspace::paths::home().join("models").join(name).is_dir();
    if !ok {
        eprintln!("skipped: {name} is not installed (run scripts/setup.sh)");
    }
    ok
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

/// Compares `ours` with reference values: max |a − b| ≤ rel · max |b| + abs. Prints and
/// returns the max |a − b|.
pub fn close(what: &str, ours: &Tensor, reference: &[f64], rel: f64, abs: f64) -> f64 {
    let ours: Vec<f64> = Vec::try_from(ours.to_kind(tch::Kind::Double).reshape([-1])).unwrap();
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = ours.iter().zip(reference).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{what}: max |diff| {diff:.3e} (scale {scale:.3e})");
    assert!(diff <= rel * scale + abs, "{what}: max |diff| {diff} > {rel} × {scale} + {abs}");
    diff
}

// ------------------------------------------------------------------------------------------
// The pseudo-random formula of the tiny checkpoints the tests write (the reference scripts use
// the same: scripts/reference/formula.py, which documents it; keep the two in sync).

/// 32-bit FNV-1a of a name.
pub fn formula_fnv1a(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The "lowbias32" integer hash.
pub fn formula_mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// Element `j` of the hash stream named `name`.
pub fn formula_hash(name: &str, j: usize) -> u32 {
    formula_mix32(formula_mix32(formula_fnv1a(name)) ^ (j as u32).wrapping_mul(0x9E37_79B9))
}

/// `n` values uniform in (-1, 1) (exact in f64).
pub fn formula_uniform(name: &str, n: usize) -> Vec<f64> {
    let seed = formula_mix32(formula_fnv1a(name));
    (0..n)
        .map(|j| {
            let h = formula_mix32(seed ^ (j as u32).wrapping_mul(0x9E37_79B9));
            (f64::from(h) + 0.5) / 2_147_483_648.0 - 1.0
        })
        .collect()
}

/// `base + scale · uniform`, computed in f64 and rounded to f32.
pub fn formula_values(name: &str, n: usize, scale: f64, base: f64) -> Vec<f32> {
    formula_uniform(name, n).into_iter().map(|u| (base + scale * u) as f32).collect()
}

/// `n` bytes: the low byte of each hash.
pub fn formula_bytes(name: &str, n: usize) -> Vec<u8> {
    (0..n).map(|j| formula_hash(name, j) as u8).collect()
}

/// A tiny decoder's weight (f32) by its checkpoint name and shape (formula.py's `hf_weight`):
/// uniform with the variance of N(0, 1/in) for matrices, norm weights `norm_base` ± 0.3·√3,
/// other vectors ± 0.1·√3, a multimodal checkpoint's vision tower ± 0.05·√3.
pub fn formula_hf_weight(name: &str, shape: &[i64], norm_base: f64) -> Tensor {
    let n = shape.iter().product::<i64>() as usize;
    let sqrt3 = 3.0f64.sqrt();
    let v = if name.contains("vision_tower") || name.contains("multi_modal") {
        formula_values(name, n, 0.05 * sqrt3, 0.0)
    } else if shape.len() == 2 {
        formula_values(name, n, (3.0 / shape[1] as f64).sqrt(), 0.0)
    } else if name.contains("norm") {
        formula_values(name, n, 0.3 * sqrt3, norm_base)
    } else {
        formula_values(name, n, 0.1 * sqrt3, 0.0)
    };
    Tensor::from_slice(&v).view(shape)
}

/// The raw bytes of a CPU tensor, in its own dtype.
pub fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let numel = t.numel();
    let mut out = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut out, numel);
    out
}

/// A minimal GGUF writer (version 3, little-endian, alignment 32) that writes what gguf-py's
/// `GGUFWriter` writes for the same calls: metadata in insertion order (general.architecture
/// first), tensor infos in insertion order, every tensor's data padded to 32 bytes.
pub mod gguf_write {
    use std::path::Path;

    /// GGML tensor types (`GGMLQuantizationType`), with their block sizes.
    #[allow(non_camel_case_types)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum GgmlType {
        F32,
        F16,
        Q4_0,
        Q4_1,
        Q5_0,
        Q5_1,
        Q8_0,
        Q2_K,
        Q3_K,
        Q4_K,
        Q5_K,
        Q6_K,
        BF16,
    }

    impl GgmlType {
        /// The type id in the file.
        pub fn id(self) -> u32 {
            use GgmlType::*;
            match self {
                F32 => 0,
                F16 => 1,
                Q4_0 => 2,
                Q4_1 => 3,
                Q5_0 => 6,
                Q5_1 => 7,
                Q8_0 => 8,
                Q2_K => 10,
                Q3_K => 11,
                Q4_K => 12,
                Q5_K => 13,
                Q6_K => 14,
                BF16 => 30,
            }
        }

        /// (values per block, bytes per block).
        pub fn block(self) -> (usize, usize) {
            use GgmlType::*;
            match self {
                F32 => (1, 4),
                F16 | BF16 => (1, 2),
                Q4_0 => (32, 18),
                Q4_1 => (32, 20),
                Q5_0 => (32, 22),
                Q5_1 => (32, 24),
                Q8_0 => (32, 34),
                Q2_K => (256, 84),
                Q3_K => (256, 110),
                Q4_K => (256, 144),
                Q5_K => (256, 176),
                Q6_K => (256, 210),
            }
        }
    }

    /// A metadata value.
    #[derive(Debug, Clone)]
    pub enum Meta {
        U8(u8),
        I8(i8),
        U16(u16),
        I16(i16),
        U32(u32),
        I32(i32),
        U64(u64),
        I64(i64),
        F32(f32),
        F64(f64),
        Bool(bool),
        Str(String),
        Strs(Vec<String>),
        F32s(Vec<f32>),
        I32s(Vec<i32>),
    }

    /// A GGUF file being put together.
    #[derive(Debug, Default)]
    pub struct GgufFile {
        metadata: Vec<(String, Meta)>,
        /// Name, shape in PyTorch order, type, raw bytes.
        tensors: Vec<(String, Vec<i64>, GgmlType, Vec<u8>)>,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn pad(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
    }

    impl GgufFile {
        /// A file of architecture `arch` (its first metadata key).
        pub fn new(arch: &str) -> Self {
            let mut f = Self::default();
            f.meta("general.architecture", Meta::Str(arch.into()));
            f
        }

        /// Adds (or replaces, in place) a metadata key.
        pub fn meta(&mut self, key: &str, v: Meta) -> &mut Self {
            match self.metadata.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = v,
                None => self.metadata.push((key.into(), v)),
            }
            self
        }

        /// Adds a tensor of `shape` (PyTorch order) from its raw bytes.
        pub fn tensor(&mut self, name: &str, shape: &[i64], ty: GgmlType, bytes: Vec<u8>) -> &mut Self {
            let n = shape.iter().product::<i64>() as usize;
            let (block, size) = ty.block();
            assert!(
                n.is_multiple_of(block) && bytes.len() == n / block * size,
                "{name}: {} bytes for {n} {ty:?} values",
                bytes.len()
            );
            self.tensors.push((name.into(), shape.to_vec(), ty, bytes));
            self
        }

        /// The file's bytes.
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend(b"GGUF");
            out.extend(3u32.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend((self.metadata.len() as u64).to_le_bytes());
            for (k, v) in &self.metadata {
                string(&mut out, k);
                let (ty, body): (u32, Vec<u8>) = match v {
                    Meta::U8(x) => (0, x.to_le_bytes().to_vec()),
                    Meta::I8(x) => (1, x.to_le_bytes().to_vec()),
                    Meta::U16(x) => (2, x.to_le_bytes().to_vec()),
                    Meta::I16(x) => (3, x.to_le_bytes().to_vec()),
                    Meta::U32(x) => (4, x.to_le_bytes().to_vec()),
                    Meta::I32(x) => (5, x.to_le_bytes().to_vec()),
                    Meta::F32(x) => (6, x.to_le_bytes().to_vec()),
                    Meta::Bool(x) => (7, vec![u8::from(*x)]),
                    Meta::Str(s) => {
                        let mut b = Vec::new();
                        string(&mut b, s);
                        (8, b)
                    }
                    Meta::U64(x) => (10, x.to_le_bytes().to_vec()),
                    Meta::I64(x) => (11, x.to_le_bytes().to_vec()),
                    Meta::F64(x) => (12, x.to_le_bytes().to_vec()),
                    Meta::Strs(a) => {
                        let mut b = 8u32.to_le_bytes().to_vec();
                        b.extend((a.len() as u64).to_le_bytes());
                        a.iter().for_each(|s| string(&mut b, s));
                        (9, b)
                    }
                    Meta::F32s(a) => {
                        let mut b = 6u32.to_le_bytes().to_vec();
                        b.extend((a.len() as u64).to_le_bytes());
                        a.iter().for_each(|x| b.extend(x.to_le_bytes()));
                        (9, b)
                    }
                    Meta::I32s(a) => {
                        let mut b = 5u32.to_le_bytes().to_vec();
                        b.extend((a.len() as u64).to_le_bytes());
                        a.iter().for_each(|x| b.extend(x.to_le_bytes()));
                        (9, b)
                    }
                };
                out.extend(ty.to_le_bytes());
                out.extend(body);
            }
            let mut offset = 0u64;
            for (name, shape, ty, bytes) in &self.tensors {
                string(&mut out, name);
                out.extend((shape.len() as u32).to_le_bytes());
                for d in shape.iter().rev() {
                    out.extend((*d as u64).to_le_bytes());
                }
                out.extend(ty.id().to_le_bytes());
                out.extend(offset.to_le_bytes());
                offset += (bytes.len() as u64).div_ceil(32) * 32;
            }
            pad(&mut out);
            for (_, _, _, bytes) in &self.tensors {
                out.extend(bytes);
                pad(&mut out);
            }
            out
        }

        /// Writes the file.
        pub fn write(&self, path: &Path) {
            std::fs::write(path, self.to_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// Rounds f32 values to f16 (libtorch's round-to-nearest-even): the f16 bytes and the values
/// they hold.
pub fn f16_round(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let h = Tensor::from_slice(values).to_kind(tch::Kind::Half);
    (tensor_bytes(&h), Vec::try_from(h.to_kind(tch::Kind::Float)).unwrap())
}

/// ggml's Q8_0 quantisation of `values` (a multiple of 32, in row-major order): per block of 32,
/// d = max |x| / 127 stored as f16, q = round(x / d) as i8. Returns the blocks' bytes and the
/// values they dequantise to (f32(d) · q, as ggml and candle compute them).
pub fn q8_0(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    assert_eq!(values.len() % 32, 0);
    let (mut bytes, mut deq) = (Vec::new(), Vec::new());
    for block in values.chunks(32) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (dh, dv) = f16_round(&[d]);
        bytes.extend(&dh);
        for &x in block {
            let q = (x * id).round() as i8;
            bytes.push(q as u8);
            deq.push(dv[0] * f32::from(q));
        }
    }
    (bytes, deq)
}

/// The JSON lines `predict --strict --run <run_dir> --input <input>` prints.
pub fn predict_rows(run_dir: &Path, input: &Path) -> Vec<serde_json::Value> {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
        .args(["predict", "--strict", "--run", run_dir.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "predict: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The accuracy `predict --strict --run` gives on a classification run's first test set (its
/// examples written as JSON lines), recounted against the gold labels.
pub fn predict_accuracy(run_dir: &Path) -> f64 {
    let cfg = prefix_subspace::config::RunConfig::from_file(&run_dir.join("config.toml")).unwrap();
    let task = prefix_subspace::task::TaskData::load(&cfg.resolve().unwrap()).unwrap();
    let (_, test) = &task.tests[0];
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let lines: Vec<String> =
        test.iter().map(|e| serde_json::json!({"text_a": e.text_a, "text_b": e.text_b}).to_string()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rows = predict_rows(run_dir, &input);
    assert_eq!(rows.len(), test.len());
    let correct = rows
        .iter()
        .zip(test)
        .filter(|(row, e)| match e.label {
            prefix_subspace::data::Label::Class(c) => row["label"] == task.label_names[c].as_str(),
            _ => false,
        })
        .count();
    correct as f64 / test.len() as f64
}
