//! Running the cells of a grid, each a child `train` process ([`run_cells`]), and where they
//! stand ([`cell_status`], [`status_report`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::results::Results;

use super::{current_numerics, write_tables, Cell};

/// Whether `run_dir` holds a run of `config` (numerics versioned, same numbers-changing settings).
fn same_run(run_dir: &Path, config: &RunConfig) -> bool {
    current_numerics(run_dir)
        && RunConfig::from_file(&run_dir.join("config.toml")).is_ok_and(|c| c.comparable() == config.comparable())
}

/// Where one cell of a grid stands, read from its folder (nothing runs).
#[derive(Debug, Clone, PartialEq)]
pub enum CellStatus {
    /// Its `results.json` is there, of this cell's config; cell-seconds spent (training and
    /// test evaluation).
    Finished { seconds: f64 },
    /// A saved state of this cell's config to continue from: the last step logged, and the test
    /// points already scored.
    Interrupted { step: usize, test_points: usize },
    /// Finished or saved with other settings or another numerics version: runs again.
    Stale,
    /// Nothing to continue from: runs from the start.
    ToRun,
}

/// Reads where the cell of `config` in `run_dir` stands.
pub fn cell_status(run_dir: &Path, config: &RunConfig) -> CellStatus {
    let finished = run_dir.join("results.json").is_file();
    let saved = run_dir.join(crate::state::RESUME_FILE).is_file();
    if !finished && !saved {
        return CellStatus::ToRun;
    }
    if !same_run(run_dir, config) {
        return CellStatus::Stale;
    }
    if finished {
        let r: Option<Results> =
            std::fs::read_to_string(run_dir.join("results.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let secs = |x: f64| if x.is_nan() { 0.0 } else { x };
        let seconds = r.map_or(0.0, |r| secs(r.train_seconds) + secs(r.test_seconds));
        return CellStatus::Finished { seconds };
    }
    // No log yet: the cell stopped before its first step.
    let step = crate::state::log_lines(&run_dir.join("metrics.jsonl"), "step")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0) as usize;
    let test_points = crate::state::TestPartial::read(&run_dir.join(crate::state::TEST_PARTIAL_FILE))
        .map_or(0, |p| p.sets.values().map(|m| m.len()).sum());
    CellStatus::Interrupted { step, test_points }
}

/// How many cells of one task stand where, and the cell-seconds the finished ones took.
#[derive(Debug, Default, Clone, Copy)]
struct StatusCounts {
    finished: usize,
    interrupted: usize,
    stale: usize,
    to_run: usize,
    seconds: f64,
    /// Estimated cell-seconds of the cells not finished ([`estimate_left`]).
    left: f64,
}

impl StatusCounts {
    fn add(&mut self, o: &StatusCounts) {
        self.finished += o.finished;
        self.interrupted += o.interrupted;
        self.stale += o.stale;
        self.to_run += o.to_run;
        self.seconds += o.seconds;
        self.left += o.left;
    }

    fn line(&self, task: &str) -> String {
        let cells = self.finished + self.interrupted + self.stale + self.to_run;
        format!(
            "{:<10} {:>6} {:>9} {:>12} {:>6} {:>7} {:>13.0} {:>12.0}\n",
            task, cells, self.finished, self.interrupted, self.stale, self.to_run, self.seconds, self.left
        )
    }
}

/// Where an estimate of a cell's cost comes from ([`estimate_left`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Basis {
    /// The mean of the finished cells of its task and variant.
    SameTask,
    /// Its variant has no finished cell on its task: the mean over the other tasks.
    OtherTasks,
    /// Its variant has no finished cell at all: not estimated.
    None,
}

/// The estimated cell-seconds of each cell not finished, from the finished ones: the mean of
/// its task and variant, else of its variant on any task (a rough figure where test sets
/// differ in size). `statuses[i]` is the status of `cells[i]`.
fn estimate_left(cells: &[Cell], statuses: &[CellStatus]) -> Vec<(f64, Basis)> {
    // (sum, count) of the finished cells' seconds per (task, variant) and per variant.
    let mut by_task: BTreeMap<(&str, &str), (f64, usize)> = BTreeMap::new();
    let mut by_variant: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (c, st) in cells.iter().zip(statuses) {
        if let CellStatus::Finished { seconds } = *st {
            for (sum, n) in [
                by_task.entry((c.config.task_label(), c.variant.as_str())).or_default(),
                by_variant.entry(c.variant.as_str()).or_default(),
            ] {
                *sum += seconds;
                *n += 1;
            }
        }
    }
    let mean = |(sum, n): (f64, usize)| sum / n as f64;
    cells
        .iter()
        .zip(statuses)
        .map(|(c, st)| {
            if matches!(st, CellStatus::Finished { .. }) {
                return (0.0, Basis::SameTask);
            }
            if let Some(&s) = by_task.get(&(c.config.task_label(), c.variant.as_str())) {
                (mean(s), Basis::SameTask)
            } else if let Some(&s) = by_variant.get(c.variant.as_str()) {
                (mean(s), Basis::OtherTasks)
            } else {
                (0.0, Basis::None)
            }
        })
        .collect()
}

