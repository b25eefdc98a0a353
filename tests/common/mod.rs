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

/// Reads a fixture file of named tensors.
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Max absolute difference of two float tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
