//! The benchmark grid: tasks × few-shot protocol (K) × split seeds × methods (and ablation
//! variants), each cell one `train` run in its own directory. Resumable (a cell with a
//! `results.json` is never recomputed), shardable (`--shard I/N`), and summarised as
//! `results.csv` (one row per run) and `summary.md` (mean (std) over split seeds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Protocol, RunConfig};
use crate::error::{Error, Result};
use crate::method::Method;
use crate::results::{Results, TestScores, TEST_SETS};

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
            .map_err(|e| Error::Input(format!("{}: {}", path.display(), e.to_string().replace('\n', " "))))
    }

    /// All cells, in a stable order (split seed, task, K, variant).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        let mut variants: Vec<Variant> = self
            .methods
            .iter()
            .map(|m| Variant { name: m.clone(), method: m.clone(), set: toml::Table::new() })
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
                    for v in &variants {
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

/// Finished runs of other numerics versions under the bench directories (left out of
/// [`collect`]).
pub fn stale_runs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(d.join("cells")).into_iter().flatten().flatten() {
            if e.path().join("results.json").is_file() && !current_numerics(&e.path()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A finished cell of a bench: its results.json, and its variant (the part of the cell's
/// folder name after `<task>-<protocol K>-split<S>-`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub variant: String,
    pub results: Results,
}

impl Row {
    /// The row's name in the tables: its variant, or its method when the variant is empty.
    pub fn name(&self) -> &str {
        if self.variant.is_empty() {
            &self.results.method
        } else {
            &self.variant
        }
    }
}

/// Finished runs found under `<dir>/cells/*/results.json` of every bench directory, trained
/// with this build's numerics. A results.json that cannot be read, is not JSON or lacks what the
/// tables show is an error naming it. A cell name found in two folders is one run merged once
/// when both are the same run (same numbers-changing settings, split and test scores), and an
/// error naming both otherwise: one would silently replace the other in the tables.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<Row>> {
    // Cell folder name -> (the cell folder, its row).
    let mut rows: BTreeMap<String, (PathBuf, Row)> = BTreeMap::new();
    for d in dirs {
        let cells = d.join("cells");
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&cells).map_err(|e| Error::io(&cells, e))? {
            entries.push(e.map_err(|e| Error::io(&cells, e))?.path());
        }
        entries.sort();
        for cell in entries {
            if !cell.is_dir() || !current_numerics(&cell) {
                continue;
            }
            let p = cell.join("results.json");
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // not finished
                Err(e) => return Err(Error::io(&p, e)),
                Ok(_) => {}
            }
            let results = crate::report::read_results(&p)?;
            let name = cell.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // Directory names are `<task>-<protocol K>-split<S>-<variant>`.
            let variant = name.splitn(4, '-').nth(3).unwrap_or("").to_string();
            let row = Row { variant, results };
            match rows.get(&name) {
                Some((first, seen)) => check_same_cell(&name, first, &seen.results, &cell, &row.results)?,
                None => {
                    rows.insert(name, (cell, row));
                }
            }
        }
    }
    Ok(rows.into_values().map(|(_, r)| r).collect())
}

/// What a finished run's numbers are: its few-shot split and its test scores (not the
/// wall-clock fields: train and test seconds, samples per second, whether it was resumed).
fn run_numbers(r: &Results) -> (&str, [Option<&TestScores>; 3]) {
    (&r.split_hash, TEST_SETS.map(|k| r.test_set(k)))
}

/// Checks that the cell `name` found in `first` (results `a`) and again in `second` (results
/// `b`) is the same run, so that merging keeps it once; one line naming both otherwise.
fn check_same_cell(name: &str, first: &Path, a: &Results, second: &Path, b: &Results) -> Result<()> {
    let config = |dir: &Path| RunConfig::from_file(&dir.join("config.toml")).map(|c| c.comparable());
    let why = if config(first)? != config(second)? {
        "were run with different settings"
    } else if run_numbers(a) != run_numbers(b) {
        "have different results (few-shot split or test scores)"
    } else {
        return Ok(());
    };
    Err(Error::Input(format!(
        "{} and {}: two runs of cell {name} that {why}, and a table holds one run per cell (merge these bench folders into separate outputs)",
        first.display(),
        second.display()
    )))
}

