//! The resumable state of a training run (`resume.safetensors`: weights, optimizer moments,
//! best weights and the position in the data) and the partial test scores
//! (`test-partial.json`), with the checks that a resume continues the same run.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn;
use tch::{Device, Tensor};

use crate::atomic::{write_atomic, write_tensors_atomic};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::session::Session;

/// The file holding a run's resumable state.
pub const RESUME_FILE: &str = "resume.safetensors";

/// The test scores a run has finished so far, written after each point of the final test
/// evaluation (centroid, each vertex, the ensemble), so that a resumed run scores only the
/// points still missing; removed with the resume state once `results.json` is written.
pub const TEST_PARTIAL_FILE: &str = "test-partial.json";

/// What [`TEST_PARTIAL_FILE`] holds: seconds spent in the test evaluation so far, and the
/// scores per test set and point.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TestPartial {
    pub(crate) seconds: f64,
    pub(crate) sets: BTreeMap<String, crate::results::TestScores>,
}

impl TestPartial {
    pub(crate) fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "{}: unreadable partial test scores ({e}); delete the file to score every point again",
                path.display()
            ))
        })
    }

    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self).expect("scores serialise").as_bytes())
    }
}

/// Where training stands after a step: everything, with the tensors saved beside it, that
/// the rest of the run depends on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Position {
    /// Optimizer steps done.
    pub(crate) step: usize,
    /// The epoch the next step belongs to (1-based).
    pub(crate) epoch: usize,
    /// The index of the next batch within that epoch.
    pub(crate) batch: usize,
    /// Training examples seen.
    pub(crate) seen: usize,
    /// Seconds spent in training steps, and in training in total (evaluations included).
    pub(crate) step_seconds: f64,
    pub(crate) train_seconds: f64,
    /// Evaluations since the best one.
    pub(crate) evals_since_best: usize,
    /// The best evaluation: dev metric, step, epoch (its weights are saved as `best/NAME`).
    pub(crate) best: Option<(f64, usize, usize)>,
    /// The optimizer's per-parameter step counts.
    pub(crate) adam_steps: BTreeMap<String, i64>,
    /// The few-shot split the run trains on (a resume on changed data is refused).
    pub(crate) split_hash: String,
    /// Training is over and the saved weights are the best ones: a resume goes straight to
    /// the test evaluation (the state of a run interrupted during it).
    #[serde(default)]
    pub(crate) trained: bool,
    /// The run's numbers-changing config (TOML) when it started: a resume after config.toml
    /// was edited is refused. Absent in states saved by older builds.
    #[serde(default)]
    pub(crate) config: Option<String>,
    /// [`Session::data_hash`] when the run started (absent in states of older builds).
    #[serde(default)]
    pub(crate) data_hash: Option<String>,
    /// A decoder's prompt when the run started (template and label words, defaults
    /// resolved): resuming or evaluating the unfinished run uses it, even where a later
    /// build's default prompt for the task differs. None for encoders; absent in states of
    /// older builds.
    #[serde(default)]
    pub(crate) prompt: Option<crate::prompt::Prompt>,
}

impl Position {
    /// Epochs started so far.
    pub(crate) fn epochs(&self) -> usize {
        if self.batch == 0 {
            self.epoch - 1
        } else {
            self.epoch
        }
    }
}

/// Saves the resumable state atomically: weights, optimizer moments, the best weights, and
/// the position (as JSON bytes in the tensor `position`).
pub(crate) fn save_state(
    path: &Path,
    vs: &nn::VarStore,
    opt: &AdamW,
    pos: &Position,
    best: &[(String, Tensor)],
) -> Result<()> {
    let (mut tensors, steps) = opt.state();
    let pos = Position { adam_steps: steps, ..pos.clone() };
    for (k, v) in vs.variables() {
        tensors.push((format!("param/{k}"), v.detach()));
    }
    for (k, v) in best {
        tensors.push((format!("best/{k}"), v.shallow_clone()));
    }
    let json = serde_json::to_vec(&pos).expect("position serialises");
    tensors.push(("position".into(), Tensor::from_slice(&json.iter().map(|&b| b as i64).collect::<Vec<_>>())));
    let mut tensors: Vec<(String, Tensor)> =
        tensors.into_iter().map(|(k, t)| (k, t.to(Device::Cpu).contiguous())).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomic(&tensors, path)
}

