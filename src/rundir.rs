//! Folders this tool writes (run directories and bench output folders): the marker file that
//! says the tool made a folder, the exclusive lock a process holds while it writes into one,
//! and the only way a folder is ever emptied (`--overwrite`).
//!
//! The marker doubles as the lock file: a writer opens it and takes an OS advisory lock
//! (`flock`) for as long as it runs. The OS releases the lock when the process ends, however it
//! ends (`kill -9` included), so a killed run can be resumed at once; a second writer is
//! refused with the holder's pid, which the holder writes into the marker.
//!
//! `--overwrite` removes only the files a run writes, and only in a folder that holds nothing
//! else: a folder that is not a run directory, or a run directory holding a file of the user's,
//! is refused with one line and nothing is deleted.
//!
//! [`Writing`] opens a run directory for `train` (new or resumed) and [`open_run`] reopens a
//! trained one for `eval`, `predict`, `export` and `plot`, with every check on the way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::method::subspace::Subspace;
use crate::session::Session;

/// The marker (and lock file) of a run directory.
pub const RUN_MARKER: &str = ".prefix-subspace-run";
/// The marker (and lock file) of a bench output folder.
pub const BENCH_MARKER: &str = ".prefix-subspace-bench";

/// The files and folders a run writes into its directory (with their `.tmp` siblings while
/// they are being written); `--overwrite` removes these and nothing else.
pub const RUN_ENTRIES: &[&str] = &[
    "config.toml",
    "split.json",
    "metrics.jsonl",
    "checkpoint.safetensors",
    "results.json",
    crate::state::RESUME_FILE,
    crate::state::TEST_PARTIAL_FILE,
    "plots",
];

/// What kind of folder a lock is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run directory (`train --out`, `train --resume`).
    Run,
    /// A bench output folder (`bench --out`).
    Bench,
}

impl Kind {
    fn marker(self) -> &'static str {
        match self {
            Kind::Run => RUN_MARKER,
            Kind::Bench => BENCH_MARKER,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Run => "run directory",
            Kind::Bench => "bench folder",
        }
    }
}

/// An exclusive lock on a folder, held until dropped (or until the process ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The marker file holding the lock.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` if needed, writes its marker and takes the exclusive lock on it; refuses with
/// one line naming the holder's pid when another process holds it.
pub fn lock(dir: &Path, kind: Kind) -> Result<Lock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(kind.marker());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text
                .lines()
                .find_map(|l| l.strip_prefix("pid "))
                .map(|p| format!("pid {}", p.trim()))
                .unwrap_or_else(|| "another process".into());
            return Err(Error::Input(format!(
                "{}: this {} is in use by prefix-subspace {holder} (a lock is held on {}); wait for it to finish or stop it first",
                dir.display(),
                kind.what(),
                kind.marker()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let text = format!("prefix-subspace {}\npid {}\n", kind.what(), std::process::id());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&path, e))?;
    Ok(Lock { _file: file, path })
}

/// Locks `out` for `bench` (run, merge, pack or unpack the logs): a new or empty folder, or one
/// a bench wrote (its marker, or `cells/` as a bench folder from git has). Any other folder
/// is refused before anything is written: `bench` writes `results.csv`, `summary.md`,
/// `cells/` and the logs archive there, and would replace files of the user's.
pub fn lock_bench_folder(out: &Path) -> Result<Lock> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Input(format!("--out {}: a file; expected a folder for the bench", out.display())));
    }
    let ours = out.join(BENCH_MARKER).is_file() || out.join("cells").is_dir();
    let empty = std::fs::read_dir(out).map_or(true, |mut d| d.next().is_none());
    if !ours && !empty {
        return Err(Error::Input(format!(
            "--out {}: not a bench folder (no {BENCH_MARKER}, no cells/) and not empty; bench writes results.csv, \
             summary.md and cells/ there and would replace files of yours: name a new or empty folder",
            out.display()
        )));
    }
    lock(out, Kind::Bench)
}

