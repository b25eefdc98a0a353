//! The training loop: AdamW with linear warm-up and decay, gradient clipping, per-example α
//! draws, the cos² regulariser, dev evaluation with m sampled models per example to pick
//! the best checkpoint (and stop early), then the final test evaluation.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::{Device, Tensor};

use crate::atomic::write_atomic;
use crate::config::{DevAt, RunConfig};
use crate::data::Label;
use crate::error::{Error, Result};
use crate::eval::{outputs, outputs_unless, score, Encoded};
use crate::method::subspace::{At, Subspace};
use crate::method::AfterSteps;
use crate::model::tokenizer::pad_batch;
use crate::optim::AdamW;
use crate::results::{DevSelection, Results, Scores, TestScores};
use crate::session::{save_checkpoint, Session};
use crate::state::{
    check_position, load_state, remove_if_exists, save_state, truncate_log, Position, TestPartial, RESUME_FILE,
    TEST_PARTIAL_FILE,
};
use crate::streams::{epoch_order, seed_torch, stream_seed, Stream};

/// A progress bar over `total` `unit`s (steps, points) on stderr, when stderr is a terminal.
pub(crate) fn terminal_bar(total: u64, unit: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {unit} {{elapsed_precise}} {{msg}}"
            ))
            .expect("valid template"),
        );
        b
    })
}

/// Progress reporting: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: u64, done: u64, quiet: bool) -> Self {
        let bar = if quiet { None } else { terminal_bar(total, "steps") };
        if let Some(b) = &bar {
            b.set_position(done);
        }
        Self { bar }
    }
    fn step(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
    fn line(&self, quiet: bool, msg: String) {
        match &self.bar {
            Some(b) => b.set_message(msg),
            None if !quiet => eprintln!("{msg}"),
            None => {}
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub(crate) fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(", ")
}

/// Set by a Ctrl-C handler: the training loop then saves its state at the end of the step (the
/// final test evaluation: before its next batch) and returns [`Error::Interrupted`].
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes Ctrl-C and SIGTERM stop training cleanly: the first Ctrl-C (and any SIGTERM: a job
/// scheduler's or `kill`'s request, or a dying bench's) sets [`INTERRUPTED`], so the loop saves
/// its state after the current step and returns [`Error::Interrupted`]; a second Ctrl-C exits
/// at once with status 130.
pub fn install_interrupt_handlers() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // Not `exit`: its static destructors would tear libtorch down under the
            // training thread, which then panics with a backtrace.
            #[cfg(unix)]
            // SAFETY: _exit ends the process at once; nothing is left half-written (every
            // file is written to a temporary name and renamed).
            unsafe {
                libc::_exit(130)
            }
            #[cfg(not(unix))]
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: saving the training state after this step or test batch (Ctrl-C again to quit now)");
    })
    .map_err(|e| Error::Input(format!("cannot install the Ctrl-C handler: {e}")))?;
    // SIGTERM: the same save-and-exit, never escalated, however many arrive.
    #[cfg(unix)]
    {
        extern "C" fn on_term(_: libc::c_int) {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) } == libc::SIG_ERR {
            return Err(Error::Input("cannot install the SIGTERM handler".into()));
        }
    }
    Ok(())
}

/// Trains a subspace for `session` and writes the run directory `dir` (config.toml,
/// split.json, metrics.jsonl, checkpoint.safetensors, results.json). Returns results.json.
pub fn train(session: &mut Session, dir: &Path, quiet: bool) -> Result<Results> {
    run(session, dir, quiet, false)
}

/// Continues the interrupted run in `dir` from its last saved state (`resume.safetensors`);
/// the final numbers are bit-identical to an uninterrupted run's.
pub fn resume(session: &mut Session, dir: &Path, quiet: bool) -> Result<Results> {
    run(session, dir, quiet, true)
}