/// A table of where the cells of a grid stand under `out/cells/`: per task, how many are
/// finished, interrupted (with a state to continue from), stale or still to run, the
/// cell-seconds the finished ones took and an estimate of what the others will take
/// ([`estimate_left`]; an interrupted cell counts in full); then one line per interrupted cell.
pub fn status_report(cells: &[Cell], out: &Path) -> String {
    let statuses: Vec<CellStatus> =
        cells.iter().map(|c| cell_status(&out.join("cells").join(&c.id), &c.config)).collect();
    let estimates = estimate_left(cells, &statuses);
    let mut tasks: Vec<(String, StatusCounts)> = Vec::new();
    let mut interrupted = Vec::new();
    for ((c, status), (left, _)) in cells.iter().zip(&statuses).zip(&estimates) {
        let task = c.config.task_label();
        let i = match tasks.iter().position(|(t, _)| t == task) {
            Some(i) => i,
            None => {
                tasks.push((task.to_string(), StatusCounts::default()));
                tasks.len() - 1
            }
        };
        let n = &mut tasks[i].1;
        n.left += left;
        match *status {
            CellStatus::Finished { seconds } => {
                n.finished += 1;
                n.seconds += seconds;
            }
            CellStatus::Interrupted { step, test_points } => {
                n.interrupted += 1;
                let of = if c.config.max_steps > 0 { format!("/{}", c.config.max_steps) } else { String::new() };
                interrupted.push(format!("  {}: step {step}{of}, {test_points} test point(s) scored", c.id));
            }
            CellStatus::Stale => n.stale += 1,
            CellStatus::ToRun => n.to_run += 1,
        }
    }
    let mut t = format!(
        "{:<10} {:>6} {:>9} {:>12} {:>6} {:>7} {:>13} {:>12}\n",
        "task", "cells", "finished", "interrupted", "stale", "to run", "cell-seconds", "left (est.)"
    );
    let mut total = StatusCounts::default();
    for (task, n) in &tasks {
        total.add(n);
        t += &n.line(task);
    }
    if tasks.len() > 1 {
        t += &total.line("total");
    }
    let open = estimates.iter().zip(&statuses).filter(|(_, s)| !matches!(s, CellStatus::Finished { .. }));
    let count = |b: Basis| open.clone().filter(|((_, basis), _)| *basis == b).count();
    let (same, other, none) = (count(Basis::SameTask), count(Basis::OtherTasks), count(Basis::None));
    if same + other + none > 0 {
        t += &format!(
            "left (est.): {:.0} cell-seconds ({:.1} hours at one cell at a time) for the cells not finished ({}):\n  \
             {same} at the mean of the finished cells of their task and variant, {other} at that of their\n  \
             variant on the other tasks, {none} not counted (no finished cell of their variant)\n",
            total.left,
            total.left / 3600.0,
            same + other + none
        );
    }
    if !interrupted.is_empty() {
        t += "interrupted, with a saved state (running now, or continued by the next bench):\n";
        t += &interrupted.join("\n");
        t += "\n";
    }
    t
}