/// Whether `name` is an entry a run writes (or its temporary sibling).
fn is_run_entry(name: &str) -> bool {
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    name == RUN_MARKER || RUN_ENTRIES.contains(&base)
}

/// Whether `dir` holds anything but a run's marker (a folder that does not exist holds nothing).
pub fn has_content(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().any(|e| e.file_name() != RUN_MARKER),
        Err(_) => dir.exists(),
    }
}

/// Checks that `dir` may be emptied by `--overwrite`: it does not exist, or it is a run
/// directory (it has the marker, or a `config.toml` as run directories written before the
/// marker existed) holding only what runs write. Otherwise one line says why, and nothing is
/// touched.
pub fn check_replaceable(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(Error::Input(format!(
            "{}: --overwrite replaces only a run directory written by prefix-subspace, and {why}; nothing was deleted (choose another --out)",
            dir.display()
        )))
    };
    if !dir.is_dir() {
        return refuse("this is not a directory".into());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut foreign = Vec::new();
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_run_entry(&name) {
            foreign.push(name.clone());
        } else if name == "plots" {
            // Figures only (what `plot --run` writes).
            let figures_only = std::fs::read_dir(e.path())
                .map(|d| {
                    d.flatten().all(|f| {
                        let n = f.file_name().to_string_lossy().into_owned();
                        f.path().is_file() && (n.ends_with(".png") || n.ends_with(".svg") || n.ends_with(".tmp"))
                    })
                })
                .unwrap_or(false);
            if !figures_only {
                foreign.push("plots/ (with files that are not figures)".into());
            }
        }
        names.push(name);
    }
    if !foreign.is_empty() {
        foreign.sort();
        let more = if foreign.len() > 1 { format!(" (and {} more)", foreign.len() - 1) } else { String::new() };
        return refuse(format!("this folder holds \"{}\"{more}, which a run does not write", foreign[0]));
    }
    if !names.is_empty() && !names.iter().any(|n| n == RUN_MARKER || n == "config.toml") {
        return refuse(format!("this folder has neither {RUN_MARKER} nor config.toml"));
    }
    Ok(())
}

/// Empties a run directory for `--overwrite`: checks it as [`check_replaceable`] does, then
/// removes the entries a run writes (the marker, which the caller's lock holds, stays).
pub fn clear(dir: &Path) -> Result<()> {
    check_replaceable(dir)?;
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == RUN_MARKER {
            continue;
        }
        let p = e.path();
        let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        r.map_err(|err| Error::io(&p, err))?;
    }
    Ok(())
}

/// A run directory opened for writing by `train`: the loaded session, the lock held on the
/// directory until this is dropped, and whether this process created the directory.
pub struct Writing {
    /// The run's config, data, model and tokenizer.
    pub session: Session,
    /// The run directory.
    pub dir: PathBuf,
    /// Continues an interrupted run (`train --resume`).
    pub resuming: bool,
    created: bool,
    _lock: Lock,
}

impl Writing {
    /// A new run into `out` with `cfg`: refuses an existing non-empty directory (unless
    /// `overwrite`, and then only a run directory holding nothing but run files), loads
    /// everything that can fail on bad input before anything is written, then locks the
    /// directory (creating it) and empties it when `overwrite`.
    pub fn start(cfg: RunConfig, out: &Path, overwrite: bool) -> Result<Self> {
        let refuse_existing = || -> Result<()> {
            if out.exists() && !out.is_dir() {
                return Err(Error::Input(format!("{}: --out names a file, not a directory", out.display())));
            }
            if has_content(out) && !overwrite {
                return Err(Error::Input(format!(
                    "{}: run directory exists and is not empty (pass --overwrite to replace it, or --resume {} to continue it)",
                    out.display(),
                    out.display()
                )));
            }
            if overwrite {
                check_replaceable(out)?;
            }
            Ok(())
        };
        refuse_existing()?;
        let session = Session::open(cfg)?;
        let created = !out.exists();
        let lock = lock(out, Kind::Run)?;
        // Checked again under the lock: another process may have written meanwhile.
        refuse_existing()?;
        if overwrite {
            clear(out)?;
        }
        Ok(Self { session, dir: out.to_path_buf(), resuming: false, created, _lock: lock })
    }

