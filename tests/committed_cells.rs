//! Cells of the committed LM-BFF benchmark (`bench/results/lmbff-k16`), rerun from their own
//! config: every training step's loss and regulariser, the checkpoint chosen, the dev score
//! it was chosen by and every test score must be the committed ones to the bit. This is what
//! docs/results.md promises ("rerunning a cell gives the numbers of results.csv"); a change
//! that moves the numbers needs a new numerics version, and the grid then reruns its cells.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn cells() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/lmbff-k16/cells")
}

/// The numbers of a run that do not depend on the machine's speed or the data's location.
fn numbers(dir: &Path) -> (Value, Vec<Value>) {
    let r = common::results_json(dir);
    let summary = ["best_step", "best_epoch", "dev_selection", "split_hash", "steps", "test"]
        .iter()
        .map(|k| (k.to_string(), r[*k].clone()))
        .collect::<serde_json::Map<_, _>>();
    (Value::Object(summary), common::step_log(dir))
}

fn rerun(cell: &str) {
    common::minilm_dir();
    let config = cells().join(format!("{cell}.toml"));
    let out = std::env::temp_dir().join(format!("prefix-subspace-committed-{cell}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let glue = common::glue_dir();
    let status = Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .args(["--set", &format!("data_dir={}", glue.display()), "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "rerunning {cell}");
    let (committed, committed_steps) = numbers(&cells().join(cell));
    let (again, again_steps) = numbers(&out);
    assert_eq!(again, committed, "{cell}: chosen checkpoint, dev and test scores");
    assert_eq!(again_steps.len(), committed_steps.len(), "{cell}: metrics lines");
    for (a, c) in again_steps.iter().zip(&committed_steps) {
        assert_eq!(a, c, "{cell}: metrics line");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_committed_subspace_cell_reruns_to_the_same_numbers() {
    rerun("wnli-k16-split13-subspace");
}

#[test]
fn a_committed_lora_cell_reruns_to_the_same_numbers() {
    rerun("cola-k16-split13-lora");
}
