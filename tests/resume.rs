//! Interrupted runs: a run killed with SIGKILL, or stopped with Ctrl-C (SIGINT), and then
//! resumed with `train --resume` ends with the same numbers, bit for bit, as a run that
//! was never interrupted; on the default encoder and on the decoder LLM SmolLM2 (GGUF).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

const STEPS: usize = 40;

/// A short real run (polarity, default model), saving its state every 3 steps.
fn train_args(out: &Path) -> Vec<String> {
    let mut a: Vec<String> =
        ["train", "--task", "polarity", "--quiet", "--out"].iter().map(|s| s.to_string()).collect();
    a.push(out.to_string_lossy().into_owned());
    for s in [
        format!("max_steps={STEPS}"),
        "eval_every=5".into(),
        "checkpoint_every=3".into(),
        "threads=1".into(),
        "test_limit=120".into(),
        "dev_samples=4".into(),
        "ensemble_samples=4".into(),
    ] {
        a.push("--set".into());
        a.push(s);
    }
    a
}

/// A short real run of the subspace (the decoder's defaults: vertices from demonstrations,
/// shifted positions) on SmolLM2 and SST-2, saving its state every 3 steps.
fn decoder_args(out: &Path) -> Vec<String> {
    let glue = common::glue_dir();
    let mut a: Vec<String> = ["train", "--task", "sst2", "--model", DECODER, "--quiet"].map(String::from).to_vec();
    a.extend(["--data-dir".into(), glue.to_string_lossy().into_owned()]);
    a.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    for s in [
        "max_steps=10",
        "eval_every=4",
        "checkpoint_every=3",
        "threads=1",
        "test_limit=32",
        "max_len=64",
        "dev_samples=2",
        "ensemble_samples=2",
    ] {
        a.extend(["--set".into(), s.into()]);
    }
    a
}

const DECODER: &str = "smollm2-135m-instruct";

