//! The `probe` baseline and the `head` key.
//!
//! - The solver (src/probe.rs) against scikit-learn: `tests/fixtures/probe_reference.json`
//!   (written by scripts/probe_reference.py) holds LogisticRegression and Ridge fits of small
//!   synthetic problems; ours must give the same coefficients, intercepts and probabilities
//!   to 1e-6.
//! - `train --method probe` end to end on the default encoder and on SmolLM2: results.json
//!   carries the chosen C and every C's dev score, and `eval --run` / `predict --run` give its
//!   test numbers exactly (the normalisation of the features is part of the checkpoint).
//! - `head`: `words` is refused on an encoder; `linear` gives a decoder a fresh trained head.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prefix_subspace::config::{HeadKind, RunConfig};
use prefix_subspace::method::probe;
use prefix_subspace::method::{self, Method};
use serde_json::Value;

const DECODER: &str = "smollm2-135m-instruct";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

fn matrix(v: &Value) -> (Vec<f64>, usize) {
    let rows = v.as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    (rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect(), d)
}

fn max_gap(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn the_solver_reproduces_scikit_learn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe_reference.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, d) = matrix(&case["x"]);
        for f in case["fits"].as_array().unwrap() {
            let c = f["C"].as_f64().unwrap();
            let (coef, _) = matrix(&f["coef"]);
            let intercept: Vec<f64> = f["intercept"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let fit = if case["kind"] == "ridge" {
                let y: Vec<f64> = case["y"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                probe::ridge(&x, d, &y, 1.0 / c)
            } else {
                let y: Vec<usize> =
                    case["y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let classes = case["classes"].as_u64().unwrap() as usize;
                let fit = probe::logistic(&x, d, &y, classes, c);
                assert!(fit.converged, "{name} C {c}: {fit:?}");
                assert!(fit.gradient_norm <= probe::GTOL, "{name} C {c}");
                let (xt, _) = matrix(&case["x_test"]);
                let (want, _) = matrix(&f["probabilities"]);
                let got: Vec<f64> = fit.probabilities(&xt, d).into_iter().flatten().collect();
                let gap = max_gap(&got, &want);
                assert!(gap < 1e-6, "{name} C {c}: probabilities differ by {gap}");
                fit
            };
            let ours: Vec<f64> = fit.coef.iter().flatten().copied().collect();
            let (gw, gb) = (max_gap(&ours, &coef), max_gap(&fit.intercept, &intercept));
            println!("{name} C {c}: {} steps, coef within {gw:.1e}, intercept within {gb:.1e}", fit.iterations);
            assert!(gw < 1e-6 && gb < 1e-6, "{name} C {c}: coef differ by {gw}, intercepts by {gb}");
            checked += 1;
        }
    }
    assert_eq!(checked, 10, "every fit of the fixture");
}

fn train(out: &Path, args: &[&str]) -> Output {
    bin().arg("train").args(args).args(["--quiet", "--out"]).arg(out).output().unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A probe run's results.json: the chosen C (the best main dev metric, ties to the smaller C),
/// one line per C in results.json and metrics.jsonl; then `eval --run` (test and dev) and
/// `predict --run` give its numbers exactly.
fn check_probe_run(dir: &Path) {
    let r = common::results_json(dir);
    assert_eq!(r["method"], "probe");
    assert_eq!(r["steps"], 0);
    let p = &r["probe"];
    let per_c = p["per_c"].as_array().unwrap();
    assert_eq!(per_c.len(), probe::CS.len());
    let main = "accuracy";
    let mut best = (f64::NEG_INFINITY, 0.0);
    for (row, c) in per_c.iter().zip(probe::CS) {
        assert_eq!(row["C"].as_f64().unwrap(), c);
        assert!(row["iterations"].as_u64().unwrap() > 0);
        assert_eq!(row["converged"], true, "{row}");
        let v = row["dev"][main].as_f64().unwrap();
        if v > best.0 {
            best = (v, c);
        }
    }
    assert_eq!(p["C"].as_f64().unwrap(), best.1, "{p}");
    assert_eq!(r["dev_selection"][main].as_f64().unwrap(), best.0);
    assert_eq!(p["features"], "l2-normalised, standardised for the fit (folded into the head)");
    let log = common::step_log(dir);
    assert_eq!(log.iter().filter(|v| v["kind"] == "probe").count(), probe::CS.len());
    assert!(log.iter().all(|v| v["kind"] != "step"), "no gradient step");

    // eval: the test numbers of results.json, and the dev numbers of the chosen C.
    for (split, want) in
        [("test", &r["test"]["centroid"]), ("dev", &per_c[probe::CS.iter().position(|&c| c == best.1).unwrap()]["dev"])]
    {
        let e = bin().args(["eval", "--run", dir.to_str().unwrap(), "--split", split]).output().unwrap();
        ok(&e, "eval");
        let v: Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(&v[split], want, "eval --split {split} differs from training's");
    }

    // predict on the test examples: the same accuracy.
    assert_eq!(
        common::predict_accuracy(dir),
        r["test"]["centroid"]["accuracy"].as_f64().unwrap(),
        "predict's accuracy"
    );
}

#[test]
fn probe_on_the_default_encoder_and_back() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("probe");
    ok(&train(&dir, &["--task", "polarity", "--method", "probe", "--set", "test_limit=100"]), "train");
    check_probe_run(&dir);
    let acc = common::results_json(&dir)["test"]["centroid"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.55, "a probe on MiniLM's sentence embeddings is above chance on polarity: {acc}");
    // The same run again: the same numbers, to the bit (a deterministic solver).
    let again = tmp.path().join("again");
    ok(&train(&again, &["--task", "polarity", "--method", "probe", "--set", "test_limit=100"]), "train");
    let strip = |d: &PathBuf| {
        let mut r = common::results_json(d);
        for k in ["train_seconds", "test_seconds", "train_samples_per_second"] {
            r.as_object_mut().unwrap().remove(k);
        }
        r
    };
    assert_eq!(strip(&dir), strip(&again));
    assert_eq!(
        std::fs::read(dir.join("checkpoint.safetensors")).unwrap(),
        std::fs::read(again.join("checkpoint.safetensors")).unwrap()
    );
}

fn decoder_installed() -> bool {
    common::minilm_dir();
    let ok = prefix_subspace::paths::home().join("models").join(DECODER).is_dir();
    if !ok {
        eprintln!("skipped: {DECODER} is not installed (run scripts/setup.sh)");
    }
    ok
}

fn decoder_args<'a>(glue: &'a str, method: &'a str) -> Vec<&'a str> {
    let mut a = vec!["--task", "sst2", "--data-dir", glue, "--model", DECODER, "--method", method];
    for s in ["test_limit=24", "threads=2", "max_len=64"] {
        a.extend(["--set", s]);
    }
    a
}

#[test]
fn probe_on_a_decoder_and_back() {
    if !decoder_installed() {
        return;
    }
    let glue = common::glue_dir().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("probe");
    ok(&train(&dir, &decoder_args(&glue, "probe")), "train");
    check_probe_run(&dir);
    // The head is linear (C rows of the hidden size), not the label words.
    let ckpt = prefix_subspace::model::load::Weights::read(&dir.join("checkpoint.safetensors"), tch::Device::Cpu)
        .unwrap()
        .into_map();
    assert_eq!(ckpt["head.weight"].size(), vec![1, 2, 576]);
    assert_eq!(ckpt["probe.normalize"].double_value(&[0]), 1.0);
}

#[test]
fn head_words_is_for_decoders_and_linear_trains_a_fresh_head_on_one() {
    common::minilm_dir();
    // An encoder refuses label words, naming the key, before anything is written.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = RunConfig { task: "polarity".into(), head: Some(HeadKind::Words), ..Default::default() };
    let e = prefix_subspace::session::Session::open(cfg).err().expect("refused").to_string();
    assert!(e.starts_with("head = \"words\":") && e.contains("encoder") && !e.contains('\n'), "{e}");
    let out = tmp.path().join("enc");
    let o = train(&out, &["--task", "polarity", "--set", "head=words"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("head = \"words\""));
    assert!(!out.exists());
    // Linear is the encoder's head anyway.
    let cfg = RunConfig {
        task: "polarity".into(),
        head: Some(HeadKind::Linear),
        method: method::parse("head").unwrap(),
        ..Default::default()
    };
    assert!(prefix_subspace::session::Session::open(cfg).is_ok());
    assert!(RunConfig::default().apply_overrides(&["head=softmax".into()]).is_err());

    if !decoder_installed() {
        return;
    }
    let glue = common::glue_dir().to_string_lossy().into_owned();
    let decoder = |method: &'static dyn Method, head: Option<HeadKind>| RunConfig {
        task: "sst2".into(),
        data_dir: Some(PathBuf::from(&glue)),
        model: Some(DECODER.into()),
        method,
        head,
        ..Default::default()
    };
    // Defaults: label words for prefix tuning, a linear head for `head` and `probe`.
    for (method, head, words) in [
        (method::parse("prefix").unwrap(), None, true),
        (method::parse("prefix").unwrap(), Some(HeadKind::Linear), false),
        (method::parse("subspace").unwrap(), Some(HeadKind::Linear), false),
        (method::parse("head").unwrap(), None, false),
        (method::parse("probe").unwrap(), None, false),
        (method::parse("zero-shot").unwrap(), None, true),
    ] {
        let mut s = prefix_subspace::session::Session::open(decoder(method, head)).unwrap();
        assert_eq!(s.label_ids().is_some(), words, "{method:?} {head:?}");
        let (vs, sub) = s.new_subspace().unwrap();
        assert_eq!(sub.label_words(), words);
        let heads = vs.variables().get("head.weight").map(|t| t.size());
        match (words, method.name()) {
            (true, _) => assert!(heads.is_none(), "{method:?}: the label words are no variable"),
            // A fresh head per vertex (head_simplex) on the hidden size, trained.
            (false, "subspace") => assert_eq!(heads, Some(vec![3, 2, 576])),
            (false, _) => assert_eq!(heads, Some(vec![1, 2, 576])),
        }
    }
    // Refused: label words for the methods that fit a head, a linear head for those that train nothing.
    for (method, head, needle) in [
        (method::parse("head").unwrap(), HeadKind::Words, "head = \"words\" with method = \"head\""),
        (method::parse("probe").unwrap(), HeadKind::Words, "head = \"words\" with method = \"probe\""),
        (method::parse("zero-shot").unwrap(), HeadKind::Linear, "head = \"linear\" with method = \"zero-shot\""),
        (method::parse("icl").unwrap(), HeadKind::Linear, "head = \"linear\" with method = \"icl\""),
    ] {
        let e =
            prefix_subspace::session::Session::open(decoder(method, Some(head))).err().expect("refused").to_string();
        assert!(e.starts_with(needle), "{e}");
    }
    // `--method head --set head=linear` and prefix tuning with a linear head train and evaluate back.
    for (method, name) in [("head", "head"), ("prefix", "prefix")] {
        let dir = tmp.path().join(name);
        let mut args = decoder_args(&glue, method);
        args.extend(["--set", "head=linear", "--set", "max_steps=3", "--set", "eval_every=3"]);
        ok(&train(&dir, &args), method);
        let r = common::results_json(&dir);
        let e = bin().args(["eval", "--run", dir.to_str().unwrap()]).output().unwrap();
        ok(&e, "eval");
        let v: Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(v["test"], r["test"]["centroid"], "{method}: eval differs from training's test");
        let ckpt = prefix_subspace::model::load::Weights::read(&dir.join("checkpoint.safetensors"), tch::Device::Cpu)
            .unwrap()
            .into_map();
        assert_eq!(ckpt["head.weight"].size(), vec![1, 2, 576], "{method}");
        let log = common::step_log(&dir);
        assert_eq!(log.iter().filter(|v| v["kind"] == "step").count(), 3, "{method}: trained");
    }
}

/// A probe run killed during its test evaluation resumes from its saved state (the fitted
/// head) to the numbers of a run that was never interrupted, `probe` summary included.
#[test]
fn a_probe_killed_during_its_test_evaluation_resumes_to_the_same_numbers() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--task", "polarity", "--method", "probe", "--set", "threads=1", "--set", "test_limit=500"];
    let straight = tmp.path().join("straight");
    ok(&train(&straight, &args), "train");
    let dir = tmp.path().join("killed");
    let mut child = bin()
        .arg("train")
        .args(args)
        .args(["--quiet", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    // The state is saved once, when the fit is done and the test evaluation starts.
    while !dir.join("resume.safetensors").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its test evaluation");
        assert!(t0.elapsed().as_secs() < 600, "no test evaluation");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.join("results.json").exists(), "killed before the end");
    let o = bin().args(["train", "--quiet", "--resume", dir.to_str().unwrap()]).output().unwrap();
    ok(&o, "resume");
    let numbers = |d: &Path| {
        let mut r = common::results_json(d);
        for k in ["train_seconds", "test_seconds", "train_samples_per_second", "resumed"] {
            r.as_object_mut().unwrap().remove(k);
        }
        r
    };
    assert_eq!(numbers(&dir), numbers(&straight));
    assert_eq!(common::results_json(&dir)["resumed"], true);
    assert_eq!(
        std::fs::read(dir.join("checkpoint.safetensors")).unwrap(),
        std::fs::read(straight.join("checkpoint.safetensors")).unwrap()
    );
}
