//! The benchmark grid: tasks × few-shot protocol (K) × split seeds × methods (and ablation
//! variants), each cell one `train` run in its own directory. Resumable (a cell with a
//! `results.json` is never recomputed), shardable (`--shard I/N`), and summarised as
//! `results.csv` (one row per run) and `summary.md` (mean (std) over split seeds).
//!
//! This file holds the grid's description ([`BenchConfig`], its [`Cell`]s and shards);
//! `tables` the tables of finished cells, `logs` the archive of per-step logs, and `run` the
//! running of cells and where they stand.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::{Protocol, RunConfig};
use crate::error::{Error, Result};

mod logs;
mod run;
mod tables;

pub use logs::{pack_logs, read_logs_archive, run_log, unpack_logs, LogsCount, LOGS_ARCHIVE};
pub use run::{cell_status, run_cells, status_report, CellStatus};
pub use tables::{collect, main_entry, mean_std, results_csv, stale_runs, summary_md, write_rows, write_tables, Row};

/// Refuses `dir` with one line naming it unless it is a bench folder (it has `cells/`): what
/// reads a bench's results or logs ([`collect`], [`pack_logs`], [`unpack_logs`]) calls it first.
pub fn check_folder(dir: &Path) -> Result<()> {
    if dir.join("cells").is_dir() {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{}: not a bench folder (no cells/); give a folder written by `prefix-subspace bench`",
        dir.display()
    )))
}

/// One method setting of the grid: a method plus config overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name in tables and directory names.
    pub name: String,
    /// The method.
    pub method: String,
    /// Config overrides, `key = value`.
    #[serde(default)]
    pub set: toml::Table,
    /// The grid's tasks this variant runs on (all of them when absent; an empty list is an
    /// error): a method run on a subset of the tasks.
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
}

/// A benchmark description (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Tasks.
    pub tasks: Vec<String>,
    /// Protocol of every cell.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// K values.
    pub shots: Vec<usize>,
    /// Split seeds.
    pub split_seeds: Vec<u64>,
    /// Training seed of every cell.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Methods run with their defaults (each becomes a variant named after it).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Further variants (ablations).
    #[serde(default)]
    pub variant: Vec<Variant>,
    /// Overrides applied to every cell before the variant's own.
    #[serde(default)]
    pub base: toml::Table,
    /// Overrides of one task's cells (`[task_set.qqp]`), applied after `base` and before the
    /// variant's own, e.g. a stratified `test_limit` for the tasks with large test sets.
    #[serde(default)]
    pub task_set: BTreeMap<String, toml::Table>,
}

fn default_protocol() -> Protocol {
    Protocol::PerClass
}
fn default_seed() -> u64 {
    1
}

/// One run of the grid.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Directory name under `cells/`.
    pub id: String,
    /// The run's full config.
    pub config: RunConfig,
    /// Variant name.
    pub variant: String,
}

