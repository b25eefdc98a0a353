//! The bench grid: resumable, sharded runs merge into the same table as one run.

mod common;

use std::path::Path;
use std::process::Command;

const GRID: &str = r#"
tasks = ["polarity"]
shots = [4]
split_seeds = [13, 21]
methods = ["prefix", "head"]

[[variant]]
name = "subspace-beta0"
method = "subspace"
set = { beta = 0.0, vertices = 2 }

[base]
max_steps = 2
test_limit = 40
dev_samples = 2
ensemble_samples = 2
"#;

fn bench(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).arg("bench").args(args).output().unwrap();
    assert!(o.status.success(), "bench {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// results.csv without the wall-clock column, sorted.
fn rows(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let t = header.iter().position(|h| *h == "train_seconds").unwrap();
    let mut out: Vec<String> = lines
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != t).map(|(_, c)| c).collect::<Vec<_>>().join(","))
        .collect();
    out.sort();
    out
}

#[test]
fn sharded_runs_merge_into_the_table_of_one_run_and_finished_cells_are_not_rerun() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, GRID).unwrap();
    let cfg = cfg.to_str().unwrap();
    let whole = tmp.path().join("whole");
    bench(&["--config", cfg, "--out", whole.to_str().unwrap(), "--jobs", "2"]);
    let all = rows(&whole);
    assert_eq!(all.len(), 6, "2 seeds × 3 variants");
    let summary = std::fs::read_to_string(whole.join("summary.md")).unwrap();
    for v in ["prefix", "head", "subspace-beta0", "subspace-beta0 (ensemble)"] {
        assert!(summary.contains(&format!("| {v} |")), "summary lacks {v}:\n{summary}");
    }

    let again = bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert!(again.contains("6 already finished, 0 to run"), "{again}");

    // A cell interrupted before its results.json (as after a kill) runs again, alone, and
    // rerunning it with its seeds gives the same numbers.
    let cell = whole.join("cells/polarity-k4-split21-subspace-beta0");
    std::fs::remove_file(cell.join("results.json")).unwrap();
    let resumed = bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert!(resumed.contains("5 already finished, 1 to run"), "{resumed}");
    assert_eq!(rows(&whole), all);

    // A cell trained with other settings is stale and reruns.
    let edited = GRID.replace("max_steps = 2", "max_steps = 3");
    let cfg2 = tmp.path().join("grid2.toml");
    std::fs::write(&cfg2, edited).unwrap();
    let stale = bench(&["--config", cfg2.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--tasks", "polarity"]);
    assert!(stale.contains("0 already finished, 6 to run"), "{stale}");

    // Back to the original grid for the sharding comparison.
    bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert_eq!(rows(&whole), all);

    let mut shards = Vec::new();
    for i in 0..3 {
        let d = tmp.path().join(format!("shard{i}"));
        bench(&["--config", cfg, "--out", d.to_str().unwrap(), "--shard", &format!("{i}/3")]);
        assert_eq!(rows(&d).len(), 2);
        shards.push(d);
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["--out", merged.to_str().unwrap(), "--merge"];
    args.extend(shards.iter().map(|d| d.to_str().unwrap()));
    bench(&args);
    assert_eq!(rows(&merged), all);
    assert_eq!(
        std::fs::read_to_string(merged.join("summary.md")).unwrap().lines().skip(3).collect::<Vec<_>>(),
        summary.lines().skip(3).collect::<Vec<_>>()
    );
}