fn run(session: &mut Session, dir: &Path, quiet: bool, resuming: bool) -> Result<Results> {
    // A resumed run imports `init_peft` too (an input like the data and the model), so its
    // notes are the uninterrupted run's; the saved state then overwrites the weights.
    let (vs, mut subspace) = session.new_subspace()?;
    let session = &*session;
    let cfg = &session.cfg;
    let task = &session.task;
    let (enc, tok) = (&*session.backbone, &session.tokenizer);
    let device = enc.device();
    let train = Encoded::new(tok, &task.split.train)?;
    let dev = Encoded::new(tok, &task.split.dev)?;
    let tests: Vec<(String, Encoded)> =
        task.tests.iter().map(|(n, ex)| Ok((n.clone(), Encoded::new(tok, ex)?))).collect::<Result<_>>()?;

    let mut opt = AdamW::new(&vs, cfg.lr, cfg.weight_decay);
    let state_path = dir.join(RESUME_FILE);
    let metrics_path = dir.join("metrics.jsonl");
    let split_hash = task.split.split_hash();
    let (mut pos, mut best) = if resuming {
        let (pos, best) = load_state(&state_path, &vs, &mut opt)?;
        if pos.split_hash != split_hash {
            return Err(Error::Input(format!(
                "{}: the data now gives a different few-shot split (hash {split_hash}, the run started on {}): the data files changed",
                state_path.display(),
                pos.split_hash
            )));
        }
        check_position(&pos, session, dir)?;
        truncate_log(&metrics_path, pos.step)?;
        (pos, best)
    } else {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        let mut split = serde_json::to_value(task.split.summary()).expect("split serialises");
        split["data_hash"] = json!(session.data_hash());
        let split_json = serde_json::to_string_pretty(&split).expect("split serialises");
        write_atomic(&dir.join("split.json"), split_json.as_bytes())?;
        write_atomic(&metrics_path, b"")?;
        let pos = Position {
            step: 0,
            epoch: 1,
            batch: 0,
            seen: 0,
            step_seconds: 0.0,
            train_seconds: 0.0,
            evals_since_best: 0,
            best: None,
            adam_steps: BTreeMap::new(),
            split_hash,
            trained: false,
            config: Some(cfg.comparable().to_toml()),
            data_hash: Some(session.data_hash().to_string()),
            prompt: session.tokenizer.prompt().cloned(),
        };
        (pos, Vec::new())
    };
    let mut log =
        std::fs::OpenOptions::new().append(true).open(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    let mut emit =
        |v: serde_json::Value| -> Result<()> { writeln!(log, "{v}").map_err(|e| Error::io(&metrics_path, e)) };

    // Head-only: the encoder is frozen and sees no prefix, so its features are computed once.
    let cached = cfg
        .method
        .caches_features()
        .then(|| crate::eval::features(enc, &subspace, &train, cfg.eval_batch_size, tok.pad_id()));

    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total_steps = if !cfg.method.loop_steps() {
        // No step here (SetFit's gradient steps are its own, in `after_steps` below).
        0
    } else if cfg.max_steps > 0 {
        cfg.max_steps
    } else {
        cfg.epochs * steps_per_epoch
    };
    let warmup = (cfg.warmup_ratio * total_steps as f64).ceil() as usize;
    let schedule = |step: usize| -> f64 {
        if step < warmup {
            (step + 1) as f64 / warmup as f64
        } else {
            (total_steps - step) as f64 / (total_steps - warmup).max(1) as f64
        }
    };
    let (dev_at, dev_m) = match cfg.dev_at {
        DevAt::Samples if subspace.n > 1 => (At::Sample, cfg.dev_samples),
        _ => (At::Centroid, 1),
    };
    let main = task.main_metric.name();
    let progress = Progress::new(total_steps as u64, pos.step as u64, quiet);
    let pad = tok.pad_id();
    let ckpt = dir.join("checkpoint.safetensors");
    let mut order = epoch_order(cfg.seed, train.len(), pos.epoch);

    let t_start = Instant::now();
    let train_seconds_before = pos.train_seconds;
    let saving = Saving {
        state: &state_path,
        dir,
        vs: &vs,
        progress: &progress,
        seconds_before: train_seconds_before,
        start: t_start,
    };
    while !pos.trained && pos.step < total_steps {
        let t0 = Instant::now();
        let chunk: Vec<usize> =
            order.chunks(cfg.batch_size).nth(pos.batch).expect("batch index within the epoch").to_vec();
        let input = match &cached {
            Some(f) => {
                let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>()).to(device);
                StepInput::Features(f.index_select(0, &idx))
            }
            None => StepInput::Tokens(chunk.iter().map(|&i| train.inputs[i].clone()).collect()),
        };
        let labels: Vec<Label> = chunk.iter().map(|&i| train.labels[i]).collect();
        let lr = cfg.lr * schedule(pos.step);
        let (loss_v, reg_v) = train_step(
            session,
            &subspace,
            &mut opt,
            input,
            &labels,
            pos.step,
            lr,
            cfg.head_lr * schedule(pos.step),
            None,
        );
        let epoch = pos.epoch;
        if !loss_v.is_finite() {
            let kept = match pos.best {
                Some((v, s, _)) => format!(
                    "the best checkpoint so far ({main} {v:.4} at step {s}) is {}, which `eval --run {}` scores",
                    ckpt.display(),
                    dir.display()
                ),
                None => "this was before the first dev evaluation, so no checkpoint was saved".to_string(),
            };
            return Err(Error::Input(format!(
                "training diverged: loss is {loss_v} at step {} (epoch {epoch}); {kept}; try a smaller lr",
                pos.step + 1,
            )));
        }
        let dt = t0.elapsed().as_secs_f64();
        pos.step_seconds += dt;
        pos.seen += chunk.len();
        pos.step += 1;
        pos.batch += 1;
        let end_of_epoch = pos.batch == steps_per_epoch;
        if end_of_epoch {
            pos.epoch += 1;
            pos.batch = 0;
            order = epoch_order(cfg.seed, train.len(), pos.epoch);
        }
        let step = pos.step;
        progress.step();
        emit(json!({
            "kind": "step", "step": step, "epoch": epoch, "loss": loss_v,
            "regulariser": reg_v, "lr": lr,
            "samples_per_second": chunk.len() as f64 / dt,
        }))?;
        let due = if cfg.eval_every > 0 { step % cfg.eval_every == 0 } else { end_of_epoch };
        let mut stop = step >= total_steps;
        if due || step == total_steps {
            seed_torch(cfg.seed, Stream::Dev, step as u64);
            let out = outputs(enc, &subspace, &dev, &dev_at, dev_m, cfg.eval_batch_size, pad);
            let m = score(&out, &dev.labels, &task.metrics, true);
            let value = m[main];
            let improved = pos.best.is_none_or(|b| value > b.0);
            if improved {
                best = snapshot(&vs);
                pos.best = Some((value, step, epoch));
                save_checkpoint(&vs, &ckpt)?;
                pos.evals_since_best = 0;
            } else {
                pos.evals_since_best += 1;
            }
            let b = pos.best.expect("set above");
            emit(json!({"kind": "eval", "step": step, "epoch": epoch, "dev": m, "best": improved}))?;
            progress.line(
                quiet,
                format!(
                    "epoch {epoch} step {step}/{total_steps} loss {loss_v:.4} dev {} (best {main} {:.4} at epoch {})",
                    fmt_metrics(&m),
                    b.0,
                    b.2
                ),
            );
            stop |= cfg.patience > 0 && pos.evals_since_best >= cfg.patience;
        }
        let save_due = if cfg.checkpoint_every > 0 { step % cfg.checkpoint_every == 0 } else { due };
        saving.save_or_stop(&opt, &mut pos, &best, save_due, stop, total_steps)?;
        if stop {
            break;
        }
    }
    // What the method does besides the loop's steps: SetFit's contrastive phase, the probe's
    // fit, in-context learning's choice of demonstrations. A method's own gradient steps save
    // and stop as the loop's do (every `checkpoint_every` steps, else every `eval_every`).
    let done = (pos.step, pos.seen, pos.step_seconds);
    let mut own_pos = pos.clone();
    let mut checkpoint = |opt: &AdamW, (step, seen, seconds): (usize, usize, f64), total: usize| -> Result<()> {
        (own_pos.step, own_pos.seen, own_pos.step_seconds) = (step, seen, seconds);
        let every = if cfg.checkpoint_every > 0 { cfg.checkpoint_every } else { cfg.eval_every };
        saving.save_or_stop(opt, &mut own_pos, &best, every > 0 && step % every == 0, step >= total, total)
    };
    let fitted = cfg.method.after_steps(&mut AfterSteps {
        session,
        vs: &vs,
        subspace: &mut subspace,
        train: &train,
        dev: &dev,
        dev_at: &dev_at,
        dev_m,
        emit: &mut emit,
        say: &|m| progress.line(quiet, m),
        resumed_trained: pos.trained,
        metrics: &metrics_path,
        opt: &mut opt,
        done,
        checkpoint: &mut checkpoint,
    })?;
    if let Some(done) = fitted.steps {
        (pos.step, pos.seen, pos.step_seconds) = done;
    }
    if let Some(m) = &fitted.dev {
        // A fit that chose its own weights on dev: the run's checkpoint, at step 0.
        pos.best = Some((m[main], 0, 0));
        best = snapshot(&vs);
        save_checkpoint(&vs, &ckpt)?;
        emit(json!({"kind": "eval", "step": 0, "epoch": 0, "dev": m, "best": true}))?;
    }
    if !cfg.method.trains() && pos.best.is_none() {
        // Zero-shot and in-context learning train nothing: one dev evaluation, for the record.
        seed_torch(cfg.seed, Stream::Dev, 0);
        let out = outputs(enc, &subspace, &dev, &dev_at, dev_m, cfg.eval_batch_size, pad);
        let m = score(&out, &dev.labels, &task.metrics, true);
        pos.best = Some((m[main], 0, 0));
        best = snapshot(&vs);
        save_checkpoint(&vs, &ckpt)?;
        emit(json!({"kind": "eval", "step": 0, "epoch": 0, "dev": m, "best": true}))?;
        progress.line(quiet, format!("{} trains nothing: dev {}", cfg.method.name(), fmt_metrics(&m)));
    }
    progress.finish();
    let train_seconds = train_seconds_before + t_start.elapsed().as_secs_f64();
    let (best_dev, best_step, best_epoch) = pos.best.expect("at least one evaluation ran");
    tch::no_grad(|| {
        let vars = vs.variables();
        for (k, v) in &best {
            let mut dst = vars[k].shallow_clone();
            dst.copy_(v);
        }
    });

    // From here on the saved weights are the best ones and training is over: a run stopped or
    // killed during the test evaluation resumes there, with the points it already scored.
    let partial_path = dir.join(TEST_PARTIAL_FILE);
    let mut partial = if pos.trained {
        TestPartial::read(&partial_path)?
    } else {
        remove_if_exists(&partial_path)?;
        pos.trained = true;
        pos.train_seconds = train_seconds;
        save_state(&state_path, &vs, &opt, &pos, &best)?;
        TestPartial::default()
    };
    let t_test = Instant::now();
    let seconds_before = partial.seconds;
    let mut results = Results {
        task: task.name.clone(),
        method: cfg.method.name().to_string(),
        vertices: cfg.vertices as u64,
        protocol: cfg.protocol.name().to_string(),
        shots: cfg.shots as u64,
        split_seed: cfg.split_seed,
        seed: cfg.seed,
        split_hash: task.split.split_hash(),
        train_examples: task.split.train.len() as u64,
        dev_examples: task.split.dev.len() as u64,
        steps: pos.step as u64,
        epochs: pos.epochs() as u64,
        best_step: best_step as u64,
        best_epoch: best_epoch as u64,
        dev_selection: DevSelection {
            at: if dev_m > 1 { "samples" } else { "centroid" }.to_string(),
            samples: dev_m as u64,
            score: Scores(BTreeMap::from([(main.to_string(), best_dev)])),
        },
        train_seconds,
        train_samples_per_second: if pos.step > 0 { pos.seen as f64 / pos.step_seconds } else { 0.0 },
        resumed: resuming,
        model: cfg.model_dir(),
        notes: task.notes.clone(),
        prompt: session.tokenizer.prompt().cloned(),
        ..Results::default()
    };
    for (name, data) in &tests {
        let done = partial.sets.get(name).cloned().unwrap_or_default();
        let mut save_point = |point: &str, scores: &Scores| -> Result<()> {
            partial.sets.entry(name.clone()).or_default().insert(point.to_string(), scores.clone());
            partial.seconds = seconds_before + t_test.elapsed().as_secs_f64();
            partial.write(&partial_path)
        };
        match evaluate_unless(session, &subspace, data, cfg, &done, &mut save_point, &INTERRUPTED)? {
            Some(r) => results.set_test_set(name, r)?,
            None => {
                return Err(Error::Interrupted { step: pos.step, total: total_steps, dir: dir.display().to_string() })
            }
        }
    }
    results.test_seconds = seconds_before + t_test.elapsed().as_secs_f64();
    // Beside every score, what always answering the most frequent class would get.
    for (name, data) in &tests {
        results.test_examples.get_or_insert_default().insert(name.clone(), data.labels.len() as u64);
        if let Some(m) = crate::metrics::majority(&session.task.metrics, &data.labels) {
            results.majority.get_or_insert_default().insert(name.clone(), m.rate);
            results.majority_scores.get_or_insert_default().insert(name.clone(), Scores(m.scores));
        }
    }
    results.probe = fitted.probe;
    results.setfit = fitted.setfit;
    write_atomic(&dir.join("results.json"), results.to_json().as_bytes())?;
    remove_if_exists(&state_path)?;
    remove_if_exists(&partial_path)?;
    Ok(results)
}