impl BenchConfig {
    /// Reads a bench TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: {}", path.display(), crate::config::toml_error(&e, &text))))
    }

    /// All cells, in a stable order (split seed, task, K, variant).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        let mut variants: Vec<Variant> = self
            .methods
            .iter()
            .map(|m| Variant { name: m.clone(), method: m.clone(), set: toml::Table::new(), tasks: None })
            .collect();
        variants.extend(self.variant.iter().cloned());
        for t in &self.tasks {
            check_name("task", t)?;
        }
        if let Some(t) = self.task_set.keys().find(|t| !self.tasks.contains(t)) {
            return Err(Error::Input(format!(
                "bench: [task_set.{t}] names a task that is not in `tasks` ({})",
                self.tasks.join(", ")
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for v in &variants {
            check_name("variant", &v.name)?;
            crate::method::parse(&v.method)?;
            if !names.insert(v.name.clone()) {
                return Err(Error::Input(format!("bench: variant name \"{}\" is used twice", v.name)));
            }
            if v.tasks.as_ref().is_some_and(|t| t.is_empty()) {
                return Err(Error::Input(format!(
                    "bench: variant \"{}\" has `tasks = []`, so it would run nowhere: name some of the grid's tasks ({}), or leave `tasks` out to run on all of them",
                    v.name,
                    self.tasks.join(", ")
                )));
            }
            if let Some(t) = v.tasks.iter().flatten().find(|t| !self.tasks.contains(t)) {
                return Err(Error::Input(format!(
                    "bench: variant \"{}\" names task \"{t}\", which is not in `tasks` ({})",
                    v.name,
                    self.tasks.join(", ")
                )));
            }
        }
        let to_sets = |t: &toml::Table| -> Vec<String> { t.iter().map(|(k, v)| format!("{k}={v}")).collect() };
        // A bench scores what its tables report (centroid and ensemble) unless told otherwise.
        let start = RunConfig { test_vertices: false, ..RunConfig::default() };
        let base = start.apply_overrides(&to_sets(&self.base))?;
        let mut cells = Vec::new();
        // Seed-major: an interrupted bench has whole tables for its first seeds.
        for &ss in &self.split_seeds {
            for task in &self.tasks {
                for &k in &self.shots {
                    let task_base = match self.task_set.get(task) {
                        Some(t) => base.apply_overrides(&to_sets(t))?,
                        None => base.clone(),
                    };
                    for v in variants.iter().filter(|v| v.tasks.as_ref().is_none_or(|t| t.contains(task))) {
                        let mut c = task_base.apply_overrides(&to_sets(&v.set))?;
                        c.task = task.clone();
                        c.protocol = self.protocol;
                        c.shots = k;
                        c.split_seed = ss;
                        c.seed = self.seed;
                        c.method = crate::method::parse(&v.method)?;
                        let proto = match self.protocol {
                            Protocol::PerClass => "k",
                            Protocol::Total => "total",
                        };
                        let c = c.resolve()?;
                        // A user task is known by its `task_name` (checked by `resolve`) when it has one.
                        let id = format!("{}-{proto}{k}-split{ss}-{}", c.task_label(), v.name);
                        check_name("cell", &id)?;
                        cells.push(Cell { id, config: c, variant: v.name.clone() });
                    }
                }
            }
        }
        Ok(cells)
    }
}

/// Refuses a task, variant or cell name that is not one plain path component: cells are folders
/// under `--out/cells/` that each cell's `train --overwrite` empties, so a name such as
/// `x/../../victim` would reach outside `--out`.
fn check_name(what: &str, name: &str) -> Result<()> {
    if crate::paths::is_safe_name(name) {
        return Ok(());
    }
    Err(Error::Input(format!(
        "bench: {what} name {name:?} is not allowed: a name may use only letters, digits, '.', '_' and '-', must not start with '.', and has at most 100 characters"
    )))
}

/// The cells of `tasks` (a task's name, or a user task's `task_name`) and `variants` (all of
/// them where a list is empty). A name that no cell of the grid has is refused, naming the
/// flag and what the grid has: a typo must not select nothing and end as a bench that ran.
pub fn select(cells: Vec<Cell>, tasks: &[String], variants: &[String]) -> Result<Vec<Cell>> {
    let has_task = |c: &Cell, t: &str| c.config.task == t || c.config.task_label() == t;
    let listed = |names: Vec<&str>| {
        let mut seen = Vec::new();
        for n in names {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen.join(", ")
    };
    if let Some(t) = tasks.iter().find(|t| !cells.iter().any(|c| has_task(c, t))) {
        return Err(Error::Input(format!(
            "--tasks {t}: no cell of this grid has that task (its tasks: {})",
            listed(cells.iter().map(|c| c.config.task_label()).collect())
        )));
    }
    if let Some(v) = variants.iter().find(|v| !cells.iter().any(|c| c.variant == **v)) {
        return Err(Error::Input(format!(
            "--variants {v}: no cell of this grid has that method or variant (its variants: {})",
            listed(cells.iter().map(|c| c.variant.as_str()).collect())
        )));
    }
    Ok(cells
        .into_iter()
        .filter(|c| tasks.is_empty() || tasks.iter().any(|t| has_task(c, t)))
        .filter(|c| variants.is_empty() || variants.contains(&c.variant))
        .collect())
}

/// Parses `I/N` (0-based shard index I of N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Input(format!("--shard {s}: expected I/N with 0 <= I < N, e.g. 0/3"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The cells a shard runs: every N-th cell of the stable order, starting at I.
pub fn shard(cells: Vec<Cell>, (i, n): (usize, usize)) -> Vec<Cell> {
    cells.into_iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, c)| c).collect()
}

/// Whether a finished run was trained by this build's numerics (its config.toml names
/// `numerics = NUMERICS`; version 1 wrote no key). Runs of another version are not mixed into
/// the tables: `bench` reruns them.
fn current_numerics(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("config.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("numerics").and_then(|v| v.as_integer()))
        .is_some_and(|v| v == i64::from(crate::config::NUMERICS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_variant_names_must_be_one_path_component() {
        let grid = |tasks: &str, variant: &str| -> Result<Vec<Cell>> {
            let text = format!(
                "tasks = [{tasks:?}]\nshots = [4]\nsplit_seeds = [13]\n[[variant]]\nname = {variant:?}\nmethod = \"prefix\"\n"
            );
            toml::from_str::<BenchConfig>(&text).unwrap().cells()
        };
        assert_eq!(grid("polarity", "lr-1e-3").unwrap()[0].id, "polarity-k4-split13-lr-1e-3");
        for (tasks, variant, bad) in [
            ("polarity", "x/../../victim", "x/../../victim"),
            ("polarity", "..", ".."),
            ("polarity", "", "\"\""),
            ("../x", "prefix", "../x"),
            ("a\\b", "prefix", "a\\\\b"),
        ] {
            let e = grid(tasks, variant).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("letters, digits") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_named_user_task_names_its_cells() {
        let grid = |base: &str| -> Result<Vec<Cell>> {
            let text = format!(
                "tasks = [\"user\"]\nshots = [4]\nsplit_seeds = [13]\nmethods = [\"prefix\"]\n[base]\ntrain_file = \"r.csv\"\n{base}"
            );
            toml::from_str::<BenchConfig>(&text).unwrap().cells()
        };
        assert_eq!(grid("").unwrap()[0].id, "user-k4-split13-prefix");
        let cells = grid("task_name = \"reviews\"\n").unwrap();
        assert_eq!(cells[0].id, "reviews-k4-split13-prefix");
        assert_eq!(cells[0].config.task_label(), "reviews");
        for bad in ["../x", "my-task", "sst2"] {
            let e = grid(&format!("task_name = {bad:?}\n")).unwrap_err().to_string();
            assert!(e.contains("task_name") && e.contains("letters, digits"), "{e}");
        }
        // The cells' configs without a name are those of before the key existed.
        assert!(!grid("").unwrap()[0].config.to_toml().contains("task_name"));
    }

    #[test]
    fn task_set_overrides_one_tasks_cells_and_variants_still_win() {
        let grid = |extra: &str| {
            let text = format!(
                "tasks = [\"sst2\", \"qnli\"]\nshots = [16]\nsplit_seeds = [13]\nmethods = [\"prefix\"]\n\
                 [base]\ntest_limit = 500\n[[variant]]\nname = \"v\"\nmethod = \"prefix\"\nset = {{ test_limit = 7 }}\n{extra}"
            );
            toml::from_str::<BenchConfig>(&text).unwrap().cells()
        };
        let cells = grid("[task_set.qnli]\ntest_limit = 1000\n").unwrap();
        let limit = |id: &str| cells.iter().find(|c| c.id == id).unwrap().config.test_limit;
        assert_eq!(limit("sst2-k16-split13-prefix"), 500);
        assert_eq!(limit("qnli-k16-split13-prefix"), 1000);
        assert_eq!(limit("qnli-k16-split13-v"), 7);
        let e = grid("[task_set.rte]\ntest_limit = 1\n").unwrap_err().to_string();
        assert!(e.contains("task_set.rte") && e.contains("sst2, qnli"), "{e}");
        let e = grid("[task_set.qnli]\nno_such_key = 1\n").unwrap_err().to_string();
        assert!(e.contains("no_such_key"), "{e}");
    }

    #[test]
    fn a_variant_may_run_on_some_of_the_tasks() {
        let grid = |tasks: &str| {
            let text = format!(
                "tasks = [\"sst2\", \"rte\", \"qnli\"]\nshots = [16]\nsplit_seeds = [13, 21]\nmethods = [\"prefix\"]\n\
                 [[variant]]\nname = \"prompt\"\nmethod = \"prompt\"\ntasks = {tasks}\n"
            );
            toml::from_str::<BenchConfig>(&text).unwrap().cells()
        };
        let ids: Vec<String> = grid("[\"rte\", \"sst2\"]").unwrap().into_iter().map(|c| c.id).collect();
        let expected = [
            "sst2-k16-split13-prefix",
            "sst2-k16-split13-prompt",
            "rte-k16-split13-prefix",
            "rte-k16-split13-prompt",
            "qnli-k16-split13-prefix",
            "sst2-k16-split21-prefix",
            "sst2-k16-split21-prompt",
            "rte-k16-split21-prefix",
            "rte-k16-split21-prompt",
            "qnli-k16-split21-prefix",
        ];
        assert_eq!(ids, expected);
        let e = grid("[]").unwrap_err().to_string();
        assert!(e.contains("\"prompt\"") && e.contains("`tasks = []`") && e.contains("sst2, rte, qnli"), "{e}");
        let e = grid("[\"rte\", \"mnli\"]").unwrap_err().to_string();
        assert!(e.contains("\"prompt\"") && e.contains("\"mnli\"") && e.contains("sst2, rte, qnli"), "{e}");
    }
}
