//! `prefix-subspace predict` on untrusted input: one output row per input line, bad lines as
//! error rows (or, with --strict, one `FILE:LINE:` error and nothing written), ids carried,
//! and single-text / pair tasks refusing the other kind of input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn train(out: &Path, args: &[&str]) {
    let o = bin().arg("train").args(args).arg("--quiet").arg("--out").arg(out).output().expect("binary runs");
    assert!(o.status.success(), "train failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// A tiny polarity run (a single-sentence task), trained once for all tests.
fn polarity_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        common::minilm_dir();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("polarity");
        let sets = ["max_steps=6", "test_limit=120", "dev_samples=4", "ensemble_samples=4"];
        let mut args = vec!["--task", "polarity"];
        sets.iter().for_each(|s| args.extend(["--set", s]));
        train(&dir, &args);
        (tmp, dir)
    })
    .1
}

/// A tiny RTE run (a pair task).
fn rte_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        common::minilm_dir();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rte");
        let glue = common::glue_dir();
        train(
            &dir,
            &["--task", "rte", "--data-dir", glue.to_str().unwrap(), "--set", "max_steps=2", "--set", "test_limit=40"],
        );
        (tmp, dir)
    })
    .1
}

/// Runs predict on `input` (bytes); returns the output rows, stderr and the exit status.
fn predict(run_dir: &Path, input: &[u8], extra: &[&str]) -> (Vec<serde_json::Value>, String, Output) {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.txt");
    std::fs::write(&inp, input).unwrap();
    let mut args = vec!["predict", "--run", run_dir.to_str().unwrap(), "--input", inp.to_str().unwrap()];
    args.extend(extra);
    let out = run(&args);
    let stdout = String::from_utf8(out.stdout.clone()).expect("the output is UTF-8");
    let rows = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    (rows, String::from_utf8_lossy(&out.stderr).into_owned(), out)
}

fn is_prediction(row: &serde_json::Value) -> bool {
    row.get("error").is_none() && ["negative", "positive"].contains(&row["label"].as_str().unwrap_or(""))
}

fn error(row: &serde_json::Value) -> &str {
    row["error"].as_str().unwrap_or_else(|| panic!("expected an error row, got {row}"))
}

#[test]
fn a_run_without_its_weights_says_why_and_how_to_get_them() {
    // A finished run whose checkpoint is gone (as a bench cell kept in git): named as finished,
    // with the command that trains it again; an unfinished one as stopped before any weights.
    let tmp = tempfile::tempdir().unwrap();
    let cell = tmp.path().join("cell");
    std::fs::create_dir(&cell).unwrap();
    for f in ["config.toml", "split.json", "results.json"] {
        std::fs::copy(polarity_run().join(f), cell.join(f)).unwrap();
    }
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, "a fine film\n").unwrap();
    let config = cell.join("config.toml");
    for args in [vec!["eval", "--run"], vec!["predict", "--input", input.to_str().unwrap(), "--run"]] {
        let out = bin().args(&args).arg(&cell).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("the run finished, but its weights"), "{args:?}: {err}");
        assert!(err.contains(&format!("train --config {}", config.display())), "{args:?}: {err}");
    }
    std::fs::remove_file(cell.join("results.json")).unwrap();
    let err = String::from_utf8(bin().args(["eval", "--run"]).arg(&cell).output().unwrap().stderr).unwrap();
    assert!(err.contains("stopped before its first dev evaluation"), "{err}");
}