/// The test set and metric a task is summarised by (the main metric, at the centroid).
pub fn main_entry(r: &Results) -> Option<(String, String, f64)> {
    let key = if r.test_matched.is_some() { "test_matched" } else { "test" };
    let m = r.test_set(key)?.get("centroid")?;
    let metric = match r.task.as_str() {
        "cola" => "mcc",
        "mrpc" | "qqp" => "f1",
        "stsb" => "pearson",
        _ => "accuracy",
    };
    Some((key.to_string(), metric.to_string(), m.get(metric).copied().filter(|v| !v.is_nan())?))
}

/// A number as results.json writes it (empty when it is not finite, written `null` there).
fn json_number(x: f64) -> String {
    match Value::from(x) {
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// `results.csv`: one row per run, every test metric flattened as `<set>.<at>.<metric>`.
pub fn results_csv(rows: &[Row]) -> String {
    let mut metric_cols = std::collections::BTreeSet::new();
    for row in rows {
        for (key, t) in row.results.test_sets() {
            for (at, m) in t {
                for k in m.keys() {
                    metric_cols.insert(format!("{key}.{at}.{k}"));
                }
            }
        }
    }
    let fixed = [
        "task",
        "protocol",
        "shots",
        "split_seed",
        "seed",
        "variant",
        "method",
        "vertices",
        "train_seconds",
        "best_epoch",
    ];
    let mut out = fixed.join(",");
    for c in &metric_cols {
        out.push(',');
        out.push_str(c);
    }
    out.push('\n');
    for row in rows {
        let r = &row.results;
        let cells = [
            r.task.clone(),
            r.protocol.clone(),
            r.shots.to_string(),
            r.split_seed.to_string(),
            r.seed.to_string(),
            row.variant.clone(),
            r.method.clone(),
            r.vertices.to_string(),
            json_number(r.train_seconds),
            r.best_epoch.to_string(),
        ];
        out.push_str(&cells.join(","));
        for c in &metric_cols {
            let mut parts = c.splitn(3, '.');
            let (a, b, m) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            out.push(',');
            if let Some(x) = r.test_set(a).and_then(|t| t.get(b)).and_then(|s| s.get(m)).filter(|x| !x.is_nan()) {
                out.push_str(&format!("{x:.6}"));
            }
        }
        out.push('\n');
    }
    out
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// `summary.md`: per (protocol, K), a table of variants × tasks, mean (std) over split seeds
/// of the main test metric at the centroid (×100), an average column, the best per column in
/// bold. For subspace variants an extra row reports the ensemble. Then the same scores per
/// split seed, and, where the grid has the default subspace, the subspace minus every other
/// row, paired by split seed.
pub fn summary_md(rows: &[Row]) -> String {
    // (protocol, shots) -> variant -> task -> (split seed, seed) -> value
    type Table = BTreeMap<String, BTreeMap<String, BTreeMap<(u64, u64), f64>>>;
    let mut groups: BTreeMap<(String, u64), Table> = BTreeMap::new();
    let mut metric_of: BTreeMap<String, String> = BTreeMap::new();
    // task -> the majority class's share of its main test set (results.json `majority`), ×100
    let mut majority: BTreeMap<String, f64> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for row in rows {
        let r = &row.results;
        let Some((set, metric, v)) = main_entry(r) else { continue };
        let task = r.task.clone();
        metric_of.insert(task.clone(), metric.clone());
        if let Some(m) = r.majority.as_ref().and_then(|m| m.get(&set)) {
            majority.insert(task.clone(), 100.0 * m);
        }
        let g = groups.entry((r.protocol.clone(), r.shots)).or_default();
        let variant = row.name().to_string();
        if !order.contains(&variant) {
            order.push(variant.clone());
        }
        let seeds = (r.split_seed, r.seed);
        g.entry(variant.clone()).or_default().entry(task.clone()).or_default().insert(seeds, 100.0 * v);
        if let Some(e) = r
            .test_set(&set)
            .and_then(|t| t.get("ensemble"))
            .and_then(|m| m.get(&metric))
            .copied()
            .filter(|e| !e.is_nan())
        {
            let name = format!("{variant} (ensemble)");
            g.entry(name.clone()).or_default().entry(task).or_default().insert(seeds, 100.0 * e);
            if !order.contains(&name) {
                order.push(name);
            }
        }
    }
    // Methods in their usual order (each followed by its ensemble row), then the variants.
    let rank = |v: &String| {
        let base = v.trim_end_matches(" (ensemble)");
        let i = crate::method::ALL.iter().position(|m| m.name() == base).unwrap_or(crate::method::ALL.len());
        (i, base.to_string(), v.ends_with(" (ensemble)"))
    };
    order.sort_by_key(rank);
    let mut out = String::new();
    for ((protocol, shots), table) in &groups {
        let tasks: Vec<String> = {
            let mut t: Vec<String> = table.values().flat_map(|m| m.keys().cloned()).collect();
            t.sort();
            t.dedup();
            t
        };
        out.push_str(&format!(
            "\n### protocol {protocol}, K = {shots}: test score ×100 at the centroid, mean (std) over split seeds\n\n"
        ));
        out.push_str("| method |");
        for t in &tasks {
            out.push_str(&format!(" {t} ({}) |", metric_of[t]));
        }
        out.push_str(" avg |\n|---|");
        out.push_str(&"---:|".repeat(tasks.len() + 1));
        out.push('\n');
        let values = |v: &str, t: &str| table.get(v).and_then(|m| m.get(t));
        let stats =
            |v: &str, t: &str| values(v, t).map(|x| (mean_std(&x.values().copied().collect::<Vec<_>>()), x.len()));
        let avg = |v: &str| -> Option<f64> {
            let means: Vec<f64> = tasks.iter().filter_map(|t| stats(v, t).map(|s| s.0 .0)).collect();
            (means.len() == tasks.len()).then(|| means.iter().sum::<f64>() / means.len() as f64)
        };
        let variants = variants_of(&order, table);
        let best: Vec<f64> = tasks
            .iter()
            .map(|t| variants.iter().filter_map(|v| stats(v, t).map(|s| s.0 .0)).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let best_avg = variants.iter().filter_map(|v| avg(v)).fold(f64::NEG_INFINITY, f64::max);
        for v in variants {
            out.push_str(&format!("| {v} |"));
            for (t, b) in tasks.iter().zip(&best) {
                match stats(v, t) {
                    Some(((m, s), n)) => {
                        let cell = format!("{m:.1} ({s:.1}){}", if n < 5 { format!(" n={n}") } else { String::new() });
                        if (m - b).abs() < 1e-9 {
                            out.push_str(&format!(" **{cell}** |"));
                        } else {
                            out.push_str(&format!(" {cell} |"));
                        }
                    }
                    None => out.push_str(" – |"),
                }
            }
            match avg(v) {
                Some(a) if (a - best_avg).abs() < 1e-9 => out.push_str(&format!(" **{a:.1}** |\n")),
                Some(a) => out.push_str(&format!(" {a:.1} |\n")),
                None => out.push_str(" – |\n"),
            }
        }
        if tasks.iter().any(|t| majority.contains_key(t)) {
            // The score of always answering the test set's most frequent class (its accuracy;
            // for other metrics, read it as a reminder of the class balance).
            out.push_str("| *majority class (accuracy)* |");
            for t in &tasks {
                match majority.get(t) {
                    Some(m) => out.push_str(&format!(" *{m:.1}* |")),
                    None => out.push_str(" – |"),
                }
            }
            out.push_str(" |\n");
        }

        let seeds: std::collections::BTreeSet<(u64, u64)> =
            table.values().flat_map(|m| m.values()).flat_map(|x| x.keys().copied()).collect();
        let one_seed = seeds.iter().map(|s| s.1).collect::<std::collections::BTreeSet<_>>().len() == 1;
        let seed_name = |&(split, seed): &(u64, u64)| {
            if one_seed {
                split.to_string()
            } else {
                format!("{split} (seed {seed})")
            }
        };
        let rows: Vec<&String> =
            variants_of(&order, table).into_iter().filter(|v| !v.ends_with(" (ensemble)")).collect();
        out.push_str(&format!(
            "\nPer split seed ({}):\n\n{}",
            seeds.iter().map(seed_name).collect::<Vec<_>>().join(" / "),
            task_header("method", &tasks)
        ));
        for v in &rows {
            out.push_str(&format!("| {v} |"));
            for t in &tasks {
                let cell: Vec<String> = seeds
                    .iter()
                    .map(|s| values(v, t).and_then(|x| x.get(s)).map_or("–".to_string(), |x| format!("{x:.1}")))
                    .collect();
                out.push_str(&format!(" {} |", cell.join(" / ")));
            }
            out.push('\n');
        }

        let reference = crate::method::subspace::PrefixSubspace.name();
        if table.contains_key(reference) && rows.len() > 1 {
            out.push_str(&format!(
                "\nPaired by split seed, {reference} minus each other row (mean difference; seeds where {reference} is higher, of those both have; range):\n\n{}",
                task_header("", &tasks)
            ));
            for v in rows.iter().filter(|v| v.as_str() != reference) {
                out.push_str(&format!("| vs {v} |"));
                for t in &tasks {
                    let diffs: Vec<f64> = match (values(reference, t), values(v, t)) {
                        (Some(a), Some(b)) => a.iter().filter_map(|(s, x)| b.get(s).map(|y| x - y)).collect(),
                        _ => Vec::new(),
                    };
                    if diffs.is_empty() {
                        out.push_str(" – |");
                        continue;
                    }
                    let (mean, _) = mean_std(&diffs);
                    let wins = diffs.iter().filter(|d| **d > 0.0).count();
                    let (lo, hi) =
                        diffs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), d| (l.min(*d), h.max(*d)));
                    out.push_str(&format!(" {mean:+.1}; {wins} of {}; {lo:+.1} … {hi:+.1} |", diffs.len()));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The header of a table with one column per task (`| first | t1 | t2 |` and its rule).
fn task_header(first: &str, tasks: &[String]) -> String {
    format!(
        "| {first} |{}\n|---|{}\n",
        tasks.iter().map(|t| format!(" {t} |")).collect::<String>(),
        "---|".repeat(tasks.len())
    )
}

/// The rows of one table, in the summary's order.
fn variants_of<'a, T>(order: &'a [String], table: &BTreeMap<String, T>) -> Vec<&'a String> {
    order.iter().filter(|v| table.contains_key(*v)).collect()
}

/// Writes `results.csv` and `summary.md` for the runs found in `dirs` into `out`.
pub fn write_tables(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    write_rows(dirs, &collect(dirs)?, out)
}

/// Writes `results.csv` and `summary.md` of `rows`, the runs [`collect`]ed from `dirs`, into
/// `out` (which exists).
pub fn write_rows(dirs: &[PathBuf], rows: &[Row], out: &Path) -> Result<usize> {
    crate::atomic::write_atomic(&out.join("results.csv"), results_csv(rows).as_bytes())?;
    let mut md = String::from("# Benchmark summary\n\nGenerated by `prefix-subspace bench` from the runs under ");
    md.push_str(&dirs.iter().map(|d| format!("`{}`", d.display())).collect::<Vec<_>>().join(", "));
    md.push_str(". Main metric per task: accuracy (SST-2, RTE, QNLI, MNLI matched, WNLI, polarity), MCC (CoLA), F1 (MRPC, QQP), Pearson (STS-B). `n=k` marks cells with fewer than 5 finished seeds.\n");
    let stale = stale_runs(dirs);
    if !stale.is_empty() {
        md.push_str(&format!(
            "\n{} finished cell(s) of an older numerics version are left out of these tables (the bench reruns them): {}.\n",
            stale.len(),
            stale.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ));
    }
    md.push_str(&summary_md(rows));
    let notes: std::collections::BTreeSet<String> =
        rows.iter().flat_map(|r| r.results.notes.iter().cloned()).filter(|n| !n.starts_with("train pool:")).collect();
    if !notes.is_empty() {
        md.push_str("\n### Data caveats\n\n");
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    crate::atomic::write_atomic(&out.join("summary.md"), md.as_bytes())?;
    Ok(rows.len())
}

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
    let log = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap_or_default();
    let step = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "step")
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0) as usize;
    let test_points = crate::state::TestPartial::read(&run_dir.join(crate::state::TEST_PARTIAL_FILE))
        .map_or(0, |p| p.sets.values().map(|m| m.len()).sum());
    CellStatus::Interrupted { step, test_points }
}

/// The archive of a bench folder's per-step logs: `<bench>/metrics.jsonl.gz`, the lines of every
/// finished cell's `cells/<cell>/metrics.jsonl`, in cell order, each line
/// `{"cell":"<cell>",` followed by the rest of the original line (its first character, `{`,
/// dropped), so that the original line comes back byte for byte. The committed grids of
/// `bench/results/` keep their logs only there (`plot --run` reads them; `bench --unpack-logs`
/// writes them back as files).
pub const LOGS_ARCHIVE: &str = "metrics.jsonl.gz";

/// The archived line of `line` (one line of cell `cell`'s metrics.jsonl, without its newline).
fn archive_line(cell: &str, line: &str) -> Option<String> {
    let rest = line.strip_prefix('{')?;
    let sep = if rest.starts_with('}') { "" } else { "," };
    Some(format!("{{\"cell\":\"{cell}\"{sep}{rest}"))
}

/// The cell and the original line of an archived line.
fn original_line(archived: &str) -> Option<(&str, String)> {
    let rest = archived.strip_prefix("{\"cell\":\"")?;
    let (cell, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(',').or_else(|| rest.starts_with('}').then_some(rest))?;
    crate::paths::is_safe_name(cell).then(|| (cell, format!("{{{rest}")))
}

/// Reads a logs archive: cell name → its metrics.jsonl text (each line ending in a newline).
pub fn read_logs_archive(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut logs: BTreeMap<String, String> = BTreeMap::new();
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    // Split at '\n' only (not `lines`, which also drops a '\r'): lines come back byte for byte.
    for (i, line) in reader.split(b'\n').enumerate() {
        let bad = |e: String| Error::Input(format!("{}: not a gzip'd logs archive ({e})", path.display()));
        let line = String::from_utf8(line.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        let (cell, original) = original_line(&line).ok_or_else(|| {
            Error::Input(format!(
                "{}:{}: expected a line {{\"cell\":\"<cell>\",…}} of a logs archive written by `bench --pack-logs`",
                path.display(),
                i + 1
            ))
        })?;
        let text = logs.entry(cell.to_string()).or_default();
        text.push_str(&original);
        text.push('\n');
    }
    Ok(logs)
}

/// The per-step log of a run (the text of its metrics.jsonl) and where it was read: the file
/// in the run folder, or else, for a cell of a bench folder (`<bench>/cells/<cell>/`), its
/// lines in `<bench>/metrics.jsonl.gz`. One line naming both places when neither has it.
pub fn run_log(run: &Path) -> Result<(String, PathBuf)> {
    let path = run.join("metrics.jsonl");
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok((text, path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let cell = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cells = run.parent().filter(|p| p.file_name().is_some_and(|n| n == "cells"));
    let Some(archive) = cells.and_then(Path::parent).map(|b| b.join(LOGS_ARCHIVE)) else {
        return Err(Error::Input(format!("{}: no such file (the run has no per-step log)", path.display())));
    };
    if !archive.is_file() {
        return Err(Error::Input(format!(
            "{}: no such file, and no logs archive {} of its bench folder",
            path.display(),
            archive.display()
        )));
    }
    match read_logs_archive(&archive)?.remove(&cell) {
        Some(text) => Ok((text, archive)),
        None => Err(Error::Input(format!(
            "{}: no such file, and {} holds no log of cell {cell}",
            path.display(),
            archive.display()
        ))),
    }
}

/// What [`pack_logs`] and [`unpack_logs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LogsCount {
    /// Cells whose log was read from (pack) or written to (unpack) `cells/<cell>/metrics.jsonl`.
    pub files: usize,
    /// Cells whose log was kept from the archive (pack), or left alone because their
    /// metrics.jsonl is already there (unpack).
    pub kept: usize,
    /// Archived logs of cells without a folder under `cells/` (left out, and not written).
    pub orphans: usize,
}

/// Writes `<bench>/metrics.jsonl.gz` (see [`LOGS_ARCHIVE`]) from the logs of the finished cells
/// (those with a results.json) under `<bench>/cells/`: each cell's metrics.jsonl where it is on
/// disk, else its log in the archive already there. Deletes nothing. A log line that is not a
/// JSON object on one line, or a log without its final newline, is an error naming it, and
/// nothing is written.
pub fn pack_logs(bench: &Path) -> Result<LogsCount> {
    let archive = bench.join(LOGS_ARCHIVE);
    let mut old = if archive.is_file() { read_logs_archive(&archive)? } else { BTreeMap::new() };
    let cells_dir = bench.join("cells");
    let mut cells = Vec::new();
    for e in std::fs::read_dir(&cells_dir).map_err(|e| Error::io(&cells_dir, e))? {
        let p = e.map_err(|e| Error::io(&cells_dir, e))?.path();
        if p.is_dir() && p.join("results.json").is_file() {
            cells.push(p);
        }
    }
    cells.sort();
    let mut n = LogsCount::default();
    let mut out = Vec::new();
    for dir in cells {
        let cell = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let archived = old.remove(&cell);
        if !crate::paths::is_safe_name(&cell) {
            continue;
        }
        let path = dir.join("metrics.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => {
                n.files += 1;
                t
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match archived {
                Some(t) => {
                    n.kept += 1;
                    t
                }
                None => continue,
            },
            Err(e) => return Err(Error::io(&path, e)),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(Error::Input(format!("{}: the last line has no newline (a cut log?)", path.display())));
        }
        for (i, line) in text.split_terminator('\n').enumerate() {
            let a = archive_line(&cell, line)
                .filter(|_| serde_json::from_str::<serde_json::Map<String, Value>>(line).is_ok());
            let a = a.ok_or_else(|| {
                Error::Input(format!("{}:{}: expected a JSON object on one line", path.display(), i + 1))
            })?;
            out.extend_from_slice(a.as_bytes());
            out.push(b'\n');
        }
    }
    n.orphans = old.len();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &out)
        .and_then(|_| gz.finish())
        .map_or_else(|e| Err(Error::io(&archive, e)), |bytes| crate::atomic::write_atomic(&archive, &bytes))?;
    Ok(n)
}

/// Writes every log of `<bench>/metrics.jsonl.gz` back as `<bench>/cells/<cell>/metrics.jsonl`,
/// where the cell's folder exists and has no metrics.jsonl yet (a file already there is left as
/// it is).
pub fn unpack_logs(bench: &Path) -> Result<LogsCount> {
    let archive = bench.join(LOGS_ARCHIVE);
    if !archive.is_file() {
        return Err(Error::Input(format!(
            "{}: no such file: this bench folder has no logs archive (its logs are in cells/<cell>/metrics.jsonl, if anywhere)",
            archive.display()
        )));
    }
    let mut n = LogsCount::default();
    for (cell, text) in read_logs_archive(&archive)? {
        let dir = bench.join("cells").join(&cell);
        let path = dir.join("metrics.jsonl");
        if !dir.is_dir() {
            n.orphans += 1;
        } else if std::fs::symlink_metadata(&path).is_ok() {
            n.kept += 1;
        } else {
            crate::atomic::write_atomic(&path, text.as_bytes())?;
            n.files += 1;
        }
    }
    Ok(n)
}

/// How many cells of one task stand where, and the cell-seconds the finished ones took.
#[derive(Debug, Default, Clone, Copy)]
struct StatusCounts {
    finished: usize,
    interrupted: usize,
    stale: usize,
    to_run: usize,
    seconds: f64,
}

impl StatusCounts {
    fn add(&mut self, o: &StatusCounts) {
        self.finished += o.finished;
        self.interrupted += o.interrupted;
        self.stale += o.stale;
        self.to_run += o.to_run;
        self.seconds += o.seconds;
    }

    fn line(&self, task: &str) -> String {
        let cells = self.finished + self.interrupted + self.stale + self.to_run;
        format!(
            "{:<10} {:>6} {:>9} {:>12} {:>6} {:>7} {:>13.0}\n",
            task, cells, self.finished, self.interrupted, self.stale, self.to_run, self.seconds
        )
    }
}

/// A table of where the cells of a grid stand under `out/cells/`: per task, how many are
/// finished, interrupted (with a state to continue from), stale or still to run, and the
/// cell-seconds the finished ones took; then one line per interrupted cell.
pub fn status_report(cells: &[Cell], out: &Path) -> String {
    let mut tasks: Vec<(String, StatusCounts)> = Vec::new();
    let mut interrupted = Vec::new();
    for c in cells {
        let task = c.config.task_label();
        let i = match tasks.iter().position(|(t, _)| t == task) {
            Some(i) => i,
            None => {
                tasks.push((task.to_string(), StatusCounts::default()));
                tasks.len() - 1
            }
        };
        let n = &mut tasks[i].1;
        match cell_status(&out.join("cells").join(&c.id), &c.config) {
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
        "{:<10} {:>6} {:>9} {:>12} {:>6} {:>7} {:>13}\n",
        "task", "cells", "finished", "interrupted", "stale", "to run", "cell-seconds"
    );
    let mut total = StatusCounts::default();
    for (task, n) in &tasks {
        total.add(n);
        t += &n.line(task);
    }
    if tasks.len() > 1 {
        t += &total.line("total");
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
    use crate::results::Scores;

    fn row(task: &str, variant: &str, split_seed: u64, acc: f64) -> Row {
        let scores = |v: f64| Scores(BTreeMap::from([("accuracy".to_string(), v)]));
        let mut test = TestScores::from([("centroid".to_string(), scores(acc))]);
        if variant == "subspace" {
            test.insert("ensemble".into(), scores(acc - 0.01));
        }
        let results = Results {
            task: task.into(),
            protocol: "per-class".into(),
            shots: 16,
            split_seed,
            seed: 1,
            method: variant.into(),
            test: Some(test),
            ..Results::default()
        };
        Row { variant: variant.into(), results }
    }

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
    fn summary_has_means_scores_per_seed_and_paired_differences() {
        let rows = vec![
            row("sst2", "subspace", 13, 0.70),
            row("sst2", "subspace", 21, 0.60),
            row("sst2", "prefix", 13, 0.65),
            row("sst2", "prefix", 21, 0.62),
            row("sst2", "lora", 13, 0.75),
            row("rte", "prefix", 13, 0.50),
        ];
        let md = summary_md(&rows);
        assert!(md.contains("| subspace | – | 65.0 (7.1) n=2 | – |"), "{md}");
        assert!(md.contains("| subspace (ensemble) | – | 64.0 (7.1) n=2 | – |"), "{md}");
        assert!(md.contains("Per split seed (13 / 21):"), "{md}");
        assert!(md.contains("| prefix | 50.0 / – | 65.0 / 62.0 |"), "{md}");
        assert!(md.contains("| lora | – / – | 75.0 / – |"), "{md}");
        // Subspace minus prefix on SST-2: +5.0 (seed 13) and -2.0 (seed 21); nothing on RTE.
        assert!(md.contains("| vs prefix | – | +1.5; 1 of 2; -2.0 … +5.0 |"), "{md}");
        assert!(md.contains("| vs lora | – | -5.0; 0 of 1; -5.0 … -5.0 |"), "{md}");
        assert!(!md.contains("vs subspace"), "{md}");
        // Without the subspace there is nothing to pair with.
        let md = summary_md(&rows[2..]);
        assert!(md.contains("Per split seed") && !md.contains("Paired"), "{md}");
        // Without a recorded majority rate (older runs) there is no majority row.
        assert!(!md.contains("majority"), "{md}");
    }

    #[test]
    fn summary_shows_each_test_sets_majority_class_rate() {
        let mut rows = vec![row("sst2", "prefix", 13, 0.70), row("rte", "prefix", 13, 0.55)];
        rows[0].results.majority = Some(BTreeMap::from([("test".to_string(), 0.5092)]));
        let md = summary_md(&rows);
        assert!(md.contains("| *majority class (accuracy)* | – | *50.9* | |"), "{md}");
    }
}