/// Makes a cell's process receive SIGTERM when the thread that started it dies, so a bench that
/// is killed (even with SIGKILL) takes its running cells down with it instead of leaving them
/// running unwatched; `train` answers SIGTERM by saving its state after the step (the next bench
/// resumes it). Not SIGINT: the kernel sends the signal again each time the orphan is handed to
/// a new parent (another thread of the dying bench, then init), and a second SIGINT means
/// "quit now, do not save". The thread outlives the child otherwise: it waits for its exit.
fn interrupt_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let bench = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A bench that died before the line above sends no signal: do not start at all
                // (ESRCH: no allocation between fork and exec).
                if libc::getppid() as u32 != bench {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Runs the cells not yet finished under `out/cells/`, `jobs` at a time, each as a child
/// process of `exe train`, single-threaded whatever `jobs` is: a run's last bits depend on its
/// thread count, so a cell gives the same numbers under `--jobs 1` as under `--jobs N`.
/// Returns the number of failures.
pub fn run_cells(exe: &Path, cells: Vec<Cell>, out: &Path, jobs: usize) -> Result<usize> {
    use std::sync::{Arc, Mutex};
    let dir = out.join("cells");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let total = cells.len();
    // Each cell still to run, and whether it continues from its saved state.
    let todo: Vec<(Cell, bool)> = cells
        .into_iter()
        .filter_map(|c| {
            let resume = match cell_status(&dir.join(&c.id), &c.config) {
                CellStatus::Finished { .. } => return None,
                CellStatus::Stale => {
                    eprintln!("bench: {} was run with other settings: running it again", dir.join(&c.id).display());
                    false
                }
                CellStatus::Interrupted { .. } => true,
                CellStatus::ToRun => false,
            };
            Some((c, resume))
        })
        .collect();
    eprintln!(
        "bench: {} cells, {} already finished, {} to run ({} at a time)",
        total,
        total - todo.len(),
        todo.len(),
        jobs
    );
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(todo)));
    // Set when a cell was interrupted (it saved its state and exited with status 130): the
    // user asked to stop, so no further cell starts.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(Mutex::new((0usize, 0usize))); // (finished, failed)
    let n_todo = queue.lock().expect("queue").len();
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, done, dir, exe, out, stop) =
                (queue.clone(), done.clone(), dir.clone(), exe.to_path_buf(), out.to_path_buf(), stop.clone());
            std::thread::spawn(move || loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Some((mut cell, resume)) = queue.lock().expect("queue").pop_front() else { break };
                cell.config.threads = 1;
                let cfg_path = dir.join(format!("{}.toml", cell.id));
                let log_path = dir.join(format!("{}.log", cell.id));
                let run_dir = dir.join(&cell.id);
                let t0 = std::time::Instant::now();
                let status = if crate::atomic::write_atomic(&cfg_path, cell.config.to_toml().as_bytes()).is_err() {
                    None
                } else {
                    std::fs::File::create(&log_path)
                        .and_then(|log| {
                            let mut cmd = std::process::Command::new(&exe);
                            if resume {
                                let threads = format!("threads={}", cell.config.threads);
                                cmd.args(["train", "--quiet", "--set", &threads, "--resume"]).arg(&run_dir);
                            } else {
                                cmd.args(["train", "--quiet", "--overwrite", "--config"])
                                    .arg(&cfg_path)
                                    .arg("--out")
                                    .arg(&run_dir);
                            }
                            interrupt_with_parent(&mut cmd);
                            cmd.stdout(log.try_clone()?).stderr(log).status()
                        })
                        .ok()
                };
                let ok = status.is_some_and(|s| s.success());
                let interrupted = status.and_then(|s| s.code()) == Some(130);
                let mut d = done.lock().expect("done");
                if interrupted {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    eprintln!(
                        "bench: {} interrupted after {:.0} s: its state is saved; no further cell starts \
                         (rerun the same bench command to continue)",
                        cell.id,
                        t0.elapsed().as_secs_f64()
                    );
                    drop(d);
                    continue;
                }
                d.0 += 1;
                if !ok {
                    d.1 += 1;
                }
                eprintln!(
                    "bench: [{}/{}] {} {} in {:.0} s{}",
                    d.0,
                    n_todo,
                    cell.id,
                    if ok { "finished" } else { "FAILED" },
                    t0.elapsed().as_secs_f64(),
                    if ok { String::new() } else { format!(" (see {})", log_path.display()) }
                );
                if let Err(e) = write_tables(std::slice::from_ref(&out), &out) {
                    eprintln!("bench: could not update the tables: {e}");
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let failed = done.lock().expect("done").1;
    write_tables(std::slice::from_ref(&out.to_path_buf()), out)?;
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(task: &str, variant: &str) -> Cell {
        let config = RunConfig { task: task.into(), ..Default::default() };
        Cell { id: format!("{task}-{variant}"), config, variant: variant.into() }
    }

    #[test]
    fn cells_left_are_estimated_from_their_task_and_variant_else_their_variant() {
        let cells = [
            cell("sst2", "lora"),
            cell("sst2", "lora"),
            cell("sst2", "lora"),
            cell("rte", "lora"),
            cell("rte", "icl"),
            cell("rte", "lora"),
        ];
        let done = |seconds| CellStatus::Finished { seconds };
        let statuses = [
            done(100.0),
            done(300.0),
            CellStatus::Interrupted { step: 10, test_points: 0 },
            done(1000.0),
            CellStatus::ToRun,
            CellStatus::Stale,
        ];
        let e = estimate_left(&cells, &statuses);
        assert_eq!(e[2], (200.0, Basis::SameTask), "the mean of sst2's finished lora cells");
        assert_eq!(e[5], (1000.0, Basis::SameTask));
        assert_eq!(e[4], (0.0, Basis::None), "no icl cell is finished anywhere");
        let e = estimate_left(&cells[2..], &statuses[2..]);
        assert_eq!(e[0], (1000.0, Basis::OtherTasks), "sst2 lora from rte's");
    }
}