#[test]
fn every_input_line_gets_its_row_in_order() {
    // Line 2 is blank, line 4 is whitespace, line 5 has a CRLF ending, the last has no newline.
    let input = b"a gorgeous, moving film\n\na dull, lifeless mess\n   \nwarm and funny\r\nflat";
    let (rows, stderr, out) = predict(polarity_run(), input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows.len(), 6, "one row per input line");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["line"], i + 1, "{row}");
    }
    assert_eq!(error(&rows[1]), "empty line");
    assert_eq!(error(&rows[3]), "empty line");
    for i in [0, 2, 4, 5] {
        assert!(is_prediction(&rows[i]), "{}", rows[i]);
        let sum: f64 = rows[i]["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
    // One line on stderr counts the error rows.
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(notes[0].contains("2 of 6"), "{stderr}");

    // The good rows predict what they predict alone: the same label, and probabilities equal
    // up to float rounding (a batch of 4 and a batch of 1 go through matrix products of other
    // shapes, which some CPUs' BLAS kernels sum in another order).
    let (alone, _, _) = predict(polarity_run(), b"a dull, lifeless mess\n", &[]);
    assert_eq!(alone[0]["label"], rows[2]["label"]);
    for (class, p) in alone[0]["probabilities"].as_object().unwrap() {
        let q = rows[2]["probabilities"][class].as_f64().unwrap();
        assert!((p.as_f64().unwrap() - q).abs() < 1e-6, "{class}: {p} alone, {q} in the batch");
    }
}

#[test]
fn a_pair_on_a_single_sentence_task_is_an_error_row() {
    let input = b"fine\ta second text\n{\"text_a\": \"fine\", \"text_b\": \"another\"}\nfine\n";
    let (rows, stderr, out) = predict(polarity_run(), input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows.len(), 3);
    let tab = error(&rows[0]);
    assert!(tab.contains("tab") && tab.contains("polarity") && tab.contains("one text"), "{tab}");
    let text_b = error(&rows[1]);
    assert!(text_b.contains("\"text_b\"") && text_b.contains("one text"), "{text_b}");
    assert!(is_prediction(&rows[2]));
}

#[test]
fn an_undecodable_line_is_an_error_row_and_the_rest_is_predicted() {
    let input = b"a gorgeous film\n\xff\xfe caf\xe9\n{\"text\": 3}\n{not json\n{\"id\": 1}\na dull film\n";
    let (rows, stderr, out) = predict(polarity_run(), input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows.len(), 6);
    assert!(is_prediction(&rows[0]) && is_prediction(&rows[5]));
    assert!(error(&rows[1]).contains("UTF-8"), "{}", rows[1]);
    assert!(error(&rows[2]).contains("\"text\""), "{}", rows[2]);
    assert!(error(&rows[3]).contains("invalid JSON"), "{}", rows[3]);
    assert!(error(&rows[4]).contains("\"text_a\""), "{}", rows[4]);
    assert_eq!(rows[4]["id"], 1);
    assert_eq!(rows.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    assert!(stderr.contains("4 of 6"), "{stderr}");
}

#[test]
fn jsonl_ids_are_carried() {
    let input = b"{\"id\": \"r-7\", \"text\": \"a gorgeous film\"}\n{\"id\": 42, \"text\": \"\"}\nno id here\n";
    let (rows, stderr, out) = predict(polarity_run(), input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], "r-7");
    assert!(is_prediction(&rows[0]));
    assert_eq!(rows[1]["id"], 42);
    assert!(error(&rows[1]).contains("empty"));
    assert!(rows[2].get("id").is_none() && is_prediction(&rows[2]));
}

#[test]
fn strict_fails_on_the_first_bad_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.txt");
    let outp = tmp.path().join("out.jsonl");
    let (i, o) = (inp.to_str().unwrap(), outp.to_str().unwrap());
    let rd = polarity_run().to_str().unwrap();
    std::fs::write(&inp, "good text\nstill good\n\nx\ty\n").unwrap();
    let r = run(&["predict", "--run", rd, "--input", i, "--output", o, "--strict"]);
    // The exit status of any bad-input error (the existing error path), never 0.
    let bad_input = run(&["predict", "--run", tmp.path().join("no-such-run").to_str().unwrap()]).status.code();
    assert!(!r.status.success() && r.status.code() == bad_input, "{:?} vs {bad_input:?}", r.status);
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{i}:3: empty line")), "{stderr}");
    assert!(!outp.exists(), "nothing written to --output");
    assert!(r.stdout.is_empty());

    // Without --strict the same input writes a row per line, atomically, and exits 0.
    let r = run(&["predict", "--run", rd, "--input", i, "--output", o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(&outp).unwrap().lines().count(), 4);
    assert!(!tmp.path().join("out.jsonl.tmp").exists());

    // --strict on good input is the plain output.
    std::fs::write(&inp, "good text\nstill good\n").unwrap();
    let strict = run(&["predict", "--run", rd, "--input", i, "--strict"]);
    assert!(strict.status.success(), "{}", String::from_utf8_lossy(&strict.stderr));
    assert_eq!(strict.stdout, run(&["predict", "--run", rd, "--input", i]).stdout);
    assert_eq!(String::from_utf8(strict.stdout).unwrap().lines().count(), 2);
}

#[test]
fn a_pair_task_takes_pairs_only() {
    let input = b"A man is sleeping.\tSomeone sleeps.\nA man is sleeping.\n{\"id\": \"p\", \"text_a\": \"It rains.\", \"text_b\": \"It is wet.\"}\n{\"text\": \"one text\"}\na\tb\tc\n";
    let (rows, stderr, out) = predict(rte_run(), input, &[]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows.len(), 5);
    let pred = |r: &serde_json::Value| {
        r.get("error").is_none() && ["entailment", "not_entailment"].contains(&r["label"].as_str().unwrap_or(""))
    };
    assert!(pred(&rows[0]), "{}", rows[0]);
    assert!(error(&rows[1]).contains("rte") && error(&rows[1]).contains("pair"), "{}", rows[1]);
    assert!(pred(&rows[2]) && rows[2]["id"] == "p", "{}", rows[2]);
    assert!(error(&rows[3]).contains("\"text_b\""), "{}", rows[3]);
    assert!(error(&rows[4]).contains("3 tab-separated"), "{}", rows[4]);
}

/// A run keeps its data paths as `train` was given them: trained with a relative `--data-dir`,
/// it is read from elsewhere only with `--data-dir` (one error naming the key, the config and
/// the remedy otherwise), and gives the same test score as training did.
#[test]
fn a_relative_data_dir_is_named_and_data_dir_overrides_it() {
    common::minilm_dir();
    let glue = common::glue_dir();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("project");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize(&glue).unwrap(), home.join("glue")).unwrap();
    let dir = tmp.path().join("rte-run");
    let o = bin()
        .current_dir(&home)
        .args(["train", "--task", "rte", "--data-dir", "glue", "--quiet", "--out"])
        .arg(&dir)
        .args(["--set", "max_steps=2", "--set", "test_limit=40"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trained = common::results_json(&dir)["test"]["centroid"]["accuracy"].as_f64().unwrap();
    let eval = |cwd: &Path, extra: &[&str]| {
        bin().current_dir(cwd).args(["eval", "--run"]).arg(&dir).args(extra).output().unwrap()
    };
    let o = eval(tmp.path(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("data_dir = \"glue\" in ") && err.contains("config.toml: not found from "), "{err}");
    assert!(err.contains("pass --data-dir DIR"), "{err}");
    for (cwd, extra) in [(&home, vec![]), (&tmp.path().to_path_buf(), vec!["--data-dir", glue.to_str().unwrap()])] {
        let o = eval(cwd, &extra);
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["test"]["accuracy"].as_f64().unwrap(), trained, "{extra:?}");
    }
    // `train --resume` from elsewhere names the path too (it takes no --data-dir: run it from
    // where train ran). Checked before the saved state is read, so an empty one does here.
    let saved = tmp.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::copy(dir.join("config.toml"), saved.join("config.toml")).unwrap();
    std::fs::write(saved.join(prefix_subspace::state::RESUME_FILE), b"").unwrap();
    let o = bin().current_dir(tmp.path()).args(["train", "--quiet", "--resume"]).arg(&saved).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("data_dir = \"glue\" in ") && err.contains("run it from the folder `train` ran in\n"),
        "{err}"
    );
    // --data-dir cannot swap the data: a copy of RTE whose sentences were edited is refused by
    // the run's data hash, before anything is scored.
    let edited = tmp.path().join("edited");
    std::fs::create_dir_all(edited.join("RTE")).unwrap();
    std::fs::copy(glue.join("RTE/dev.tsv"), edited.join("RTE/dev.tsv")).unwrap();
    let train = std::fs::read_to_string(glue.join("RTE/train.tsv")).unwrap();
    let rows: Vec<String> = train
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<&str> = l.split('\t').collect();
            let s = format!("{} (edited)", f[1]);
            if i > 0 {
                f[1] = &s;
            }
            f.join("\t")
        })
        .collect();
    std::fs::write(edited.join("RTE/train.tsv"), rows.join("\n") + "\n").unwrap();
    let o = eval(tmp.path(), &["--data-dir", edited.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("texts or labels of the run's examples changed since training"), "{err}");
    let o = eval(tmp.path(), &["--data-dir", "/nonexistent/glue"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "error: --data-dir /nonexistent/glue: not found");
    // A task that reads no GLUE folder refuses the flag.
    let (rows, err, o) = predict(polarity_run(), b"fine\n", &["--data-dir", glue.to_str().unwrap()]);
    assert!(rows.is_empty() && o.status.code() == Some(2), "{err}");
    assert!(err.contains("the run's task polarity does not read a GLUE folder"), "{err}");
}
