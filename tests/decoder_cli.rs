//! End-to-end runs of the binary with the decoder LLM SmolLM2-135M-Instruct (GGUF) on real
//! SST-2 / RTE data: every method trains (or not) and its run directory evaluates back to the
//! same test numbers; the same seeds give the same numbers; prefix tuning is the subspace with
//! one vertex; STS-B is read through two label words; bf16 products stay close to fp32; bad
//! prompt settings are one-line errors that leave nothing behind; in-context learning keeps
//! within the model's context; a GGUF file loads by its magic whatever its name; a user's own
//! single-sentence and pair tasks run with their class names as the words, record that prompt
//! and are read back through it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const MODEL: &str = "smollm2-135m-instruct";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

/// Whether the model is installed (scripts/setup.sh installs it; CI runs that first).
fn installed() -> bool {
    common::decoder_installed(MODEL)
}

fn train(task: &str, method: &str, out: &Path, extra: &[&str]) -> Output {
    train_model(MODEL.as_ref(), task, method, out, extra)
}

/// [`train`] with `--model model`.
fn train_model(model: &Path, task: &str, method: &str, out: &Path, extra: &[&str]) -> Output {
    let glue = common::glue_dir();
    let mut c = bin();
    c.args(["train", "--task", task, "--method", method, "--quiet", "--model"])
        .arg(model)
        .args(["--data-dir", glue.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--set", "max_steps=3", "--set", "eval_every=3", "--set", "test_limit=24", "--set", "threads=2"])
        .args(["--set", "dev_samples=2", "--set", "ensemble_samples=2", "--set", "max_len=64"]);
    for e in extra {
        c.args(["--set", e]);
    }
    c.output().unwrap()
}

fn results(dir: &Path) -> serde_json::Value {
    let mut r = common::results_json(dir);
    for k in ["train_seconds", "train_samples_per_second", "test_seconds"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

#[test]
fn every_decoder_method_runs_and_evaluates_back() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for method in ["subspace", "prefix", "lora", "prompt", "head", "zero-shot", "icl"] {
        let out = tmp.path().join(method);
        let extra: &[&str] = if method == "icl" { &["icl_shots=1"] } else { &[] };
        let o = train("sst2", method, &out, extra);
        assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
        let r = results(&out);
        assert_eq!(r["method"], method);
        let acc = r["test"]["centroid"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{method}: accuracy {acc}");
        let e = bin().args(["eval", "--run", out.to_str().unwrap()]).output().unwrap();
        assert!(e.status.success(), "{method} eval: {}", String::from_utf8_lossy(&e.stderr));
        let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(
            v["test"]["accuracy"], r["test"]["centroid"]["accuracy"],
            "{method}: eval differs from training's test"
        );
    }
    // Zero-shot with the instruction template is far above chance on SST-2 (0.735 on a
    // 200-example sample; here 24 examples, stratified).
    let z = results(&tmp.path().join("zero-shot"));
    assert!(z["test"]["centroid"]["accuracy"].as_f64().unwrap() >= 0.6, "zero-shot: {z}");
}

#[test]
fn same_seeds_same_numbers_and_one_vertex_is_prefix_tuning() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    for (dir, method, extra) in
        [(&a, "subspace", "vertices=1"), (&b, "subspace", "vertices=1"), (&c, "prefix", "beta=0.5")]
    {
        let o = train("rte", method, dir, &[extra]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(results(&a), results(&b), "same config, same seeds: same numbers");
    let (ra, mut rc) = (results(&a), results(&c));
    rc["method"] = ra["method"].clone();
    assert_eq!(ra["test"], rc["test"], "subspace with one vertex = prefix tuning");
    let ca = std::fs::read(a.join("checkpoint.safetensors")).unwrap();
    let cc = std::fs::read(c.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ca, cc, "the same trained prefix");
}

#[test]
fn stsb_scores_lie_between_the_two_poles() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sts");
    let o = train("stsb", "subspace", &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = results(&out);
    for point in ["centroid", "ensemble"] {
        let p = r["test"][point]["pearson"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&p), "{point}: pearson {p}");
    }
    let e = bin().args(["eval", "--run", out.to_str().unwrap()]).output().unwrap();
    assert!(e.status.success(), "eval: {}", String::from_utf8_lossy(&e.stderr));
    let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["test"]["pearson"], r["test"]["centroid"]["pearson"], "eval differs from training's test");
    // predict gives a score on STS-B's scale, from the words' two probabilities.
    let input = tmp.path().join("pairs.txt");
    std::fs::write(&input, "A man is playing a guitar.\tA man plays the guitar.\nA dog runs.\tThe stock fell.\n")
        .unwrap();
    let p =
        bin().args(["predict", "--run", out.to_str().unwrap(), "--input", input.to_str().unwrap()]).output().unwrap();
    assert!(p.status.success(), "predict: {}", String::from_utf8_lossy(&p.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&p.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let s = row["score"].as_f64().unwrap_or_else(|| panic!("no score: {row}"));
        assert!((0.0..=5.0).contains(&s), "score {s} outside STS-B's [0, 5]");
    }
}

#[test]
fn bf16_products_train_and_evaluate_close_to_fp32() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prefix-bf16");
    let o = train("sst2", "prefix", &out, &["precision=bf16", "test_limit=64"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bf16 = results(&out)["test"]["centroid"]["accuracy"].as_f64().unwrap();
    let e = bin().args(["eval", "--run", out.to_str().unwrap(), "--precision", "fp32"]).output().unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let fp32: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    let fp32 = fp32["test"]["accuracy"].as_f64().unwrap();
    // Rounding the products' inputs to bf16 moves a few of the 64 sentences at most.
    assert!((bf16 - fp32).abs() <= 4.0 / 64.0 + 1e-9, "bf16 {bf16} against fp32 {fp32}");
    let e = bin().args(["eval", "--run", out.to_str().unwrap()]).output().unwrap();
    let again: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(again["test"]["accuracy"].as_f64().unwrap(), bf16, "the run's own precision is bf16");
}

#[test]
fn bad_prompt_settings_are_one_line_errors_and_leave_nothing() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("sst2", "zero-shot", &["template=no slot here"], "{s}"),
        ("rte", "zero-shot", &["template={s} Answer:"], "{s1}"),
        ("sst2", "zero-shot", &["label_words=[\" bad\"]"], "one word per class"),
        ("sst2", "zero-shot", &["label_words=[\" good\", \" good\"]"], "same token"),
        ("sst2", "bitfit", &[], "no bias"),
        ("stsb", "zero-shot", &["label_words=[\" No\", \" Maybe\", \" Yes\"]"], "two words"),
        ("sst2", "prefix", &["calibrate=true"], "calibrate"),
        ("sst2", "icl", &["icl_shots=17"], "at most 16 examples of a class"),
        ("sst2", "icl", &["icl_shots=16", "max_len=8100"], "context of 8192 tokens"),
    ];
    for (i, (task, method, extra, needle)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("case{i}"));
        let o = train(task, method, &out, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.lines().filter(|l| !l.starts_with("note:")).collect::<Vec<_>>();
        assert_eq!(o.status.code(), Some(2), "case {i} ({extra:?}): {err}");
        assert_eq!(last.len(), 1, "case {i}: one line expected: {err}");
        assert!(last[0].contains(needle), "case {i}: {err} should mention {needle}");
        assert!(!out.exists(), "case {i}: a run directory was left");
    }
    // An encoder refuses the decoder-only methods.
    let o = bin()
        .args(["train", "--task", "polarity", "--method", "zero-shot", "--quiet", "--out"])
        .arg(tmp.path().join("enc"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("decoder"));
}

/// In-context learning's dev choice of the number of demonstrations stops at the first count
/// whose demonstrations and an input of `max_len` tokens would pass the model's context
/// (8,192 tokens): here one per class fits, two do not.
#[test]
fn icl_tries_only_the_demonstration_counts_that_fit_the_context() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("icl");
    let o = bin()
        .args(["train", "--task", "sst2", "--method", "icl", "--model", MODEL, "--data-dir"])
        .arg(common::glue_dir())
        .args(["--set", "max_len=8120", "--set", "test_limit=24", "--set", "threads=2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{said}");
    assert!(said.contains("icl: 1 demonstrations per class, chosen on dev"), "{said}");
    assert!(said.contains("2: over the model's context)"), "{said}");
}

/// A `--model` that names nothing says what `--model` takes and which names are installed;
/// `embed` (an encoder's sentence embeddings) given a decoder says that, not "no config.json".
#[test]
fn a_wrong_model_argument_says_what_is_expected() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = bin()
        .args(["train", "--task", "sst2", "--model", "smollm2-135m-instruk.gguf", "--quiet", "--out"])
        .arg(&out)
        .args(["--data-dir", common::glue_dir().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("smollm2-135m-instruk.gguf: model not found; --model takes a .gguf file"), "{err}");
    assert!(err.contains(MODEL), "the installed names: {err}");
    assert!(!out.exists(), "a run directory was left");
    let o = bin().args(["embed", "--model", MODEL, "a sentence"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("a decoder LLM; embed computes sentence embeddings with an encoder"), "{err}");
}

/// A GGUF file is recognised by its magic, not only by its extension: an Ollama blob
/// (`blobs/sha256-…`, no extension) runs as the model by its name does; any other single file is
/// refused with one line naming it, and nothing is written.
#[test]
fn a_gguf_file_without_its_extension_loads_and_any_other_file_is_refused() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let gguf = prefix_subspace::paths::home().join("models").join(MODEL).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let blob = tmp.path().join("sha256-b179c9523d0e6a0f");
    std::os::unix::fs::symlink(&gguf, &blob).unwrap();
    let (by_name, by_blob) = (tmp.path().join("by-name"), tmp.path().join("by-blob"));
    let o = train("sst2", "zero-shot", &by_name, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train_model(&blob, "sst2", "zero-shot", &by_blob, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(results(&by_blob)["test"], results(&by_name)["test"]);

    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "not a model\n").unwrap();
    let out = tmp.path().join("run");
    let o = train_model(&notes, "sst2", "zero-shot", &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}: a file that is not GGUF", notes.display())), "{err}");
    assert!(!out.exists(), "a run directory was left");
}

/// Beside its scores, a run records what always answering the test set's majority class
/// scores in each metric: on MRPC (two-thirds paraphrases), F1 2p / (1 + p), far above that
/// answer's accuracy p.
#[test]
fn a_run_records_the_majority_answers_scores_in_its_metrics() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mrpc");
    let o = train("mrpc", "zero-shot", &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = results(&out);
    let p = r["majority"]["test"].as_f64().unwrap();
    let m = &r["majority_scores"]["test"];
    assert!(p > 0.6, "{r}");
    assert_eq!(m["accuracy"].as_f64().unwrap(), p, "{r}");
    assert!((m["f1"].as_f64().unwrap() - 2.0 * p / (1.0 + p)).abs() < 1e-12, "{r}");
}

/// A user's own task runs on the decoder with its class names as the label words: a
/// single-sentence one and a pair one (which gets a template with both texts; it used to get
/// the single-sentence template and refuse it), made from real SST-2 and RTE train rows, and
/// `predict` answers with the class names.
#[test]
fn a_users_single_sentence_and_pair_tasks_run_with_the_default_prompt() {
    if !installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let glue = common::glue_dir();
    let rows = |task: &str| -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(glue.join(task).join("train.tsv")).unwrap();
        text.lines().skip(1).take(120).map(|l| l.split('\t').map(str::to_string).collect()).collect()
    };
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let single: String = std::iter::once("text,sentiment".to_string())
        .chain(
            rows("SST-2")
                .iter()
                .map(|r| format!("{},{}", quote(&r[0]), ["negative", "positive"][usize::from(r[1] == "1")])),
        )
        .map(|l| l + "\n")
        .collect();
    let pair: String = std::iter::once("premise,hypothesis,label".to_string())
        .chain(rows("RTE").iter().map(|r| format!("{},{},{}", quote(&r[1]), quote(&r[2]), r[3])))
        .map(|l| l + "\n")
        .collect();
    std::fs::write(tmp.path().join("single.csv"), single).unwrap();
    std::fs::write(tmp.path().join("pair.csv"), pair).unwrap();
    for (file, cols, input, names) in [
        (
            "single.csv",
            vec!["text_a=text", "label_column=sentiment"],
            "a gorgeous, moving film\n",
            ["negative", "positive"],
        ),
        (
            "pair.csv",
            vec!["text_a=premise", "text_b=hypothesis", "label_column=label"],
            "A man is playing a guitar.\tA man plays music.\n",
            ["entailment", "not_entailment"],
        ),
    ] {
        let out = tmp.path().join(file.trim_end_matches(".csv"));
        let mut extra = vec![format!("train_file={}", tmp.path().join(file).display()), "task_name=mine".into()];
        extra.extend(cols.iter().map(|c| c.to_string()));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = train("user", "zero-shot", &out, &extra);
        assert!(o.status.success(), "{file}: {}", String::from_utf8_lossy(&o.stderr));
        let r = results(&out);
        assert!(r["test"]["centroid"]["accuracy"].as_f64().is_some(), "{file}");
        // The run says and records the prompt it used: the class names are the words.
        let template = if file == "pair.csv" { "{s1} ? {s2} Answer:" } else { "{s}\nAnswer:" };
        let words: Vec<String> = names.iter().map(|n| format!(" {n}")).collect();
        assert_eq!(r["prompt"], serde_json::json!({"template": template, "label_words": words}), "{file}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(&format!("note: prompt: template = {template:?}")), "{file}: {stderr}");
        let predict = || {
            let mut p = bin()
                .args(["predict", "--run", out.to_str().unwrap()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            p.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            let o = p.wait_with_output().unwrap();
            assert!(o.status.success(), "{file}");
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
        };
        let row = predict();
        assert!(names.contains(&row["label"].as_str().unwrap()), "{file}: {row}");
        let probs = row["probabilities"].as_object().unwrap();
        assert_eq!(probs.keys().map(String::as_str).collect::<Vec<_>>(), names.to_vec(), "{file}: {row}");
        // The run is read back through its recorded prompt: with the words swapped in
        // results.json, the two classes' probabilities swap.
        let path = out.join("results.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["prompt"]["label_words"] = serde_json::json!([words[1], words[0]]);
        std::fs::write(&path, v.to_string()).unwrap();
        let swapped = predict();
        let p = |row: &serde_json::Value, name: &str| row["probabilities"][name].as_f64().unwrap();
        assert!((p(&swapped, names[0]) - p(&row, names[1])).abs() < 1e-6, "{file}: {row} then {swapped}");
    }
}
