//! Where the set-up script puts things: `$PREFIX_SUBSPACE_HOME`, default
//! `~/.cache/prefix-subspace`.

use std::path::PathBuf;

/// The cache folder holding libtorch, models and demo data.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("PREFIX_SUBSPACE_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    base.join(".cache").join("prefix-subspace")
}

/// The default model folder (all-MiniLM-L6-v2, installed by `scripts/setup.sh`).
pub fn default_model() -> PathBuf {
    home().join("models").join("all-MiniLM-L6-v2")
}
