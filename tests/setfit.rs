//! The `setfit` method (src/setfit.rs).
//!
//! - Pair generation: 2 × iterations × N pairs, positives of one class (another example),
//!   negatives of two, seeded.
//! - `train --method setfit` end to end on the default encoder (all-MiniLM-L6-v2) on SST-2,
//!   4 examples per class (20 contrastive steps) and 40 test sentences: one step line per
//!   contrastive step and one line per C in metrics.jsonl; `eval --run` and `predict --run`
//!   give results.json's test numbers exactly (the fine-tuned body is in the checkpoint).
//! - Refused, in one line naming the method, on a decoder and on a regression task.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use prefix_subspace::method::setfit::{pairs, ITERATIONS, PAIR_BATCH};
use serde_json::Value;

const DECODER: &str = "smollm2-135m-instruct";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

fn train(out: &Path, args: &[&str]) -> Output {
    bin().arg("train").args(args).args(["--quiet", "--out"]).arg(out).output().unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A refusal: exit status 2 and one line on stderr that names the method.
fn refused(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
    assert!(err.contains("setfit"), "{what}: names the method: {err}");
    err
}

#[test]
fn pairs_have_the_librarys_counts_and_classes() {
    // 16 per class, two classes (SST-2's few-shot split), and an unbalanced three-class set.
    for labels in [(0..32).map(|i| i % 2).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1, 2, 2, 2, 2]] {
        let n = labels.len();
        let p = pairs(&labels, ITERATIONS, 13);
        assert_eq!(p.len(), 2 * ITERATIONS * n);
        assert_eq!(p.iter().filter(|x| x.same).count(), ITERATIONS * n);
        for x in &p {
            assert!(x.a < n && x.b < n);
            if x.same {
                assert_eq!(labels[x.a], labels[x.b], "{x:?}");
                assert_ne!(x.a, x.b, "a positive pairs two examples: {x:?}");
            } else {
                assert_ne!(labels[x.a], labels[x.b], "{x:?}");
            }
        }
        // Every example starts one positive and one negative pair per round.
        for i in 0..n {
            assert_eq!(p.iter().filter(|x| x.a == i).count(), 2 * ITERATIONS);
        }
        // Shuffled: not in generation order.
        assert!(p.iter().take(2 * n).enumerate().any(|(k, x)| x.a != k / 2));
        assert_eq!(p, pairs(&labels, ITERATIONS, 13), "seeded");
        assert_ne!(p, pairs(&labels, ITERATIONS, 21));
    }
    // A class with one example: its positive pair is itself.
    let p = pairs(&[0, 1, 1], 2, 1);
    assert!(p.iter().filter(|x| x.same && x.a == 0).all(|x| x.b == 0));
}

#[test]
fn setfit_on_the_default_encoder_and_back() {
    common::minilm_dir();
    let glue = common::glue_dir().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("setfit");
    let args = [
        "--task",
        "sst2",
        "--data-dir",
        &glue,
        "--method",
        "setfit",
        "--shots",
        "4",
        "--set",
        "test_limit=40",
        "--set",
        "max_len=64",
        "--set",
        "threads=2",
    ];
    ok(&train(&dir, &args), "train");
    let r = common::results_json(&dir);
    assert_eq!(r["method"], "setfit");
    let n = r["train_examples"].as_u64().unwrap() as usize;
    assert_eq!(n, 8);
    let steps = (2 * ITERATIONS * n).div_ceil(PAIR_BATCH);
    assert_eq!(r["steps"].as_u64().unwrap() as usize, steps);
    assert_eq!(r["setfit"]["pairs"].as_u64().unwrap() as usize, 2 * ITERATIONS * n);
    let log = common::step_log(&dir);
    let step_lines: Vec<&Value> = log.iter().filter(|v| v["kind"] == "step").collect();
    assert_eq!(step_lines.len(), steps);
    assert!(step_lines.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    assert_eq!(log.iter().filter(|v| v["kind"] == "probe").count(), prefix_subspace::method::probe::CS.len());
    assert!(r["probe"]["C"].as_f64().unwrap() > 0.0);

    // eval --run: the test numbers of results.json, exactly.
    let e = bin().args(["eval", "--run", dir.to_str().unwrap()]).output().unwrap();
    ok(&e, "eval");
    let v: Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["test"], r["test"]["centroid"], "eval --run differs from training's");

    // predict --run on the test sentences: the same accuracy.
    assert_eq!(common::predict_accuracy(&dir), r["test"]["centroid"]["accuracy"].as_f64().unwrap());
}

#[test]
fn setfit_is_refused_on_a_decoder_and_on_regression() {
    common::minilm_dir();
    let glue = common::glue_dir().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let o = train(&tmp.path().join("stsb"), &["--task", "stsb", "--data-dir", &glue, "--method", "setfit"]);
    let err = refused(&o, "stsb");
    assert!(err.contains("classification"), "{err}");
    assert!(!tmp.path().join("stsb").join("config.toml").exists());
    if !prefix_subspace::paths::home().join("models").join(DECODER).is_dir() {
        eprintln!("skipped the decoder: {DECODER} is not installed (run scripts/setup.sh)");
        return;
    }
    let o = train(
        &tmp.path().join("dec"),
        &["--task", "sst2", "--data-dir", &glue, "--model", DECODER, "--method", "setfit"],
    );
    let err = refused(&o, "decoder");
    assert!(err.contains("decoder"), "{err}");
}