fn results(dir: &Path) -> serde_json::Value {
    let mut r = common::results_json(dir);
    for k in ["train_seconds", "train_samples_per_second", "test_seconds", "resumed"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

/// Starts a run and waits until it has done `step` steps.
fn start_until(out: &Path, step: usize) -> Child {
    start_and_wait(out, &format!("step {step}"), || common::last_step(out) >= step)
}

/// Starts a run and waits, while it runs, until `reached` (`what` it waits for).
fn start_and_wait(out: &Path, what: &str, reached: impl Fn() -> bool) -> Child {
    start_args_and_wait(train_args(out), what, reached)
}

/// [`start_and_wait`] for the run of the arguments `args`.
fn start_args_and_wait(args: Vec<String>, what: &str, reached: impl Fn() -> bool) -> Child {
    let mut child = bin().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !reached() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress to {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

fn uninterrupted(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("straight");
    let out = bin().args(train_args(&dir)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("resume.safetensors").exists(), "a finished run removes its resume state");
    dir
}

fn resume(dir: &Path) -> std::process::Output {
    bin().args(["train", "--quiet", "--resume", dir.to_str().unwrap()]).output().unwrap()
}

/// Kills the run `child` (SIGKILL) before its end and resumes its directory `dir` to the end.
fn kill_and_resume(mut child: Child, dir: &Path) {
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("results.json").exists(), "killed before the end");
    assert!(dir.join("resume.safetensors").is_file());
    let out = resume(dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_killed_run_resumes_to_bit_identical_numbers() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let straight = uninterrupted(tmp.path());
    // Killed at two different points: between saves, and right after a dev evaluation.
    for kill_after in [8, 16] {
        let dir = tmp.path().join(format!("killed{kill_after}"));
        let child = start_until(&dir, kill_after);
        kill_and_resume(child, &dir);
        assert_eq!(results(&dir), results(&straight), "killed after step {kill_after}");
        assert_eq!(common::step_log(&dir), common::step_log(&straight), "the log continues as the uninterrupted one");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
        assert_eq!(r["resumed"], true);
    }
}

#[test]
fn a_killed_decoder_run_resumes_to_bit_identical_numbers() {
    if !common::decoder_installed(DECODER) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    let out = bin().args(decoder_args(&straight)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Killed after the dev evaluation of step 4, before the save of step 6.
    let dir = tmp.path().join("killed");
    let child = start_args_and_wait(decoder_args(&dir), "step 5", || common::last_step(&dir) >= 5);
    kill_and_resume(child, &dir);
    assert_eq!(results(&dir), results(&straight));
    assert_eq!(common::step_log(&dir), common::step_log(&straight), "the log continues as the uninterrupted one");
}

/// The prompt (template and label words) a decoder run started with is kept in its resume
/// state: the unfinished run is evaluated and resumed with it, not with the prompt a later
/// build would choose for the task. Here the saved prompt's label words are swapped, as a
/// build with another default would leave them: `predict` on the unfinished run swaps its
/// two probabilities, and the resumed run records the saved prompt in its results.
#[test]
fn an_unfinished_decoder_run_keeps_the_prompt_it_started_with() {
    if !common::decoder_installed(DECODER) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("killed");
    let mut child = start_args_and_wait(decoder_args(&dir), "step 5", || common::last_step(&dir) >= 5);
    child.kill().unwrap();
    child.wait().unwrap();
    let state = dir.join("resume.safetensors");
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"text_a\": \"a gorgeous, moving film\"}\n{\"text_a\": \"dull and far too long\"}\n")
        .unwrap();
    let before = common::predict_rows(&dir, &input);

    // Swap the label words of the saved position (JSON bytes, one per int64).
    let bytes = std::fs::read(&state).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let json: Vec<u8> = st.tensor("position").unwrap().data().chunks_exact(8).map(|c| c[0]).collect();
    let mut pos: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let words = pos["prompt"]["label_words"].as_array().unwrap().clone();
    assert_eq!(words.len(), 2, "the run started with the task's two label words: {}", pos["prompt"]);
    pos["prompt"]["label_words"] = serde_json::json!([words[1], words[0]]);
    let json: Vec<u8> = serde_json::to_vec(&pos).unwrap().iter().flat_map(|&b| i64::from(b).to_le_bytes()).collect();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(name, _)| name != "position").collect();
    tensors.push((
        "position".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![json.len() / 8], &json).unwrap(),
    ));
    safetensors::serialize_to_file(tensors, &None, &state).unwrap();

    let after = common::predict_rows(&dir, &input);
    for (b, a) in before.iter().zip(&after) {
        let probs: Vec<f64> = b["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
        let swapped: Vec<f64> = a["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
        assert!((probs[0] - swapped[1]).abs() < 1e-6 && (probs[1] - swapped[0]).abs() < 1e-6, "{b} then {a}");
    }
    let out = resume(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(common::results_json(&dir)["prompt"], pos["prompt"], "the resumed run used the saved prompt");
}

#[test]
fn ctrl_c_saves_the_state_and_says_how_to_resume() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let straight = uninterrupted(tmp.path());
    let dir = tmp.path().join("interrupted");
    let child = start_until(&dir, 7);
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exits with 128 + SIGINT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted at step") && err.contains("--resume"), "{err}");
    assert!(common::last_step(&dir) < STEPS && !dir.join("results.json").exists());
    let out = resume(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(results(&dir), results(&straight));
}

#[test]
fn ctrl_c_during_the_test_evaluation_resumes_to_the_same_numbers() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let straight = uninterrupted(tmp.path());
    let dir = tmp.path().join("testing");
    // After the last step comes the final dev evaluation, then the test evaluation (8 passes
    // over 120 examples here): the signal lands in one of the two, and both end in the latter.
    let child = start_until(&dir, STEPS);
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains(&format!("interrupted at step {STEPS}/{STEPS}")), "{err}");
    assert!(!dir.join("results.json").exists() && dir.join("resume.safetensors").is_file());
    let out = resume(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(results(&dir), results(&straight));
    assert_eq!(common::step_log(&dir), common::step_log(&straight), "the resumed run trains no further");
    assert!(!dir.join("resume.safetensors").exists());
}

#[test]
fn a_run_killed_during_the_test_evaluation_resumes_with_the_points_it_scored() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let straight = uninterrupted(tmp.path());
    let dir = tmp.path().join("killed-testing");
    let partial = dir.join("test-partial.json");
    // The test evaluation scores the centroid, 3 vertices, then an ensemble of 4: killed
    // once the first point is saved, with passes still to go.
    let mut child = start_and_wait(&dir, "its first saved test point", || partial.is_file());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.join("results.json").exists(), "killed before the end");
    assert!(dir.join("resume.safetensors").is_file());

    // Mark one saved point: the resumed run must take it as it is, not score it again.
    let mut saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&partial).unwrap()).unwrap();
    let (set, points) = saved["sets"].as_object_mut().unwrap().iter_mut().next().unwrap();
    let set = set.clone();
    let (point, scores) = points.as_object_mut().unwrap().iter_mut().next().unwrap();
    let point = point.clone();
    for v in scores.as_object_mut().unwrap().values_mut() {
        *v = serde_json::json!(-7.0);
    }
    std::fs::write(&partial, serde_json::to_string(&saved).unwrap()).unwrap();

    let out = resume(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut resumed = results(&dir);
    let marked = &resumed[set.as_str()][point.as_str()];
    assert!(marked.as_object().unwrap().values().all(|v| v == -7.0), "{set}/{point} scored again: {marked}");
    let expected = results(&straight);
    resumed[set.as_str()][point.as_str()] = expected[set.as_str()][point.as_str()].clone();
    assert_eq!(resumed, expected, "the points scored after the resume are the uninterrupted run's");
    assert_eq!(common::step_log(&dir), common::step_log(&straight), "the resumed run trains no further");
    assert!(!dir.join("resume.safetensors").exists() && !partial.exists(), "a finished run removes both");
}

#[test]
fn resume_refuses_what_it_cannot_continue() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let straight = uninterrupted(tmp.path());
    let err = String::from_utf8(resume(&straight).stderr).unwrap();
    assert!(err.contains("already finished"), "{err}");
    let err = String::from_utf8(resume(&tmp.path().join("nothing")).stderr).unwrap();
    assert!(err.contains("not a run directory"), "{err}");
    // A file of the run (what a shell completes to) is said to be a file, to resume and to eval.
    let file = straight.join("config.toml");
    let err = String::from_utf8(resume(&file).stderr).unwrap();
    assert!(err.contains(&format!("{}: a file, not a run directory", file.display())), "{err}");
    let out = bin().args(["eval", "--run", file.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: a file, not a run directory", file.display())), "{err}");
    let out =
        bin().args(["train", "--quiet", "--resume", straight.to_str().unwrap(), "--set", "lr=1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("only threads"), "{err}");
    let out = bin().args(["train", "--resume", straight.to_str().unwrap(), "--task", "rte"]).output().unwrap();
    assert!(!out.status.success(), "--task with --resume is refused");
}
