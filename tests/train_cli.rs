//! End-to-end runs of the `prefix-subspace` binary on real data with the default model:
//! training, determinism, n = 1 ≡ prefix tuning, eval / predict, and bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    out
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "prefix-subspace {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// results.json without the wall-clock fields.
fn numbers(dir: &Path) -> serde_json::Value {
    let mut r = common::results_json(dir);
    for k in ["train_seconds", "train_samples_per_second", "test_seconds"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

fn glue() -> String {
    common::minilm_dir();
    common::glue_dir().to_string_lossy().into_owned()
}

fn quick(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["train", "--task", "polarity", "--quiet", "--out"].iter().map(|s| s.to_string()).collect();
    a.push(out.to_string_lossy().into_owned());
    for s in
        ["--set", "max_steps=6", "--set", "test_limit=120", "--set", "dev_samples=4", "--set", "ensemble_samples=4"]
    {
        a.push(s.into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn sst2_16_shot_beats_chance_and_writes_the_run_directory() {
    let data = glue();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sst2");
    let stdout = ok(&[
        "train",
        "--task",
        "sst2",
        "--data-dir",
        &data,
        "--shots",
        "16",
        "--split-seed",
        "13",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    println!("{stdout}");
    for f in ["config.toml", "split.json", "metrics.jsonl", "checkpoint.safetensors", "results.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r = common::results_json(&out);
    for k in ["task", "method", "vertices", "split_seed", "seed", "train_seconds", "train_samples_per_second", "test"] {
        assert!(r.get(k).is_some(), "results.json lacks {k}");
    }
    assert_eq!(r["task"], "sst2");
    assert_eq!(r["method"], "subspace");
    assert_eq!(r["vertices"], 3);
    let t = &r["test"];
    for at in ["centroid", "ensemble", "vertex0", "vertex1", "vertex2"] {
        assert!(t[at]["accuracy"].is_f64(), "test.{at}.accuracy missing");
    }
    let acc = t["centroid"]["accuracy"].as_f64().unwrap();
    println!("SST-2 K=16 split 13 centroid accuracy {acc:.4}");
    assert!(acc > 0.6, "SST-2 centroid accuracy {acc} is not clearly above chance");
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    assert_eq!(split["train_ids"].as_array().unwrap().len(), 32);
    assert_eq!(split["dev_ids"].as_array().unwrap().len(), 32);
    assert!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().contains("\"kind\":\"eval\""));
}

#[test]
fn rte_16_shot_run_completes() {
    let data = glue();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rte");
    ok(&[
        "train",
        "--task",
        "rte",
        "--data-dir",
        &data,
        "--split-seed",
        "13",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "max_steps=40",
    ]);
    let acc = common::results_json(&out)["test"]["centroid"]["accuracy"].as_f64().unwrap();
    println!("RTE K=16 split 13 (40 steps) centroid accuracy {acc:.4}");
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn same_seeds_give_identical_results() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&quick(&a, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    ok(&quick(&b, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(numbers(&a), numbers(&b));
    let c = tmp.path().join("c");
    ok(&quick(&c, &["--seed", "2"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(numbers(&a)["test"], numbers(&c)["test"], "a different seed changed nothing");
}

#[test]
fn one_vertex_is_exactly_prefix_tuning() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("prefix"), tmp.path().join("n1"));
    ok(&quick(&a, &["--method", "prefix"]).iter().map(String::as_str).collect::<Vec<_>>());
    ok(&quick(&b, &["--method", "subspace", "--vertices", "1"]).iter().map(String::as_str).collect::<Vec<_>>());
    let (mut ra, mut rb) = (numbers(&a), numbers(&b));
    assert_eq!(ra["vertices"], 1);
    ra.as_object_mut().unwrap().remove("method");
    rb.as_object_mut().unwrap().remove("method");
    assert_eq!(ra, rb);
}

#[test]
fn eval_and_predict_read_a_run_directory() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    ok(&quick(&run_dir, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    let r = common::results_json(&run_dir);
    let rd = run_dir.to_str().unwrap();
    let dev: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--run", rd, "--split", "dev", "--at", "vertex:1"])).unwrap();
    assert!(dev["dev"]["accuracy"].is_f64());
    // The centroid on test reproduces results.json.
    let test: serde_json::Value = serde_json::from_str(&ok(&["eval", "--run", rd, "--at", "centroid"])).unwrap();
    assert_eq!(test["test"]["accuracy"], r["test"]["centroid"]["accuracy"]);
    let sweep: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--run", rd, "--split", "dev", "--at", "sweep:0.25"])).unwrap();
    assert_eq!(sweep["dev"].as_array().unwrap().len(), 5);
    let alpha = ok(&["eval", "--run", rd, "--at", "alpha:1,0,0"]);
    let vertex = ok(&["eval", "--run", rd, "--at", "vertex:0"]);
    assert_eq!(alpha, vertex);
    let err = run(&["eval", "--run", rd, "--at", "vertex:7"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("3 vertices"));
    let err = run(&["eval", "--run", rd, "--at", "middle"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("sweep:STEP or all"), "eval's own forms are listed");

    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "a gorgeous, moving film\n{\"text\": \"a dull, lifeless mess\"}\n").unwrap();
    let out = ok(&["predict", "--run", rd, "--input", input.to_str().unwrap()]);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let p = row["probabilities"].as_object().unwrap();
        let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        assert!(["negative", "positive"].contains(&row["label"].as_str().unwrap()));
    }

    // --precision: the run's own (fp32) changes nothing; bf16 products move the
    // probabilities a little, and say so on stderr; anything else is one clear error.
    let inp = input.to_str().unwrap();
    assert_eq!(ok(&["eval", "--run", rd, "--at", "centroid", "--precision", "fp32"]), ok(&["eval", "--run", rd]));
    assert_eq!(ok(&["predict", "--run", rd, "--input", inp, "--precision", "fp32"]), out);
    let bf16 = run(&["predict", "--run", rd, "--input", inp, "--precision", "bf16"]);
    assert!(bf16.status.success(), "{}", String::from_utf8_lossy(&bf16.stderr));
    assert!(String::from_utf8_lossy(&bf16.stderr).contains("trained in fp32"));
    let bf16_rows: Vec<serde_json::Value> =
        String::from_utf8(bf16.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let prob = |row: &serde_json::Value| row["probabilities"]["positive"].as_f64().unwrap();
    let moved = rows.iter().zip(&bf16_rows).map(|(a, b)| (prob(a) - prob(b)).abs()).fold(0.0, f64::max);
    assert!(moved > 0.0 && moved < 0.05, "bf16 moved a probability by {moved}");
    let bf16_test: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--run", rd, "--precision", "bf16"])).unwrap();
    assert!(bf16_test["test"]["accuracy"].is_f64());
    let err = run(&["eval", "--run", rd, "--precision", "fp8"]);
    assert!(!err.status.success());
    let err = String::from_utf8_lossy(&err.stderr).into_owned();
    assert!(err.contains("--precision fp8") && err.contains("fp32 or bf16"), "{err}");
}

/// The n = 2 figure's numbers are the run's own: its test ensemble line is results.json's
/// ensemble (the same draws as `eval --at ensemble:M`), its centroid marker the centroid, and
/// its end points the vertices, whether or not the step lands on the centroid.
#[test]
fn the_simplex_line_shows_the_runs_own_scores() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    ok(&quick(&run_dir, &["--vertices", "2"]).iter().map(String::as_str).collect::<Vec<_>>());
    let r = common::results_json(&run_dir);
    let rd = run_dir.to_str().unwrap();
    let eval = |at: &str, split: &str| -> f64 {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["eval", "--run", rd, "--split", split, "--at", at])).unwrap();
        v[split]["accuracy"].as_f64().unwrap()
    };
    let _rng = common::torch_rng_lock();
    let (session, _vs, subspace) = prefix_subspace::rundir::open_run(&run_dir, None, None).unwrap();
    let line = prefix_subspace::figures::simplex_line(&session, &subspace, 0.5).unwrap();
    let names: Vec<&str> = line.series.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dev", "test"]);
    assert_eq!(line.hlines[1], ("test ensemble of 4".to_string(), r["test"]["ensemble"]["accuracy"].as_f64().unwrap()));
    assert_eq!(line.hlines[0].1, eval("ensemble:4", "dev"));
    assert_eq!(line.markers[1].2, r["test"]["centroid"]["accuracy"].as_f64().unwrap());
    for (split, (_, pts)) in ["dev", "test"].iter().zip(&line.series) {
        let t: Vec<f64> = pts.iter().map(|p| p.0).collect();
        assert_eq!(t, [0.0, 0.5, 1.0]);
        assert_eq!(pts[0].1, eval("vertex:0", split));
        assert_eq!(pts[2].1, eval("vertex:1", split));
    }
    // A step that does not land on t = 0.5 scores the centroid on its own: the same marker.
    let thirds = prefix_subspace::figures::simplex_line(&session, &subspace, 1.0 / 3.0).unwrap();
    assert_eq!(thirds.series[1].1.iter().map(|p| p.0).filter(|&t| t == 0.5).count(), 0);
    assert_eq!(thirds.markers, line.markers);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A valid user-task file: 12 sentences, 6 per class.
fn good_train_file(dir: &Path) -> PathBuf {
    let text: String = std::iter::once("text\tlabel\n".to_string())
        .chain((0..12).map(|i| format!("sentence number {i}\t{}\n", if i % 2 == 0 { "pos" } else { "neg" })))
        .collect();
    write(dir, "train.tsv", &text)
}

/// Runs a user-task training that must fail; returns stderr and checks nothing was written.
fn fails(tmp: &Path, sets: &[String]) -> String {
    let out_dir = tmp.join("run-that-must-not-exist");
    let mut args: Vec<String> = ["train", "--task", "user", "--quiet", "--out"].iter().map(|s| s.to_string()).collect();
    args.push(out_dir.to_string_lossy().into_owned());
    for s in std::iter::once(&"shots=2".to_string()).chain(sets) {
        args.push("--set".into());
        args.push(s.clone());
    }
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success(), "expected a failure");
    assert!(!out_dir.exists(), "a run directory was left behind");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "expected one error line, got:\n{err}");
    err
}

#[test]
fn bad_inputs_give_one_clear_error_and_write_nothing() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let train = good_train_file(t);
    let f = |p: &Path| format!("train_file={}", p.display());

    let err = fails(t, &[f(&train), "label_column=gold".into()]);
    assert!(err.contains("train.tsv") && err.contains("gold"), "missing column: {err}");

    let test = write(t, "test.tsv", "text\tlabel\nfine\tpos\nodd one\tmaybe\n");
    let err = fails(t, &[f(&train), format!("test_file={}", test.display())]);
    assert!(err.contains("test.tsv:3") && err.contains("maybe"), "unknown label: {err}");

    let err = fails(t, &[f(&train), "shots=4".into()]);
    assert!(err.contains("train.tsv") && (err.contains("neg") || err.contains("pos")), "K too large: {err}");

    let empty = write(t, "empty.tsv", "");
    let err = fails(t, &[f(&empty)]);
    assert!(err.contains("empty.tsv") && err.contains("empty"), "empty file: {err}");

    let short = write(t, "short.tsv", "text\tlabel\nonly one column here\n");
    let err = fails(t, &[f(&short)]);
    assert!(err.contains("short.tsv:2"), "wrong column count: {err}");

    let missing = t.join("nope.tsv");
    let err = fails(t, &[f(&missing)]);
    assert!(err.contains("nope.tsv"), "missing file: {err}");

    let out = run(&["train", "--task", "sst-7", "--out", t.join("x").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sst-7"));
    assert!(!t.join("x").exists());
}

#[test]
fn an_existing_run_directory_is_refused_without_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("results.json"), "{}").unwrap();
    let out = run(&["train", "--task", "polarity", "--out", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read_to_string(tmp.path().join("results.json")).unwrap(), "{}");
}

#[test]
fn more_bad_inputs_name_what_is_wrong() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let train = good_train_file(t);
    let f = |p: &Path| format!("train_file={}", p.display());

    let mut bytes = b"text\tlabel\nfine\tpos\n".to_vec();
    bytes.extend_from_slice(b"bad \xff\xfe bytes\tneg\n");
    std::fs::write(t.join("latin.tsv"), bytes).unwrap();
    let err = fails(t, &[f(&t.join("latin.tsv"))]);
    assert!(err.contains("latin.tsv:3") && err.contains("UTF-8"), "non-UTF-8: {err}");

    let blank = write(t, "blank.tsv", "text\tlabel\nfine\tpos\n  \tneg\n");
    let err = fails(t, &[f(&blank)]);
    assert!(err.contains("blank.tsv:3") && err.contains("empty"), "empty text: {err}");

    let no_weights = t.join("model");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::copy(common::minilm_dir().join("config.json"), no_weights.join("config.json")).unwrap();
    let err = fails(t, &[f(&train), format!("model={}", no_weights.display())]);
    assert!(err.contains("model.safetensors"), "no weights: {err}");

    // An output directory that cannot be created.
    let blocker = write(t, "a-file", "");
    let out = run(&[
        "train",
        "--task",
        "user",
        "--quiet",
        "--set",
        &f(&train),
        "--set",
        "shots=2",
        "--out",
        blocker.join("run").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a-file/run"), "unwritable output: {err}");
}

#[test]
fn a_diverging_loss_stops_training_and_names_the_step() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    // A regression task whose top score bucket holds labels of 3e19: the squared error of an
    // example of that bucket overflows to inf, while the others train normally. With one
    // example per step and a dev evaluation after each, the first seven steps (seed 3) see
    // ordinary examples and save checkpoints; the first huge label, at step 8, diverges.
    let text: String = std::iter::once("text\tlabel\n".to_string())
        .chain((0..100).map(|i| format!("sentence number {i}\t{}\n", ["0.5", "1.5", "2.5", "3.5", "3e19"][i % 5])))
        .collect();
    let data = write(tmp.path(), "scores.tsv", &text);
    let out_dir = tmp.path().join("run");
    let out = run(&[
        "train",
        "--task",
        "user",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
        "--set",
        &format!("train_file={}", data.display()),
        "--seed",
        "3",
        "--set",
        "regression=true",
        "--set",
        "shots=4",
        "--set",
        "batch_size=1",
        "--set",
        "max_steps=30",
        "--set",
        "eval_every=1",
        "--set",
        "test_limit=20",
    ]);
    assert!(!out.status.success(), "training on labels of 3e19 did not stop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("diverged") && err.contains("step"), "{err}");
    assert!(err.contains("at step 8") && err.contains("the best checkpoint so far"), "{err}");
    assert!(out_dir.join("checkpoint.safetensors").is_file(), "the last good checkpoint is kept");
    assert!(!out_dir.join("results.json").exists());
}

#[test]
fn a_model_can_be_named_by_its_folder_in_the_cache() {
    common::minilm_dir();
    let by_name = ok(&["embed", "--model", "all-MiniLM-L6-v2", "a man is playing a guitar"]);
    let default = ok(&["embed", "a man is playing a guitar"]);
    assert_eq!(by_name, default);
    let out = run(&["embed", "--model", "no-such-model", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no-such-model"));
}

#[test]
fn embed_writes_one_line_per_input_line_or_refuses_the_input() {
    // An empty line was skipped, so output line i no longer answered input line i.
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("texts.txt");
    std::fs::write(&file, "a man is playing a guitar\r\nsomeone plays an instrument\n").unwrap();
    assert_eq!(ok(&["embed", "--input", file.to_str().unwrap()]).lines().count(), 2);
    let cases: [(&[u8], &str); 3] =
        [(b"a\n\nb\n", ":2: empty line"), (b"a\n \n", ":2: empty line"), (b"a\xff\n", ":1: not valid UTF-8")];
    for (text, what) in cases {
        std::fs::write(&file, text).unwrap();
        let out = run(&["embed", "--input", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
        assert!(err.contains(&format!("{}{what}", file.display())), "{err}");
    }
    let out = run(&["embed", "--input", tmp.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("a folder; expected a text file"), "{err}");
    // TEXT arguments and --input together: refused (the texts were silently ignored).
    let out = run(&["embed", "--input", file.to_str().unwrap(), "a text"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot be used with"), "{err}");
}

#[test]
fn embed_in_bf16_stays_close_to_fp32() {
    common::minilm_dir();
    let text = "a man is playing a guitar";
    let vec = |s: &str| -> Vec<f64> { serde_json::from_str(s.trim()).unwrap() };
    let fp32 = ok(&["embed", "--normalize", text]);
    assert_eq!(ok(&["embed", "--normalize", "--precision", "fp32", text]), fp32);
    let (a, b) = (vec(&fp32), vec(&ok(&["embed", "--normalize", "--precision", "bf16", text])));
    let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(a != b && cos > 0.999, "bf16 embedding: cosine {cos} to fp32");
    let out = run(&["embed", "--precision", "fp16", text]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("expected fp32 or bf16"));
}
