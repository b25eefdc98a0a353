//! Atomic writes: a temporary file in the same folder, fsync, rename; a failed write leaves
//! nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::error::{Error, Result};

/// An output file the user named (`flag PATH`): refused when something is already there,
/// unless `overwrite` — the tool replaces no file it did not create without being told to.
pub fn check_new_file(path: &Path, flag: &str, overwrite: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Input(format!("{flag} {}: a folder; expected a file name", path.display())));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Input(format!("{flag} {}: no folder {} to write it in", path.display(), parent.display())));
    }
    if !overwrite && (path.exists() || path.is_symlink()) {
        return Err(Error::Input(format!(
            "{flag} {}: the file exists and was left as it is; pass --overwrite to replace it, or name another file",
            path.display()
        )));
    }
    Ok(())
}

/// Writes a file atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        s.into()
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        // Nothing half-written is left behind (a full disk, a folder that went away).
        drop(f);
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes named tensors as safetensors atomically (temp file, fsync, rename).
pub fn write_tensors_atomic<S: AsRef<str>, T: AsRef<Tensor>>(tensors: &[(S, T)], path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let written = Tensor::write_safetensors(tensors, &tmp)
        .map_err(Error::from)
        .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e)))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        // Nothing half-written is left behind (a full disk, a folder that went away).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
