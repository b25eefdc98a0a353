// Shared by the targets: the readers take paths, as users call them, so each input is
// written to a per-process scratch file first (on tmpfs when there is one).
use std::path::PathBuf;

pub fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("prefix-subspace-fuzz-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("scratch file");
    path
}