/// Where a run saves its resume state, and the clock it records.
struct Saving<'a> {
    state: &'a Path,
    dir: &'a Path,
    vs: &'a tch::nn::VarStore,
    progress: &'a Progress,
    /// Training seconds of the run's earlier sessions, and when this one started.
    seconds_before: f64,
    start: Instant,
}

impl Saving<'_> {
    /// After a gradient step (the loop's or a method's own, `pos.step` of `total`): saves the
    /// resume state when `due` or when Ctrl-C / SIGTERM arrived, and on the latter stops the
    /// run with the command that resumes it. A `last` step saves nothing: the run goes on to
    /// its test evaluation.
    fn save_or_stop(
        &self,
        opt: &AdamW,
        pos: &mut Position,
        best: &[(String, Tensor)],
        due: bool,
        last: bool,
        total: usize,
    ) -> Result<()> {
        let interrupted = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
        if last || !(due || interrupted) {
            return Ok(());
        }
        pos.train_seconds = self.seconds_before + self.start.elapsed().as_secs_f64();
        save_state(self.state, self.vs, opt, pos, best)?;
        if interrupted {
            self.progress.finish();
            return Err(Error::Interrupted { step: pos.step, total, dir: self.dir.display().to_string() });
        }
        Ok(())
    }
}