    /// The interrupted run in `dir`, from its own config.toml with `sets` (only the keys that
    /// do not change numbers: `threads`, `checkpoint_every`, `device`) and `device` applied;
    /// checked against its saved state (config and data unchanged), then locked.
    pub fn resume(dir: &Path, sets: &[String], device: Option<&str>) -> Result<Self> {
        let cfg_path = dir.join("config.toml");
        let state = dir.join(crate::state::RESUME_FILE);
        for s in sets {
            let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k.trim());
            if !["threads", "checkpoint_every", "device"].contains(&key) {
                return Err(Error::Input(format!(
                    "--set {s}: with --resume only threads, checkpoint_every and device may change (the rest would change the run's numbers)"
                )));
            }
        }
        check_run_dir(dir)?;
        if !state.is_file() {
            if dir.join("results.json").is_file() {
                return Err(Error::Input(format!(
                    "{}: this run already finished (results.json is there); nothing to resume",
                    dir.display()
                )));
            }
            return Err(Error::Input(format!(
                "{}: no saved training state; the run stopped before its first checkpoint: train it again with --overwrite",
                state.display()
            )));
        }
        let mut cfg = RunConfig::from_file(&cfg_path)?.apply_overrides(sets)?;
        if let Some(d) = device {
            cfg.device = d.to_string();
        }
        check_data_paths(&cfg, &cfg_path, DataDirFlag::NoFlag)?;
        let pos = crate::state::saved_position(dir)?
            .ok_or_else(|| Error::Input(format!("{}: not found", state.display())))?;
        if let Some(p) = &pos.prompt {
            cfg.keep_prompt(p);
        }
        let session = Session::open(cfg)?;
        crate::state::check_position(&pos, &session, dir)?;
        let lock = lock(dir, Kind::Run)?;
        Ok(Self { session, dir: dir.to_path_buf(), resuming: true, created: false, _lock: lock })
    }

    /// After training failed with `e`: a new run that saved nothing to continue from or to
    /// evaluate (no checkpoint) leaves no directory behind that looks like a run — its files
    /// are removed, and the directory too when this process created it. Interrupted runs and
    /// resumed runs are left as they are.
    pub fn discard_if_unsaved(&self, e: &Error) {
        let out = &self.dir;
        if matches!(e, Error::Interrupted { .. }) || self.resuming || out.join("checkpoint.safetensors").exists() {
            return;
        }
        if clear(out).is_ok() && self.created {
            let _ = std::fs::remove_file(out.join(RUN_MARKER));
            let _ = std::fs::remove_dir(out);
        }
    }
}

/// Whether the command that reopens a run takes `--data-dir`, and whether it was given.
#[derive(Clone, Copy, PartialEq)]
enum DataDirFlag {
    /// The command has no such flag (`train --resume`).
    NoFlag,
    /// The command has it; it was not given.
    NotGiven,
    /// It was given, and replaced the run's `data_dir`.
    Given,
}

