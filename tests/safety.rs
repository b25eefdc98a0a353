//! Users' files and bad input: `--overwrite` deletes only run directories, a run directory is
//! locked while a process writes it, every config key and every `--at` form has a declared
//! range (bad values are one line on stderr, exit status 2, no run directory left), and the
//! guards against edited configs and data files.
//!
//! The runs use a tiny random BERT (2 layers, hidden 16) with the default model's real
//! tokenizer, and a small user task written here, so a whole training run takes a moment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::Tensor;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

/// A model folder: a tiny random BERT (position table of 64) with the default model's tokenizer.
fn tiny_model(dir: &Path) -> PathBuf {
    let m = dir.join("tiny-model");
    std::fs::create_dir_all(&m).unwrap();
    let src = common::minilm_dir();
    for f in ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 32, "max_position_embeddings": 64,
        "type_vocab_size": 2, "pad_token_id": 0
    });
    std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
    let config: prefix_subspace::model::Config = serde_json::from_value(cfg).unwrap();
    let _g = common::torch_rng_lock();
    tch::manual_seed(7);
    let tensors = common::random_weights(config.bert_parameter_shapes(), 0.1);
    Tensor::write_safetensors(&tensors, m.join("model.safetensors")).unwrap();
    m
}

/// A user task: 60 short reviews, two classes.
fn data_file(dir: &Path) -> PathBuf {
    let p = dir.join("reviews.csv");
    let mut s = String::from("text,label\n");
    for i in 0..60 {
        let (t, l) = if i % 2 == 0 { ("a fine and moving film", "pos") } else { ("a dull and tedious mess", "neg") };
        s.push_str(&format!("{t} number {i},{l}\n"));
    }
    std::fs::write(&p, s).unwrap();
    p
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let model = tiny_model(&root);
    let data = data_file(&root);
    Setup { _tmp: tmp, root, model, data }
}

impl Setup {
    /// `train` arguments for a quick run of the tiny model into `out`.
    fn train_args(&self, out: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec!["train".into(), "--task".into(), "user".into(), "--quiet".into()];
        a.extend(["--model".into(), self.model.to_string_lossy().into_owned()]);
        a.extend(["--out".into(), out.to_string_lossy().into_owned()]);
        for s in [
            format!("train_file={}", self.data.display()),
            "shots=4".into(),
            "max_steps=2".into(),
            "dev_samples=2".into(),
            "ensemble_samples=2".into(),
            "max_len=32".into(),
            "prefix_len=4".into(),
            "threads=1".into(),
        ] {
            a.extend(["--set".into(), s]);
        }
        a
    }