/// A copy of every variable of `vs` (the best weights so far).
fn snapshot(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

/// What a training step reads: a batch of tokenised examples, or (head-only) their cached
/// pooled features.
pub enum StepInput {
    /// `(token ids, type ids)` per example, padded here.
    Tokens(Vec<(Vec<i64>, Vec<i64>)>),
    /// Pooled features `(B, H)`.
    Features(Tensor),
}

/// Seconds of one step's phases, as [`train_step`] measures them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Draws, forward, task loss and regulariser.
    pub forward: f64,
    /// Zeroing the gradients and backward.
    pub backward: f64,
    /// Clipping and the AdamW update.
    pub update: f64,
}

/// One training step, exactly as `train` runs it: the step's reseeded draws (dropout, α, the
/// regulariser's pair), forward, task loss + regulariser, backward, gradient clipping and an
/// AdamW update at learning rates `lr` (method) and `head_lr` (heads). Returns the task loss
/// and the regulariser; with a non-finite loss the weights are left as they were. With
/// `phases`, also times the step's phases into it; on a GPU each phase then waits for
/// its kernels, which the untimed step does not do, so a timed step can be a little slower.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    session: &Session,
    subspace: &Subspace,
    opt: &mut AdamW,
    input: StepInput,
    labels: &[Label],
    step: usize,
    lr: f64,
    head_lr: f64,
    phases: Option<&mut Phases>,
) -> (f64, Option<f64>) {
    let (cfg, enc) = (&session.cfg, &*session.backbone);
    let device = enc.device();
    let timing = phases.is_some();
    let mut clock = std::time::Instant::now();
    // Seconds since the last mark, once the device is done (only when timing).
    let mut mark = || {
        if !timing {
            return 0.0;
        }
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let now = std::time::Instant::now();
        let s = (now - clock).as_secs_f64();
        clock = now;
        s
    };
    seed_torch(cfg.seed, Stream::Step, step as u64);
    let alphas = subspace.sample_alphas(labels.len() as i64, device);
    let logits = match input {
        StepInput::Features(f) => subspace.head(&f, &alphas, true),
        StepInput::Tokens(items) => {
            subspace.forward(enc, &pad_batch(&items, session.tokenizer.pad_id(), device), &alphas, true)
        }
    };
    let task_loss = loss(&logits, labels.iter().copied(), subspace.poles(), device);
    let mut reg_rng = ChaCha8Rng::seed_from_u64(stream_seed(cfg.seed, Stream::Regulariser, step as u64));
    let reg = subspace.regulariser(&mut reg_rng);
    let total = match &reg {
        Some(r) => &task_loss + r,
        None => task_loss.shallow_clone(),
    };
    let forward = mark();
    opt.set_lr_group(0, lr);
    opt.set_lr_group(1, head_lr);
    opt.zero_grad();
    total.backward();
    let backward = mark();
    let loss_v = task_loss.double_value(&[]);
    if loss_v.is_finite() {
        if cfg.clip > 0.0 {
            opt.clip_grad_norm(cfg.clip);
        }
        opt.step();
    }
    if let tch::Device::Cuda(i) = device {
        // The step's kernels finish inside the step, so per-step times are the steps' own.
        tch::Cuda::synchronize(i as i64);
    }
    if let Some(p) = phases {
        *p = Phases { forward, backward, update: mark() };
    }
    (loss_v, reg.map(|r| r.double_value(&[])))
}

