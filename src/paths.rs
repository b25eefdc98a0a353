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

/// A model folder given by the user: the path itself when it exists, else a model of that
/// name installed in the cache (`all-mpnet-base-v2` = `$PREFIX_SUBSPACE_HOME/models/all-mpnet-base-v2`).
pub fn model(given: &std::path::Path) -> PathBuf {
    if given.exists() || given.components().count() != 1 {
        return given.to_path_buf();
    }
    let installed = home().join("models").join(given);
    if installed.is_dir() {
        installed
    } else {
        given.to_path_buf()
    }
}

/// The error for a `--model` that is neither a file, a folder nor an installed name: what
/// `--model` accepts, and the names installed in the cache.
pub fn model_not_found(dir: &std::path::Path) -> String {
    not_found_in(dir, &home().join("models"))
}

fn not_found_in(dir: &std::path::Path, models: &std::path::Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(models)
        .map(|d| {
            d.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    let installed =
        if names.is_empty() { "none; scripts/setup.sh installs the default".to_string() } else { names.join(", ") };
    format!(
        "{}: model not found; --model takes a .gguf file, a model folder, or the name of a model in {} (installed: {installed})",
        dir.display(),
        models.display()
    )
}

/// Whether `name` can be one path component of a folder this tool creates from a config (a
/// bench cell or variant name): letters, digits, `.`, `_`, `-`, not starting with `.`, at most
/// 100 characters.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_one_plain_path_component() {
        for ok in ["subspace", "beta0", "n2", "lr-1e-3", "a.b_c"] {
            assert!(is_safe_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "x/../../victim", "a/b", "a\\b", "sp ace", "tab\t", &"x".repeat(101)] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_model_names_what_is_installed() {
        let models = std::env::temp_dir().join(format!("ps-paths-{}", std::process::id()));
        let m = not_found_in(std::path::Path::new("nope.gguf"), &models);
        assert!(m.ends_with("(installed: none; scripts/setup.sh installs the default)"), "{m}");
        std::fs::create_dir_all(models.join("tiny-b")).unwrap();
        std::fs::create_dir_all(models.join("tiny-a")).unwrap();
        std::fs::write(models.join("notes.txt"), "not a model").unwrap();
        let m = not_found_in(std::path::Path::new("nope.gguf"), &models);
        std::fs::remove_dir_all(&models).unwrap();
        assert!(m.starts_with("nope.gguf: model not found; --model takes a .gguf file"), "{m}");
        assert!(m.ends_with("(installed: tiny-a, tiny-b)"), "{m}");
    }
}