/// A run's data paths are stored as `train` was given them, so a relative one is read from
/// the directory a later command runs in: say so, instead of failing on a file inside it.
fn check_data_paths(cfg: &RunConfig, cfg_path: &Path, flag: DataDirFlag) -> Result<()> {
    let glue = crate::data::glue::task(&cfg.task).is_ok();
    let user = cfg.task.eq_ignore_ascii_case("user");
    let paths = [
        ("data_dir", cfg.data_dir.as_ref(), glue),
        ("train_file", cfg.train_file.as_ref(), user),
        ("test_file", cfg.test_file.as_ref(), user),
    ];
    for (key, path, read) in paths {
        let Some(path) = path.filter(|p| read && !p.exists()) else { continue };
        if key == "data_dir" && flag == DataDirFlag::Given {
            return Err(Error::Input(format!("--data-dir {}: not found", path.display())));
        }
        let remedy = if key == "data_dir" && flag != DataDirFlag::NoFlag {
            ", or pass --data-dir DIR (the run checks by hash that DIR gives it the same split and texts)"
        } else {
            ""
        };
        let why = if path.is_relative() {
            let here = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "here".into());
            format!(
                "not found from {here}: a relative path in a run's config is read from the directory the command runs in; run it from the folder `train` ran in{remedy}"
            )
        } else {
            format!("not found (moved or deleted?){remedy}")
        };
        return Err(Error::Input(format!("{key} = \"{}\" in {}: {why}", path.display(), cfg_path.display())));
    }
    Ok(())
}

/// Refuses a file where a run directory is expected (what a shell completes `run/config.toml`
/// to), with one line naming it and what to give instead.
pub fn refuse_file(dir: &Path) -> Result<()> {
    if dir.is_file() {
        return Err(Error::Input(format!(
            "{}: a file, not a run directory (give the folder `train --out` wrote)",
            dir.display()
        )));
    }
    Ok(())
}

/// Refuses `dir` with one line naming it unless it is a run directory (it has `config.toml`): a
/// file (often the run's own `config.toml` or `results.json`) is said to be one.
fn check_run_dir(dir: &Path) -> Result<()> {
    refuse_file(dir)?;
    if !dir.join("config.toml").is_file() {
        return Err(Error::Input(format!(
            "{}: not a run directory (no config.toml); train one with `prefix-subspace train`",
            dir.display()
        )));
    }
    Ok(())
}