/// The final report on one test set: centroid, every vertex (when `test_vertices`) and the
/// ensemble of m samples (for one vertex, the centroid alone: they coincide).
pub fn evaluate_all(session: &Session, subspace: &Subspace, data: &Encoded, cfg: &RunConfig) -> Result<TestScores> {
    let done = TestScores::new();
    Ok(evaluate_unless(session, subspace, data, cfg, &done, &mut |_, _| Ok(()), &AtomicBool::new(false))?
        .expect("never stopped"))
}

/// Scores `data` as `eval --at AT` does: `all` (as [`evaluate_all`]), `sweep:STEP` (the main
/// metrics at evenly spaced points of the edge from vertex 0 to vertex 1, as `[{t, metrics}]`),
/// or one point of [`At::parse`] (with the final evaluation's draws, so `ensemble:M`
/// reproduces `results.json`).
pub fn evaluate_at(session: &Session, subspace: &Subspace, data: &Encoded, at: &str) -> Result<serde_json::Value> {
    let (enc, pad, bs) = (&*session.backbone, session.tokenizer.pad_id(), session.cfg.eval_batch_size);
    let metrics = &session.task.metrics;
    if at == "all" {
        let cfg = RunConfig { test_vertices: true, ..session.cfg.clone() };
        return Ok(json!(evaluate_all(session, subspace, data, &cfg)?));
    }
    if let Some(step) = at.strip_prefix("sweep:") {
        let step = At::parse_sweep(step)?;
        if subspace.n < 2 {
            return Err(Error::Input(format!(
                "--at {at}: a sweep needs at least 2 vertices (this run has {})",
                subspace.n
            )));
        }
        let rows = At::edge(subspace.n, step)
            .into_iter()
            .map(|(t, point)| {
                let o = outputs(enc, subspace, data, &point, 1, bs, pad);
                json!({"t": t, "metrics": score(&o, &data.labels, metrics, false)})
            })
            .collect();
        return Ok(serde_json::Value::Array(rows));
    }
    let (point, m) = At::parse(at).map_err(|e| match at.split_once(':').map_or(at, |(kind, _)| kind) {
        "centroid" | "vertex" | "ensemble" | "alpha" => e,
        _ => Error::Input(format!(
            "--at {at}: expected centroid, vertex:I, ensemble:M, alpha:A,B,..., sweep:STEP or all"
        )),
    })?;
    point.check(subspace.n, at)?;
    seed_torch(session.cfg.seed, Stream::Test, 0);
    let o = outputs(enc, subspace, data, &point, m, bs, pad);
    Ok(json!(score(&o, &data.labels, metrics, false)))
}

