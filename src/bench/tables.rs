//! The tables of a bench: a [`Row`] per finished cell ([`collect`]), `results.csv` (one row per
//! run) and `summary.md` (mean (std) over split seeds, per-seed scores, paired differences).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::method::Method;
use crate::results::{Results, TestScores, TEST_SETS};

use super::current_numerics;

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
        super::check_folder(d)?;
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
    // task -> the score ×100 of always answering the majority class of its main test set, in
    // the task's main metric (results.json `majority_scores`), or, from runs that recorded
    // only its accuracy (`majority`), that accuracy and `false`.
    let mut majority: BTreeMap<String, (f64, bool)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for row in rows {
        let r = &row.results;
        let Some((set, metric, v)) = main_entry(r) else { continue };
        let task = r.task.clone();
        metric_of.insert(task.clone(), metric.clone());
        let in_metric = r.majority_scores.as_ref().and_then(|m| m.get(&set)).and_then(|s| s.get(&metric));
        let rate = r.majority.as_ref().and_then(|m| m.get(&set));
        match (in_metric, rate) {
            (Some(v), _) => {
                majority.insert(task.clone(), (100.0 * v, true));
            }
            (None, Some(v)) if metric == "accuracy" => {
                majority.insert(task.clone(), (100.0 * v, true));
            }
            (None, Some(v)) => {
                majority.entry(task.clone()).or_insert((100.0 * v, false));
            }
            (None, None) => {}
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
            // The score of always answering the test set's most frequent class, in the column's
            // metric where the runs recorded it, else its accuracy, marked.
            out.push_str("| *majority class* |");
            for t in &tasks {
                match majority.get(t) {
                    Some((m, true)) => out.push_str(&format!(" *{m:.1}* |")),
                    Some((m, false)) => out.push_str(&format!(" *{m:.1} acc.* |")),
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
    md.push_str(". Main metric per task: accuracy (SST-2, RTE, QNLI, MNLI matched, WNLI, polarity), MCC (CoLA), F1 (MRPC, QQP), Pearson (STS-B). `n=k` marks cells with fewer than 5 finished seeds. The *majority class* row is the score of always answering each test set's most frequent class, in the column's metric (\"acc.\": its accuracy, from runs that recorded only that).\n");
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
        assert!(md.contains("| *majority class* | – | *50.9* | |"), "{md}");
    }

    #[test]
    fn the_majority_row_is_in_each_columns_metric() {
        let f1 = |task: &str, f: f64| {
            let mut r = row(task, "prefix", 13, 0.0);
            let s = Scores(BTreeMap::from([("f1".to_string(), f)]));
            r.results.test = Some(TestScores::from([("centroid".to_string(), s)]));
            r.results.majority = Some(BTreeMap::from([("test".to_string(), 0.684)]));
            r
        };
        // MRPC recorded the majority answer's F1 (81.2, far above its accuracy); QQP only its
        // accuracy (an older run): that is shown, marked.
        let mut rows = vec![f1("mrpc", 0.70), f1("qqp", 0.50)];
        let s = Scores(BTreeMap::from([("accuracy".to_string(), 0.684), ("f1".to_string(), 0.812)]));
        rows[0].results.majority_scores = Some(BTreeMap::from([("test".to_string(), s)]));
        let md = summary_md(&rows);
        assert!(md.contains("| *majority class* | *81.2* | *68.4 acc.* | |"), "{md}");
        // A run that recorded it wins over one that did not, in either order.
        rows.swap(0, 1);
        rows.push(f1("mrpc", 0.72));
        rows.last_mut().unwrap().results.split_seed = 21;
        let md = summary_md(&rows);
        assert!(md.contains("| *majority class* | *81.2* | *68.4 acc.* | |"), "{md}");
    }
}
