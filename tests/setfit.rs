//! The `setfit` method (src/setfit.rs).
//!
//! - Pair generation: 2 × iterations × N pairs, positives of one class (another example),
//!   negatives of two, seeded.
//! - `train --method setfit` end to end on the default encoder (all-MiniLM-L6-v2) on SST-2,
//!   4 examples per class (20 contrastive steps) and 40 test sentences: one step line per
//!   contrastive step and one line per C in metrics.jsonl; `eval --run` and `predict --run`
//!   give results.json's test numbers exactly (the fine-tuned body is in the checkpoint).
//! - Interrupted in its contrastive phase (SIGKILL after a saved step, or Ctrl-C) or in its
//!   test evaluation (Ctrl-C), a run resumes with `train --resume` to the uninterrupted run's
//!   numbers (its `setfit` object included) and log, bit for bit.
//! - Refused, in one line naming the method, on a decoder and on a regression task.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// SST-2, 4 per class: 20 contrastive steps, the state saved every 3.
fn resumable_args(glue: &str) -> Vec<String> {
    let sets = ["test_limit=400", "max_len=64", "threads=1", "checkpoint_every=3"];
    let mut a: Vec<String> =
        ["--task", "sst2", "--data-dir", glue, "--method", "setfit", "--shots", "4"].map(String::from).to_vec();
    for s in sets {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    a
}

/// results.json without what depends on the clock or on the interruption.
fn numbers(dir: &Path) -> Value {
    let mut r = common::results_json(dir);
    for k in ["train_seconds", "train_samples_per_second", "test_seconds", "resumed"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

#[test]
fn setfit_stopped_in_its_contrastive_phase_resumes_to_the_same_numbers() {
    common::minilm_dir();
    let glue = common::glue_dir().to_string_lossy().into_owned();
    let args = resumable_args(&glue);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    ok(&train(&straight, &a), "uninterrupted");
    assert!(!straight.join("resume.safetensors").exists(), "a finished run removes its resume state");
    let steps = (2 * ITERATIONS * 8).div_ceil(PAIR_BATCH);
    // SIGKILL once step 7 is logged (the state was saved after step 6), and SIGINT (Ctrl-C)
    // once step 4 is: both while the contrastive phase runs. Then SIGINT once the last step
    // is logged: it lands in the head's fit or the test evaluation (400 sentences), and the
    // run stops in the latter, its phase over.
    for (signal, after) in [("KILL", 7), ("INT", 4), ("INT", steps)] {
        let dir = tmp.path().join(format!("{signal}-{after}"));
        let mut child = bin()
            .arg("train")
            .args(&a)
            .args(["--quiet", "--out"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while common::last_step(&dir) < after {
            assert!(child.try_wait().unwrap().is_none(), "{signal}: the run ended before step {after}");
            assert!(t0.elapsed() < Duration::from_secs(300), "{signal}: no progress to step {after}");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let at = common::last_step(&dir);
        if after < steps {
            assert!(at < steps, "{signal}: stopped in the contrastive phase (step {at} of {steps})");
        } else {
            assert_eq!(at, steps, "{signal}: stopped after the contrastive phase");
        }
        if signal == "INT" {
            // Ctrl-C stops after the current step, not at the end of the phase.
            assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
        }
        assert!(!dir.join("results.json").exists() && dir.join("resume.safetensors").is_file(), "{signal}");
        let o = bin().args(["train", "--quiet", "--resume"]).arg(&dir).output().unwrap();
        ok(&o, &format!("resume after SIG{signal}"));
        assert_eq!(numbers(&dir), numbers(&straight), "SIG{signal} at step {at}");
        assert_eq!(
            common::step_log(&dir),
            common::step_log(&straight),
            "SIG{signal}: the log continues as the uninterrupted one"
        );
        assert_eq!(common::results_json(&dir)["resumed"], true);
    }
}