/// [`evaluate_all`], taking the scores of the points in `done` as they are, handing each
/// point it scores to `finished`, and giving up (`None`) before any batch once `stop` is set.
fn evaluate_unless(
    session: &Session,
    subspace: &Subspace,
    data: &Encoded,
    cfg: &RunConfig,
    done: &TestScores,
    finished: &mut dyn FnMut(&str, &Scores) -> Result<()>,
    stop: &AtomicBool,
) -> Result<Option<TestScores>> {
    let (enc, pad, bs) = (&*session.backbone, session.tokenizer.pad_id(), cfg.eval_batch_size);
    let metrics = &session.task.metrics;
    let mut points = vec![("centroid".to_string(), At::Centroid, 1)];
    if subspace.n > 1 {
        if cfg.test_vertices {
            points.extend((0..subspace.n).map(|i| (format!("vertex{i}"), At::Vertex(i), 1)));
        }
        points.push(("ensemble".to_string(), At::Sample, cfg.ensemble_samples));
    }
    let mut r = TestScores::new();
    seed_torch(cfg.seed, Stream::Test, 0);
    for (name, at, m) in points {
        // Only the ensemble draws from the generator (the fixed points run without dropout), so
        // skipping points that are done leaves its draws as they were.
        if let Some(scores) = done.get(&name) {
            r.insert(name, scores.clone());
            continue;
        }
        let Some(o) = outputs_unless(enc, subspace, data, &at, m, bs, pad, stop) else { return Ok(None) };
        let scores = Scores(score(&o, &data.labels, metrics, false));
        finished(&name, &scores)?;
        r.insert(name, scores);
    }
    Ok(Some(r))
}

