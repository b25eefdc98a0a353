//! `prefix-subspace speed`: each figure prints one JSON line with the shared keys and
//! positive numbers (no timing is asserted: the figures are wall-clock measurements).

mod common;

use std::process::{Command, Output};

fn speed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).arg("speed").args(args).output().expect("binary runs")
}

/// The single JSON line a one-figure run prints, checked for the shared keys.
fn line(args: &[&str], what: &str) -> serde_json::Value {
    let out = speed(args);
    assert!(out.status.success(), "speed {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line per figure: {text}");
    assert!(lines[0].starts_with(r#"{"impl":"ours","what":""#), "shared keys first: {}", lines[0]);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["what"], what);
    for k in ["samples_per_second", "step_seconds_median", "peak_rss_mb"] {
        let x = v[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number: {v}"));
        assert!(x.is_finite() && x > 0.0, "{k} = {x}");
    }
    assert_eq!(v["threads"], 2);
    // Every figure also times its matrix products alone (the ceiling of its shapes).
    for k in [
        "gflops",
        "products_only_seconds",
        "products_only_samples_per_second",
        "products_only_gflops",
        "products_share",
    ] {
        assert!(v[k].as_f64().is_some_and(|x| x.is_finite() && x > 0.0), "{k}: {v}");
    }
    v
}

#[test]
fn fixed_shape_step_reports_throughput_and_flops() {
    common::minilm_dir();
    let v = line(
        &["--only", "fixed-prefix", "--steps", "2", "--warmup", "1", "--batch", "4", "--seq-len", "32"],
        "fixed-prefix",
    );
    assert_eq!((v["batch"].as_i64(), v["seq_len"].as_i64(), v["prefix_len"].as_i64()), (Some(4), Some(32), Some(16)));
    for k in ["gflop_per_step", "gflops", "peak_gflops", "peak_fraction", "gemm_gflops"] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    let (sps, step) = (v["samples_per_second"].as_f64().unwrap(), v["step_seconds_median"].as_f64().unwrap());
    assert!((sps * step - 4.0).abs() < 1e-6, "samples/s = batch / median step time: {v}");
    let (alone_sps, alone) =
        (v["products_only_samples_per_second"].as_f64().unwrap(), v["products_only_seconds"].as_f64().unwrap());
    assert!((alone_sps * alone - 4.0).abs() < 1e-6, "products alone: batch / their time: {v}");
    assert!(v["peak_estimate"].as_str().is_some_and(|s| s.contains("FLOP/cycle")), "{v}");
    assert!(v["peak_gflops"].as_f64() >= v["gemm_gflops"].as_f64(), "the peak is at least the measured product: {v}");
    assert!(v.get("forward_seconds_median").is_none(), "phases only on request: {v}");

    // --phases: forward, backward and update, which together make up (about) the step.
    let v = line(
        &["--only", "fixed-full", "--steps", "3", "--warmup", "1", "--batch", "4", "--seq-len", "32", "--phases"],
        "fixed-full",
    );
    let phase = |k: &str| v[k].as_f64().filter(|x| *x > 0.0).unwrap_or_else(|| panic!("{k}: {v}"));
    let sum = phase("forward_seconds_median") + phase("backward_seconds_median") + phase("update_seconds_median");
    // Between half the fastest step and 1.5x the median one: three steps on a busy machine
    // (other tests run beside this one) spread by more than 2x.
    let (fastest, step) = (v["step_seconds_min"].as_f64().unwrap(), v["step_seconds_median"].as_f64().unwrap());
    assert!(
        sum > 0.5 * fastest && sum < 1.5 * step,
        "phases {sum} s against steps of {fastest} (fastest) to {step} s (median): {v}"
    );
}

#[test]
fn sst2_figure_is_a_real_training_run() {
    common::minilm_dir();
    let split = tempfile::tempdir().unwrap();
    let split_path = split.path().join("split.json");
    let glue = common::glue_dir();
    let v = line(
        &[
            "--only",
            "sst2-subspace",
            "--epochs",
            "2",
            "--data-dir",
            glue.to_str().unwrap(),
            "--split-out",
            split_path.to_str().unwrap(),
        ],
        "sst2-subspace",
    );
    // 32 examples, batch 8, the second epoch timed.
    assert_eq!((v["train_examples"].as_u64(), v["steps"].as_u64()), (Some(32), Some(4)), "{v}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&split_path).unwrap()).unwrap();
    assert_eq!(s["train_ids"].as_array().map(|a| a.len()), Some(32));
    assert_eq!(s["hash"], v["split_hash"]);
}

#[test]
fn inference_figure_covers_the_dev_set() {
    common::minilm_dir();
    let glue = common::glue_dir();
    for f in ["infer-subspace", "infer-lora"] {
        let v = line(&["--only", f, "--passes", "1", "--data-dir", glue.to_str().unwrap()], f);
        assert_eq!(v["examples"].as_u64(), Some(872), "{v}");
        assert_eq!(v["method"], f.trim_start_matches("infer-"), "{v}");
    }
}

#[test]
fn bad_figures_are_refused() {
    let out = speed(&["--only", "fixed-prompt"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fixed-prompt") && err.contains("fixed-subspace"), "{err}");
    let out = speed(&["--only", "sst2-prefix", "--shape", "base"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fixed-shape figures only"));
    // --split-out names a file of the user's: refused before anything runs, unless --overwrite.
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("split.json");
    std::fs::write(&mine, "mine").unwrap();
    let out = speed(&["--only", "sst2-prefix", "--split-out", mine.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--split-out") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine");
    let out = speed(&["--only", "fixed-prefix", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device \"tpu\""));
    if tch::Cuda::device_count() == 0 {
        let out = speed(&["--only", "fixed-prefix", "--device", "cuda"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not available") && err.contains("0 CUDA device"), "{err}");
    }
}

#[test]
fn a_decoder_runs_the_real_run_figures_and_refuses_the_fixed_shape() {
    if !common::decoder_installed("smollm2-135m-instruct") {
        return;
    }
    let out = speed(&["--model", "smollm2-135m-instruct", "--only", "fixed-prefix"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("for encoders") && err.contains("sst2-prefix"), "{err}");
    // The training figure is a real run on the decoder (no FLOP model: an encoder's).
    let glue = common::glue_dir();
    let args = ["--model", "smollm2-135m-instruct", "--only", "sst2-subspace", "--epochs", "2"];
    let out = speed(&[&args[..], &["--data-dir", glue.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["what"], "sst2-subspace");
    assert_eq!(v["train_examples"], 32);
    for k in ["samples_per_second", "step_seconds_median", "peak_rss_mb"] {
        assert!(v[k].as_f64().is_some_and(|x| x.is_finite() && x > 0.0), "{k}: {v}");
    }
    assert!(v.get("gflops").is_none(), "no FLOP model for a decoder: {v}");
}
