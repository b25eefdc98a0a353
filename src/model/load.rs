//! Reading a checkpoint's files: `model.safetensors` into frozen tensors, with errors that name
//! the tensor, and its JSON files (`config.json`, `tokenizer_config.json`, ...).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The file name of a model folder's weights (the only file [`Weights::read`] advises
/// downloading again when it is unreadable).
pub const MODEL_WEIGHTS: &str = "model.safetensors";

/// The JSON a file holds (a checkpoint's `modules.json`, ...): an error naming the file when
/// it cannot be read or is not JSON.
pub fn json_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: not valid JSON ({e})", path.display())))
}

/// The JSON object a file holds (`config.json`, `tokenizer_config.json`, an adapter's or an
/// index's JSON): [`json_file`], and an error naming the file when it is not an object.
pub fn json_object(path: &Path) -> Result<Map<String, Value>> {
    match json_file(path)? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Input(format!("{}: expected a JSON object", path.display()))),
    }
}

/// The tensors of one checkpoint file, taken out one by one by the modules that own them.
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Reads every tensor of a safetensors file as float32 on `device`, without gradients.
    pub fn read(path: &Path, device: Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            // Only a model's weights come from a download; a run's own checkpoint or resume
            // file (or an adapter) was written here, and downloading it again means nothing.
            let advice = if path.file_name().is_some_and(|n| n == MODEL_WEIGHTS) {
                "the file may be truncated or corrupted: download it again"
            } else {
                "the file is truncated or corrupted"
            };
            Error::Input(format!("{}: not a valid safetensors file ({e}); {advice}", path.display()))
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let kind = match view.dtype() {
                safetensors::Dtype::F32 => Kind::Float,
                safetensors::Dtype::F16 => Kind::Half,
                safetensors::Dtype::BF16 => Kind::BFloat16,
                safetensors::Dtype::F64 => Kind::Double,
                safetensors::Dtype::I64 => Kind::Int64,
                safetensors::Dtype::I32 => Kind::Int,
                other => {
                    return Err(Error::Input(format!(
                        "{}: tensor \"{name}\" has unsupported dtype {other:?}",
                        path.display()
                    )))
                }
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            let t = if t.is_floating_point() { t.to_kind(Kind::Float) } else { t };
            tensors.insert(name, t.to_device(device));
        }
        Ok(Self { path: path.to_path_buf(), tensors })
    }

    /// The file the tensors were read from (or stand for).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wraps tensors already in memory (tests, conversions).
    pub fn from_tensors(path: &Path, tensors: HashMap<String, Tensor>) -> Self {
        Self { path: path.to_path_buf(), tensors }
    }

    /// All remaining tensors by name.
    pub fn into_map(self) -> std::collections::BTreeMap<String, Tensor> {
        self.tensors.into_iter().collect()
    }

    /// Renames `prefix.X` to `X` (checkpoints saved from a task model carry `bert.` etc.).
    pub fn strip_prefix(&mut self, prefix: &str) {
        let names: Vec<String> = self.tensors.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        for n in names {
            if let Some(t) = self.tensors.remove(&n) {
                self.tensors.insert(n[prefix.len()..].to_string(), t);
            }
        }
    }

    /// Takes the tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.take_any(&[name], shape)
    }

    /// Takes the first of `names` present, checking its shape and that it holds floating-point
    /// numbers (every weight of the encoder does; an integer tensor would fail later, in the
    /// middle of a product). [`Weights::into_map`] hands out tensors of any dtype.
    pub fn take_any(&mut self, names: &[&str], shape: &[i64]) -> Result<Tensor> {
        for name in names {
            if let Some(t) = self.tensors.remove(*name) {
                if !t.is_floating_point() {
                    return Err(Error::Input(format!(
                        "{}: tensor \"{name}\" has dtype {} but a weight must be floating point (F32, F16, BF16 or F64)",
                        self.path.display(),
                        dtype_name(t.kind())
                    )));
                }
                if t.size() != shape {
                    return Err(Error::Input(format!(
                        "{}: tensor \"{name}\" has shape {:?} but config.json implies {:?}",
                        self.path.display(),
                        t.size(),
                        shape
                    )));
                }
                return Ok(t);
            }
        }
        Err(Error::Input(format!(
            "{}: missing tensor \"{}\" (with or without a bert./roberta./mpnet. prefix); is this the checkpoint config.json describes?",
            self.path.display(),
            names[0]
        )))
    }
}

/// The safetensors name of a tensor kind (as the file states it).
fn dtype_name(kind: Kind) -> String {
    match kind {
        Kind::Int => "I32".into(),
        Kind::Int64 => "I64".into(),
        Kind::Float => "F32".into(),
        Kind::Half => "F16".into(),
        Kind::BFloat16 => "BF16".into(),
        Kind::Double => "F64".into(),
        other => format!("{other:?}"),
    }
}