/// The task loss of head logits `(B, C)`: cross-entropy for classes; for scores, the squared
/// error of a regression head, or with two label-word `poles` (LM-BFF) the cross-entropy
/// against the soft target `[1 − t, t]`, `t = (y − lo) / (hi − lo)` (the KL divergence LM-BFF
/// minimises, less the target's entropy, a constant).
fn loss(logits: &Tensor, labels: impl Iterator<Item = Label>, poles: Option<(f64, f64)>, device: Device) -> Tensor {
    let labels: Vec<Label> = labels.collect();
    match labels.first() {
        Some(Label::Score(_)) => {
            let y: Vec<f32> = labels.iter().map(|l| if let Label::Score(s) = l { *s } else { 0.0 }).collect();
            let y = Tensor::from_slice(&y).to(device);
            match poles {
                Some((lo, hi)) => {
                    let t = ((y - lo) / (hi - lo)).clamp(0.0, 1.0);
                    let target = Tensor::stack(&[1.0 - &t, t], 1);
                    -(target * logits.log_softmax(-1, tch::Kind::Float)).sum_dim_intlist(1, false, None).mean(None)
                }
                None => logits.select(1, 0).mse_loss(&y, tch::Reduction::Mean),
            }
        }
        _ => {
            let y: Vec<i64> = labels.iter().map(|l| if let Label::Class(c) = l { *c as i64 } else { 0 }).collect();
            logits.cross_entropy_for_logits(&Tensor::from_slice(&y).to(device))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_poles_are_fitted_by_the_soft_target() {
        let dev = Device::Cpu;
        let labels = [Label::Score(0.0), Label::Score(3.75), Label::Score(5.0)];
        let logits = Tensor::from_slice(&[0.3f32, -0.2, 1.0, 2.0, -1.0, 0.5]).view([3, 2]);
        let l = loss(&logits, labels.into_iter(), Some((0.0, 5.0)), dev).double_value(&[]);
        // −mean Σ target · log softmax, written out.
        let ls = |a: f64, b: f64| {
            let z = (a.exp() + b.exp()).ln();
            (a - z, b - z)
        };
        let rows = [((0.3, -0.2), 0.0), ((1.0, 2.0), 0.75), ((-1.0, 0.5), 1.0)];
        let want = -rows
            .iter()
            .map(|&((a, b), t)| {
                let (la, lb) = ls(a, b);
                (1.0 - t) * la + t * lb
            })
            .sum::<f64>()
            / 3.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
        // At the target probabilities the gradient vanishes: log-odds ln(t / (1 − t)).
        let t = 0.75f64;
        let at = Tensor::from_slice(&[0.0f32, (t / (1.0 - t)).ln() as f32]).view([1, 2]).set_requires_grad(true);
        loss(&at, [Label::Score(3.75)].into_iter(), Some((0.0, 5.0)), dev).backward();
        assert!(f64::try_from(at.grad().abs().max()).unwrap() < 1e-6);
        // Without poles a score is fitted by its squared error.
        let one = Tensor::from_slice(&[2.0f32]).view([1, 1]);
        assert!((loss(&one, [Label::Score(3.0)].into_iter(), None, dev).double_value(&[]) - 1.0).abs() < 1e-6);
    }
}
