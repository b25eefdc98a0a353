//! Zero-shot scoring against a transformers fixture: the shared part of
//! tests/zero_shot_reference.rs and tests/multi_token_words.rs (read the fixture, make a
//! `zero-shot` run, `predict --strict` the fixture's inputs with it).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A JSON fixture of tests/fixtures, as it is.
pub fn json_fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The pairs of numbers of an array of two-number arrays (the two classes' logits or scores
/// per input).
pub fn number_pairs(v: &Value) -> Vec<(f64, f64)> {
    v.as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect()
}

/// A `zero-shot` run of `model` on `task` (the real GLUE data of [`super::glue_dir`]) in
/// `<tmp>/zero-shot`, with `test_limit=8`, `threads=2` and the further `--set`s `sets`; then
/// `predict --strict` with it on `lines` (one input per line). Returns one JSON row per
/// line.
pub fn zero_shot_predict(tmp: &Path, model: &str, task: &str, sets: &[&str], lines: &[String]) -> Vec<Value> {
    let run = tmp.join("zero-shot");
    let glue = super::glue_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prefix-subspace"));
    cmd.args(["train", "--task", task, "--model", model, "--method", "zero-shot", "--quiet"])
        .args(["--data-dir", glue.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .args(["--set", "test_limit=8", "--set", "threads=2"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "train: {}", String::from_utf8_lossy(&o.stderr));
    let input = tmp.join("inputs.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rows = super::predict_rows(&run, &input);
    assert_eq!(rows.len(), lines.len());
    rows
}