/// Restores what [`save_state`] wrote into `vs` and `opt`; returns the position and the best
/// weights.
pub(crate) fn load_state(path: &Path, vs: &nn::VarStore, opt: &mut AdamW) -> Result<(Position, Vec<(String, Tensor)>)> {
    let what = path.display().to_string();
    let mut tensors: BTreeMap<String, Tensor> = crate::model::load::Weights::read(path, vs.device())?.into_map();
    let bytes: Vec<i64> = tensors
        .remove("position")
        .ok_or_else(|| Error::Input(format!("{what}: not a resume file (no \"position\" tensor)")))
        .and_then(|t| Vec::<i64>::try_from(&t).map_err(Error::from))?;
    let pos = parse_position(bytes).map_err(|e| Error::Input(format!("{what}: {e}")))?;
    let _guard = tch::no_grad_guard();
    let mut best = Vec::new();
    for (name, mut var) in vs.variables() {
        let shape = var.size();
        let get = |key: String| -> Result<&Tensor> {
            let t = tensors.get(&key).ok_or_else(|| Error::Input(format!("{what}: no tensor \"{key}\"")))?;
            if t.size() != shape {
                return Err(Error::Input(format!(
                    "{what}: tensor \"{key}\" has shape {:?}, the run's config implies {:?}",
                    t.size(),
                    shape
                )));
            }
            Ok(t)
        };
        var.copy_(get(format!("param/{name}"))?);
        if pos.best.is_some() {
            best.push((name.clone(), get(format!("best/{name}"))?.copy()));
        }
    }
    opt.load_state(&tensors, &pos.adam_steps, &what)?;
    Ok((pos, best))
}

/// The training position saved in `dir`'s resume state, read without its tensors: none when
/// the run has no resume state (it finished, or stopped before its first save); one line
/// naming the file when it is truncated or corrupted.
pub(crate) fn saved_position(dir: &Path) -> Result<Option<Position>> {
    let path = dir.join(RESUME_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bad = |why: String| Error::Input(format!("{}: {why}; the file is truncated or corrupted", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let t = st.tensor("position").map_err(|_| bad("not a resume file (no \"position\" tensor)".into()))?;
    if t.dtype() != safetensors::Dtype::I64 {
        return Err(bad("the \"position\" tensor is not int64".into()));
    }
    parse_position(t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))))
        .map(Some)
        .map_err(bad)
}

/// The position [`save_state`] stored as the JSON bytes of an int64 tensor, one byte each.
fn parse_position(bytes: impl IntoIterator<Item = i64>) -> std::result::Result<Position, String> {
    let json: Vec<u8> = bytes.into_iter().map(|b| b as u8).collect();
    serde_json::from_slice(&json).map_err(|e| format!("unreadable training position ({e})"))
}

/// Checks that the interrupted run in `dir`, at `pos`, can continue with `session`: the
/// config's numbers-changing keys are those it started with (config.toml was not edited; the
/// prompt it started with counts as set) and its examples' texts and labels are unchanged.
pub(crate) fn check_position(pos: &Position, session: &Session, dir: &Path) -> Result<()> {
    let cfg = &session.cfg;
    if let Some(saved) = &pos.config {
        let mut started = RunConfig::from_toml_text(saved)
            .map_err(|e| Error::Input(format!("{}: unreadable saved config ({e})", dir.join(RESUME_FILE).display())))?;
        if let Some(p) = &pos.prompt {
            started.keep_prompt(p);
        }
        let keys = started.differing_keys(&cfg.comparable());
        if !keys.is_empty() {
            return Err(Error::Input(format!(
                "{}: {} changed since the run started ({}); resuming would change the run's numbers: put the old value back, or train again with --overwrite",
                dir.join("config.toml").display(),
                keys.join(", "),
                keys.iter().map(|k| describe_change(&started, cfg, k)).collect::<Vec<_>>().join("; ")
            )));
        }
    }
    if pos.data_hash.as_ref().is_some_and(|h| *h != session.data_hash()) {
        return Err(Error::Input(format!(
            "{}: the texts or labels of the run's examples changed since it started (data hash differs): the data files were edited; restore them, or train again with --overwrite",
            dir.display()
        )));
    }
    Ok(())
}

/// The lines of a run's `metrics.jsonl` of one `kind` (`"step"`, `"eval"`, `"probe"`), in
/// order. A line that is not JSON (one cut short when the process was killed) is skipped.
pub(crate) fn log_lines(path: &Path, kind: &str) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect())
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run rewrites what follows).
pub(crate) fn truncate_log(path: &Path, step: usize) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}

/// `key`'s value when the run started and now, for a message.
pub(crate) fn describe_change(started: &RunConfig, now: &RunConfig, key: &str) -> String {
    let get = |c: &RunConfig| {
        toml::Value::try_from(c.comparable())
            .ok()
            .and_then(|v| v.get(key).map(|x| x.to_string()))
            .unwrap_or_else(|| "unset".into())
    };
    format!("{key}: {} then, {} now", get(started), get(now))
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