/// Reopens a trained run for `eval`, `predict`, `export` and `plot`: its config (with the
/// dense-layer products in `precision` instead of the run's own when given, a note on stderr
/// says so; with its GLUE folder at `data_dir` when given), its data (the same split and the
/// same texts and labels, checked by hash), a decoder's prompt as its results.json records it,
/// and the weights of its checkpoint. An unfinished run is used with a note naming its
/// checkpoint's step.
pub fn open_run(
    run: &Path,
    precision: Option<&str>,
    data_dir: Option<&Path>,
) -> Result<(Session, tch::nn::VarStore, Subspace)> {
    let cfg_path = run.join("config.toml");
    check_run_dir(run)?;
    let mut cfg = RunConfig::from_file(&cfg_path)?;
    if let Some(p) = precision {
        let chosen = crate::config::Precision::parse(p)?;
        if chosen != cfg.precision {
            eprintln!(
                "note: dense-layer products in {}; the run was trained in {}",
                chosen.name(),
                cfg.precision.name()
            );
        }
        cfg.precision = chosen;
    }
    if let Some(dir) = data_dir {
        if crate::data::glue::task(&cfg.task).is_err() {
            return Err(Error::Input(format!(
                "--data-dir {}: the run's task {} does not read a GLUE folder (its data: see {})",
                dir.display(),
                cfg.task,
                cfg_path.display()
            )));
        }
        cfg.data_dir = Some(dir.to_path_buf());
    }
    let flag = if data_dir.is_some() { DataDirFlag::Given } else { DataDirFlag::NotGiven };
    check_data_paths(&cfg, &cfg_path, flag)?;
    // A decoder run is read back through the prompt it was trained with (recorded in
    // results.json, or in the resume state of an unfinished run), even where this build's
    // default template or label words for its task differ.
    let recorded = match crate::results::Results::recorded_prompt(&run.join("results.json"))? {
        None => crate::state::saved_position(run)?.and_then(|pos| pos.prompt),
        found => found,
    };
    if let Some(p) = &recorded {
        cfg.keep_prompt(p);
    }
    let mut session = Session::open(cfg)?;
    let split_path = run.join("split.json");
    if let Ok(text) = std::fs::read_to_string(&split_path) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: invalid JSON ({e})", split_path.display())))?;
        let hash = session.task.split.split_hash();
        if v.get("hash").and_then(|h| h.as_str()) != Some(hash.as_str()) {
            return Err(Error::Input(format!(
                "{}: the data now gives a different few-shot split (hash {hash}): the data files changed since training",
                split_path.display()
            )));
        }
        if v.get("data_hash").and_then(|h| h.as_str()).is_some_and(|h| h != session.data_hash()) {
            return Err(Error::Input(format!(
                "{}: the texts or labels of the run's examples changed since training (data hash differs): the data files were edited",
                split_path.display()
            )));
        }
    }
    let checkpoint = run.join("checkpoint.safetensors");
    if !checkpoint.is_file() {
        // A finished run without its weights (deleted, or a bench cell kept in git), or one
        // that stopped before it saved any.
        return Err(Error::Input(if run.join("results.json").is_file() {
            format!(
                "{}: the run finished, but its weights (checkpoint.safetensors) are not there (a bench folder kept in git holds each cell's config, split and results, not its weights); `prefix-subspace train --config {} --out DIR` trains it again to the same numbers",
                run.display(),
                cfg_path.display()
            )
        } else {
            format!(
                "{}: no checkpoint.safetensors: the run stopped before its first dev evaluation, so there is nothing to evaluate (train it again with --overwrite)",
                run.display()
            )
        }));
    }
    if !run.join("results.json").is_file() {
        let best = crate::state::log_lines(&run.join("metrics.jsonl"), "eval")
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v["best"] == true)
            .filter_map(|v| v["step"].as_u64())
            .next_back();
        eprintln!(
            "note: {} is unfinished (no results.json: training was interrupted or is still running); using its best checkpoint so far{}",
            run.display(),
            best.map(|s| format!(", from step {s}")).unwrap_or_default()
        );
    }
    let (vs, s) = session.load_subspace(&checkpoint)?;
    Ok((session, vs, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = lock(&dir, Kind::Run).unwrap();
        let e = lock(&dir, Kind::Run).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(!e.contains('\n'), "{e}");
        drop(first);
        lock(&dir, Kind::Run).unwrap();
    }

    #[test]
    fn only_run_directories_with_nothing_foreign_are_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        // Not a run directory: a data file and a folder of the user's.
        let user = tmp.path().join("user");
        std::fs::create_dir_all(user.join("precious")).unwrap();
        std::fs::write(user.join("train.csv"), "text,label\n").unwrap();
        let e = clear(&user).unwrap_err().to_string();
        assert!(e.contains("nothing was deleted") && e.contains("precious"), "{e}");
        assert!(user.join("train.csv").is_file() && user.join("precious").is_dir());
        // A run directory with a file of the user's in it: refused too.
        let run = tmp.path().join("run");
        std::fs::create_dir_all(run.join("plots")).unwrap();
        for f in ["config.toml", "results.json", "metrics.jsonl", "results.json.tmp", RUN_MARKER] {
            std::fs::write(run.join(f), "x").unwrap();
        }
        std::fs::write(run.join("plots/training.png"), "x").unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();
        assert!(clear(&run).unwrap_err().to_string().contains("notes.txt"));
        assert!(run.join("config.toml").is_file());
        std::fs::remove_file(run.join("notes.txt")).unwrap();
        clear(&run).unwrap();
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(RUN_MARKER)]);
        // A folder of run-like names without marker or config.toml is not a run directory.
        let odd = tmp.path().join("odd");
        std::fs::create_dir_all(&odd).unwrap();
        std::fs::write(odd.join("results.json"), "{}").unwrap();
        assert!(clear(&odd).is_err() && odd.join("results.json").is_file());
        // A file is not a directory.
        assert!(clear(&user.join("train.csv")).is_err());
        // Nothing there: nothing to do.
        clear(&tmp.path().join("missing")).unwrap();
    }
}