    fn run(&self, args: &[String]) -> Output {
        bin().args(args).output().expect("binary runs")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An error the way users must see it: exit status 2 (bad input), exactly one line on stderr,
/// no panic, no backtrace.
fn assert_one_line_error(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: expected exit status 2, got {:?}; stderr:\n{err}", o.status);
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: stderr is not one line:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{what}: {err}");
    err
}

#[test]
fn overwrite_never_deletes_what_the_tool_did_not_write() {
    let s = setup();
    // --out names a folder of the user's: their data and another folder.
    let user = s.root.join("mine");
    std::fs::create_dir_all(user.join("precious")).unwrap();
    std::fs::write(user.join("precious/keep.txt"), "keep").unwrap();
    std::fs::copy(&s.data, user.join("train.csv")).unwrap();
    let mut args = s.train_args(&user);
    args.push("--overwrite".into());
    let err = assert_one_line_error(&s.run(&args), "--overwrite on a user folder");
    assert!(err.contains("nothing was deleted"), "{err}");
    assert!(user.join("precious/keep.txt").is_file() && user.join("train.csv").is_file());

    // A real run directory is replaced, and gets the marker.
    let run = s.root.join("run");
    let o = s.run(&s.train_args(&run));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join(".prefix-subspace-run").is_file() && run.join("results.json").is_file());
    let mut again = s.train_args(&run);
    again.push("--overwrite".into());
    let o = s.run(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    // ... but not once the user has put a file of theirs into it.
    std::fs::write(run.join("my-notes.txt"), "notes").unwrap();
    let err = assert_one_line_error(&s.run(&again), "--overwrite on a run directory with a user file");
    assert!(err.contains("my-notes.txt"), "{err}");
    assert!(run.join("my-notes.txt").is_file() && run.join("results.json").is_file());
}

#[test]
fn predict_and_export_replace_no_file_of_the_users_unless_told() {
    let s = setup();
    let run = s.root.join("run");
    let o = s.run(&s.train_args(&run));
    assert!(o.status.success(), "{}", stderr(&o));
    let (r, p) = (run.to_string_lossy().into_owned(), |p: &Path| p.to_string_lossy().into_owned());
    let texts = s.root.join("texts.txt");
    std::fs::write(&texts, "a good film\n").unwrap();
    let predict = |output: &Path, extra: &[&str]| {
        let mut a: Vec<String> = vec!["predict".into(), "--run".into(), r.clone()];
        a.extend(["--input".into(), p(&texts), "--output".into(), p(output)]);
        a.extend(extra.iter().map(|x| x.to_string()));
        s.run(&a)
    };

    // predict --output: an existing file is refused and left as it is; --overwrite replaces it.
    let mine = s.root.join("mine.jsonl");
    std::fs::write(&mine, "precious").unwrap();
    let err = assert_one_line_error(&predict(&mine, &[]), "predict onto an existing file");
    assert!(err.contains("mine.jsonl") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "precious");
    let o = predict(&mine, &["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&mine).unwrap().starts_with("{\"line\":1,"));
    // A file in a folder that does not exist: said before the run is loaded.
    let err = assert_one_line_error(&predict(&s.root.join("nodir/out.jsonl"), &[]), "predict into no folder");
    assert!(err.contains("no folder") && err.contains("nodir"), "{err}");
    // ... and never the input file, even with --overwrite.
    let err = assert_one_line_error(&predict(&texts, &["--overwrite"]), "predict onto its input");
    assert!(err.contains("--input"), "{err}");
    assert_eq!(std::fs::read_to_string(&texts).unwrap(), "a good film\n");

    // export --out: the adapter's files already there are refused; other files are never touched.
    let out = s.root.join("adapters");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let export = |extra: &[&str]| {
        let mut a: Vec<String> = vec!["export".into(), "--run".into(), r.clone(), "--out".into(), p(&out)];
        a.extend(extra.iter().map(|x| x.to_string()));
        s.run(&a)
    };
    let o = export(&[]);
    assert!(o.status.success(), "a folder with other files takes the adapter: {}", stderr(&o));
    std::fs::write(out.join("adapter_config.json"), "precious").unwrap();
    let err = assert_one_line_error(&export(&[]), "export onto an adapter");
    assert!(err.contains("adapter_config.json") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("adapter_config.json")).unwrap(), "precious");
    let o = export(&["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(out.join("adapter_config.json")).unwrap().contains("PREFIX_TUNING"));
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "head_config.json", "notes.txt"]
    );

    // An export that fails (a run with no prefix) leaves no folder behind, staging included.
    let lora = s.root.join("lora");
    let mut args = s.train_args(&lora);
    args.extend(["--method".into(), "lora".into()]);
    let o = s.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let fresh = s.root.join("fresh-export");
    let o = s.run(&["export".into(), "--run".into(), p(&lora), "--out".into(), p(&fresh)]);
    let err = assert_one_line_error(&o, "export of a run without a prefix");
    assert!(err.contains("deep prefix"), "{err}");
    assert!(!fresh.exists(), "a failed export leaves no folder");
}

#[test]
fn a_locked_run_directory_refuses_a_second_writer() {
    let s = setup();
    let run = s.root.join("run");
    let lock = prefix_subspace::rundir::lock(&run, prefix_subspace::rundir::Kind::Run).unwrap();
    let mut args = s.train_args(&run);
    args.push("--overwrite".into());
    let err = assert_one_line_error(&s.run(&args), "train on a locked directory");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    let err = assert_one_line_error(
        &s.run(&["train".into(), "--resume".into(), run.to_string_lossy().into_owned()]),
        "resume of a locked directory",
    );
    assert!(err.contains("no config.toml") || err.contains("in use"), "{err}");
    drop(lock);
    let o = s.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Values every key is tried with (as `--set KEY=VALUE`): not numbers, outside every range,
/// and the edges that are often wrong.
const BAD_VALUES: [&str; 7] = ["nan", "inf", "-inf", "0", "-1", "1000000000", "1e300"];

#[test]
fn every_config_key_with_bad_values_is_one_line_and_leaves_no_run_directory() {
    let s = setup();
    // Every documented key (the docs cover exactly the config's keys: a unit test in config.rs).
    let keys: Vec<String> = prefix_subspace::config::key_docs().iter().map(|d| d.key.to_string()).collect();
    assert!(keys.len() > 50, "{keys:?}");
    let cases: Vec<(String, &str)> =
        keys.iter().flat_map(|k| BAD_VALUES.iter().map(move |v| (k.clone(), *v))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let (accepted, refused) = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((key, value)) = cases.get(i) else { break };
                let out = s.root.join(format!("case-{i}"));
                let mut args = s.train_args(&out);
                args.extend(["--set".into(), format!("{key}={value}")]);
                let o = s.run(&args);
                let err = stderr(&o);
                let problem = if o.status.success() {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    None
                } else if o.status.code() != Some(2) {
                    Some(format!("exit status {:?}", o.status))
                } else if err.trim_end().lines().count() != 1 || err.contains("panicked") {
                    Some("stderr is not one line".to_string())
                } else if out.exists() {
                    Some(format!("left {}", out.display()))
                } else {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    None
                };
                if let Some(p) = problem {
                    failures.lock().unwrap().push(format!("--set {key}={value}: {p}; stderr: {err}"));
                }
                let _ = std::fs::remove_dir_all(&out);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    eprintln!("{} cases: {accepted} accepted (valid values: trained), {refused} refused", cases.len());
    assert!(refused > cases.len() / 2, "{refused} of {} refused", cases.len());
}

#[test]
fn named_crashes_are_one_line_errors() {
    let s = setup();
    let out = s.root.join("run");
    let sets: &[(&str, &str)] = &[
        ("max_len=600", "max_len = 600: expected at most 64"),
        ("positions=\"shifted\"", "positions = shifted"), // with max_len 62 below
        ("prefix_len=600", "prefix_len = 600"),
        ("ensemble_samples=100000", "ensemble_samples = 100000"),
        ("threads=100000", "threads = 100000"),
        ("reparam=100000", "reparam = 100000"),
        ("beta=nan", "beta = not a finite number"),
        ("max_len=1", "max_len = 1: expected an integer in [8, 8192]"),
        ("lora_targets=[\"nope\"]", "lora_targets"),
    ];
    for (set, expect) in sets {
        let mut args = s.train_args(&out);
        args.extend(["--set".into(), set.to_string()]);
        if set.starts_with("positions") {
            args.extend(["--set".into(), "max_len=62".into()]); // 62 + 4 > 64
        }
        let err = assert_one_line_error(&s.run(&args), set);
        assert!(err.contains(expect), "--set {set}: {err}");
        assert!(!out.exists(), "--set {set} left {}", out.display());
    }
    for flag in ["--seed", "--split-seed"] {
        let mut args = s.train_args(&out);
        args.extend([flag.into(), "9223372036854775808".into()]);
        let err = assert_one_line_error(&s.run(&args), flag);
        assert!(err.contains("seed = 9223372036854775808"), "{flag}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn every_at_form_with_bad_values_is_one_line() {
    let s = setup();
    let run = s.root.join("run");
    let mut args = s.train_args(&run);
    args.extend(["--set".into(), "vertices=3".into()]);
    let o = s.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = run.to_string_lossy().into_owned();
    let bad = [
        "",
        "bogus",
        "centroid:1",
        "vertex:",
        "vertex:-1",
        "vertex:3",
        "vertex:nan",
        "ensemble:0",
        "ensemble:-1",
        "ensemble:nan",
        "ensemble:1000000",
        "alpha:nan,1,1",
        "alpha:inf,1,1",
        "alpha:-1,1,1",
        "alpha:0,0,0",
        "alpha:1,1",
        "alpha:",
        "sweep:0",
        "sweep:-1",
        "sweep:1e-9",
        "sweep:nan",
        "sweep:inf",
        "sweep:2",
        "sweep:",
    ];
    for at in bad {
        let o =
            s.run(&["eval".into(), "--run".into(), r.clone(), "--split".into(), "dev".into(), format!("--at={at}")]);
        assert_one_line_error(&o, &format!("eval --at {at}"));
        if !at.starts_with("sweep") {
            let out = s.root.join("export");
            let o = s.run(&[
                "export".into(),
                "--run".into(),
                r.clone(),
                "--out".into(),
                out.to_string_lossy().into_owned(),
                format!("--at={at}"),
            ]);
            assert_one_line_error(&o, &format!("export --at {at}"));
            assert!(!out.exists(), "export --at {at} left {}", out.display());
        }
    }
    // The good forms still work.
    for at in ["centroid", "vertex:2", "ensemble:4", "alpha:1,0,1", "sweep:0.5", "all"] {
        let o =
            s.run(&["eval".into(), "--run".into(), r.clone(), "--split".into(), "dev".into(), format!("--at={at}")]);
        assert!(o.status.success(), "--at {at}: {}", stderr(&o));
    }
}

#[test]
fn edited_configs_and_data_are_refused_and_unfinished_runs_say_so() {
    let s = setup();
    let run = s.root.join("run");
    let mut args = s.train_args(&run);
    args.extend(["--set".into(), "max_steps=6".into(), "--set".into(), "eval_every=2".into()]);
    let o = s.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = run.to_string_lossy().into_owned();

    // Every text of the train file rewritten, ids (file:line) unchanged: eval refuses.
    let original = std::fs::read_to_string(&s.data).unwrap();
    std::fs::write(&s.data, original.replace("film", "movie").replace("mess", "flop")).unwrap();
    let err = assert_one_line_error(&s.run(&["eval".into(), "--run".into(), r.clone()]), "eval on edited data");
    assert!(err.contains("texts or labels"), "{err}");
    std::fs::write(&s.data, &original).unwrap();

    // A run without results.json (unfinished) is evaluated with a note naming the checkpoint's step.
    std::fs::rename(run.join("results.json"), s.root.join("results.json")).unwrap();
    let o = s.run(&["eval".into(), "--run".into(), r.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unfinished") && stderr(&o).contains("from step"), "{}", stderr(&o));
    std::fs::rename(s.root.join("results.json"), run.join("results.json")).unwrap();

    // A run killed mid-way (its saved state kept) whose config.toml is then edited: resume refuses.
    let killed = s.root.join("killed");
    let mut args = s.train_args(&killed);
    args.extend(["--set".into(), "max_steps=400".into(), "--set".into(), "checkpoint_every=1".into()]);
    let mut child = bin().args(&args).spawn().unwrap();
    let state = killed.join(prefix_subspace::state::RESUME_FILE);
    let t0 = std::time::Instant::now();
    while !state.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(state.exists(), "no state saved");
    let cfg = killed.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("beta = 1.0", "beta = 0.5")).unwrap();
    let resume = ["train".into(), "--resume".into(), killed.to_string_lossy().into_owned(), "--quiet".into()];
    let err = assert_one_line_error(&s.run(&resume), "resume after config.toml was edited");
    assert!(err.contains("beta"), "{err}");
}

#[test]
fn divergence_before_the_first_evaluation_leaves_no_run_directory() {
    let s = setup();
    // Regression labels of ±1e30 (in every score bucket the sampler stratifies by): the
    // squared error is infinite at the first step.
    let data = s.root.join("huge.csv");
    let mut text = String::from("text,label\n");
    for i in 0..100 {
        text.push_str(&format!("sentence number {i},{}\n", ["-1e30", "1.5", "2.5", "3.5", "1e30"][i % 5]));
    }
    std::fs::write(&data, text).unwrap();
    let run = s.root.join("run");
    let mut args = s.train_args(&run);
    args.extend(["--set".into(), format!("train_file={}", data.display()), "--set".into(), "regression=true".into()]);
    // Not bad input as such: the run's notes on its data come first, then one error line.
    let o = s.run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(last.contains("diverged") && last.contains("no checkpoint was saved"), "{err}");
    assert!(err.lines().all(|l| l.starts_with("note: ") || l == last), "{err}");
    assert!(!run.exists(), "a run that saved nothing left {}", run.display());
}

#[test]
fn an_empty_test_set_is_refused() {
    let s = setup();
    let test = s.root.join("test.csv");
    std::fs::write(&test, "text,label\n").unwrap();
    let run = s.root.join("run");
    let mut args = s.train_args(&run);
    args.extend(["--set".into(), format!("test_file={}", test.display())]);
    let err = assert_one_line_error(&s.run(&args), "empty test file");
    assert!(err.contains("test"), "{err}");
    assert!(!run.exists());
}

#[test]
fn plot_of_a_missing_run_creates_nothing_and_io_errors_are_said_once() {
    let s = setup();
    let missing = s.root.join("missing");
    let o = s.run(&["plot".into(), "--run".into(), missing.to_string_lossy().into_owned()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!missing.exists(), "plot created {}", missing.display());
    let o = s.run(&["plot".into(), "--bench".into(), missing.to_string_lossy().into_owned()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!missing.exists(), "plot created {}", missing.display());
    // An OS error appears once in the message.
    let mut args = s.train_args(&s.root.join("run"));
    args.extend(["--set".into(), format!("train_file={}", s.root.join("nope.csv").display())]);
    let err = stderr(&s.run(&args));
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
