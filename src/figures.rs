//! The figures of a run and of a bench: the data behind each plot, computed from the run's
//! checkpoint and logs (the drawing itself is in `plot`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::eval::{outputs, score, Encoded};
use crate::method::subspace::{At, Subspace};
use crate::plot;
use crate::results::DevSelection;
use crate::session::Session;

/// Training curves from a run's `metrics.jsonl`: `<out>/training.{png,svg}` (`out` is created
/// once the log is read). A cell of a bench folder kept without its log (as the committed grids
/// of `bench/results/` are) is read from its bench folder's archive ([`crate::bench::run_log`]).
pub fn training(run: &Path, main_metric: &str, out: &Path) -> Result<PathBuf> {
    let (text, path) = crate::bench::run_log(run)?;
    let (mut loss, mut dev) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::Input(format!("{}:{}: invalid JSON ({e})", path.display(), i + 1)))?;
        let step = v["step"].as_f64().unwrap_or(f64::NAN);
        match v["kind"].as_str() {
            Some("step") => loss.push((step, v["loss"].as_f64().unwrap_or(f64::NAN))),
            Some("eval") => dev.push((step, v["dev"][main_metric].as_f64().unwrap_or(f64::NAN))),
            _ => {}
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let stem = out.join("training");
    plot::training_curves(&loss, &dev, main_metric, &format!("training: {}", run.display()), &stem)?;
    Ok(stem)
}

/// The main metric of a finished run, from its results.json (the metric `dev_selection` names):
/// what [`training`] needs of a run kept without its checkpoint, which cannot be opened.
pub fn finished_main_metric(run: &Path) -> Result<String> {
    let path = run.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: invalid JSON ({e})", path.display())))?;
    let selection = v.get("dev_selection").cloned().and_then(|d| serde_json::from_value::<DevSelection>(d).ok());
    selection.and_then(|d| d.main().map(|(k, _)| k.to_string())).ok_or_else(|| {
        Error::Input(format!(
            "{}: no \"dev_selection\" naming the main metric; expected the results.json of a run",
            path.display()
        ))
    })
}

/// The data of the n = 2 figure: the main metric along the edge vertex 0 → 1 on dev and on the
/// first test set, each with its centroid marked and its ensemble as a horizontal line.
pub struct LineData {
    /// (split, [(t, metric)]) for t = 0, step, …, 1 (α = (1 − t)·v0 + t·v1).
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// (label, t = 0.5, metric at the centroid), per split.
    pub markers: Vec<(String, f64, f64)>,
    /// (label, metric of the ensemble of `ensemble_samples`), per split: the draws of
    /// `eval --at ensemble:M`, so the test line is the run's results.json ensemble.
    pub hlines: Vec<(String, f64)>,
}

/// [`LineData`] of a run with at least 2 vertices.
pub fn simplex_line(session: &Session, subspace: &Subspace, step: f64) -> Result<LineData> {
    let metric = session.task.main_metric;
    let eval = |d: &Encoded, at: &At| main_metric_at(session, subspace, d, at);
    let m = session.cfg.ensemble_samples;
    let (dev, test_name, test) = splits(session)?;
    let mut line = LineData { series: Vec::new(), markers: Vec::new(), hlines: Vec::new() };
    let edge = At::edge(subspace.n, step);
    let bar = progress(
        2 * edge.len(),
        format!(
            "scoring {} points of the edge vertex 0 → vertex 1 on {} dev and {} {test_name} examples, and the ensemble of {m} on each (--step sets the spacing)",
            edge.len(),
            dev.len(),
            test.len()
        ),
    );
    for (name, d) in [("dev", &dev), (test_name, &test)] {
        let pts: Vec<(f64, f64)> = edge
            .iter()
            .map(|(t, a)| {
                let v = eval(d, a);
                bar.inc(1);
                (*t, v)
            })
            .collect();
        // The centroid of two vertices is α = (0.5, 0.5): the edge's t = 0.5 point when the
        // step divides 0.5, scored once.
        let centroid = match pts.iter().find(|p| p.0 == 0.5) {
            Some(&(_, v)) => v,
            None => eval(d, &At::Centroid),
        };
        line.markers.push((format!("{name} centroid"), 0.5, centroid));
        let ensemble = crate::train::evaluate_at(session, subspace, d, &format!("ensemble:{m}"))?;
        let value = ensemble[metric.name()].as_f64().unwrap_or(f64::NAN);
        line.hlines.push((format!("{name} ensemble of {m}"), value));
        line.series.push((name.to_string(), pts));
    }
    bar.finish_and_clear();
    Ok(line)
}

/// A note on stderr saying what is being scored (a simplex figure can take minutes on a large
/// test set), then a bar over its `total` points, drawn only when stderr is a terminal.
fn progress(total: usize, what: String) -> indicatif::ProgressBar {
    eprintln!("note: {what}");
    crate::train::terminal_bar(total as u64, "points").unwrap_or_else(indicatif::ProgressBar::hidden)
}

/// The main metric of `data` at one fixed point of the simplex.
fn main_metric_at(session: &Session, subspace: &Subspace, data: &Encoded, at: &At) -> f64 {
    let (enc, pad, bs) = (&*session.backbone, session.tokenizer.pad_id(), session.cfg.eval_batch_size);
    let metric = session.task.main_metric;
    let o = outputs(enc, subspace, data, at, 1, bs, pad);
    score(&o, &data.labels, &[metric], false)[metric.name()]
}

/// The run's dev split and its first test set (name, encoded).
fn splits(session: &Session) -> Result<(Encoded, &str, Encoded)> {
    let tok = &session.tokenizer;
    let dev = Encoded::new(tok, &session.task.split.dev)?;
    let test_set = session.task.tests.first().ok_or_else(|| Error::Input("the task has no test set".into()))?;
    Ok((dev, test_set.0.as_str(), Encoded::new(tok, &test_set.1)?))
}

/// Accuracy (main metric) along the simplex: for n = 2 the edge vertex 0 → 1 in steps of
/// `step` on dev and test, with the centroid and the ensemble marked (`<out>/simplex-line`,
/// from [`simplex_line`]); for n ≥ 3 a heat map over the triangle of vertices 0, 1, 2 on
/// `split` (`<out>/simplex-triangle`).
pub fn simplex(session: &Session, subspace: &Subspace, split: &str, step: f64, out: &Path) -> Result<Option<PathBuf>> {
    let n = subspace.n;
    if n < 2 {
        return Ok(None);
    }
    let metric = session.task.main_metric;
    if n == 2 {
        let line = simplex_line(session, subspace, step)?;
        let stem = out.join("simplex-line");
        let title = format!("{} along the edge vertex 0 → vertex 1 ({})", metric.name(), session.task.name);
        plot::simplex_line(&line.series, &line.markers, &line.hlines, metric.name(), &title, &stem)?;
        return Ok(Some(stem));
    }
    let eval = |d: &Encoded, at: &At| main_metric_at(session, subspace, d, at);
    let (dev, _, test) = splits(session)?;
    let k = (1.0 / step).round().max(1.0) as usize;
    let d = match split {
        "dev" => &dev,
        "test" => &test,
        other => return Err(Error::Input(format!("--split {other}: expected dev or test"))),
    };
    let mut points = Vec::new();
    // The grid points i/k, j/k with i + j <= k.
    let total = (k + 1) * (k + 2) / 2;
    let bar = progress(
        total,
        format!(
            "scoring {total} points of the simplex of vertices 0, 1, 2 on {} {split} examples (--step sets the spacing)",
            d.len()
        ),
    );
    for i in 0..=k {
        for j in 0..=(k - i) {
            let a = [i as f64 / k as f64, j as f64 / k as f64, (k - i - j) as f64 / k as f64];
            let mut alpha = vec![0.0; n];
            alpha[..3].copy_from_slice(&a);
            points.push((a, eval(d, &At::Alpha(alpha))));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let stem = out.join("simplex-triangle");
    let title = format!("{} {} over the simplex of vertices 0, 1, 2 ({})", split, metric.name(), session.task.name);
    plot::simplex_triangle(&points, metric.name(), &title, &stem)?;
    Ok(Some(stem))
}

/// Scores per (task, method) of one (protocol, K) group.
type Cells = BTreeMap<(String, String), Vec<f64>>;

/// Method comparison per task (mean ± std over split seeds of the main test metric at the
/// centroid) from a bench folder's runs: `<out>/methods-<protocol>-<K>`. Non-empty `tasks` /
/// `variants` keep the runs of those tasks / methods or variant names only (then the bars
/// follow the order of `variants`); a name with no finished run is an error.
pub fn bench_methods(
    bench_dirs: &[PathBuf],
    out: &Path,
    tasks: &[String],
    variants: &[String],
) -> Result<Vec<PathBuf>> {
    let mut rows = crate::bench::collect(bench_dirs)?;
    let dirs = bench_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let missing =
        |flag: &str, name: &String| Error::Input(format!("{flag} {name}: no finished run of it under {dirs}"));
    if !tasks.is_empty() {
        if let Some(t) = tasks.iter().find(|t| !rows.iter().any(|r| r.results.task == **t)) {
            return Err(missing("--tasks", t));
        }
        rows.retain(|r| tasks.contains(&r.results.task));
    }
    if !variants.is_empty() {
        if let Some(v) = variants.iter().find(|v| !rows.iter().any(|r| r.name() == v.as_str())) {
            return Err(missing("--variants", v));
        }
        rows.retain(|r| variants.iter().any(|v| v == r.name()));
    }
    let mut groups: BTreeMap<(String, u64), Cells> = BTreeMap::new();
    for row in &rows {
        let r = &row.results;
        let Some((_, metric, v)) = crate::bench::main_entry(r) else { continue };
        let task = format!("{} ({metric})", r.task);
        let variant = row.name().to_string();
        let key = (r.protocol.clone(), r.shots);
        groups.entry(key).or_default().entry((task, variant)).or_default().push(100.0 * v);
    }
    // Created only once the selection holds: a refused plot leaves no empty folder behind.
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut written = Vec::new();
    for ((protocol, shots), cells) in groups {
        let mut tasks: Vec<String> = cells.keys().map(|k| k.0.clone()).collect();
        tasks.dedup();
        let mut methods: Vec<String> = Vec::new();
        for (_, m) in cells.keys() {
            if !methods.contains(m) {
                methods.push(m.clone());
            }
        }
        if !variants.is_empty() {
            methods.sort_by_key(|m| variants.iter().position(|v| v == m));
        }
        // Where the points rest on different numbers of split seeds (a grid in progress), each
        // task's label says how many: "sst2 (accuracy, n = 5)", "mrpc (f1, n = 1–2)".
        let mut seeds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for ((t, _), v) in &cells {
            let (lo, hi) = seeds.entry(t).or_insert((v.len(), v.len()));
            (*lo, *hi) = ((*lo).min(v.len()), (*hi).max(v.len()));
        }
        let uniform = cells.values().map(Vec::len).collect::<std::collections::BTreeSet<_>>().len() == 1;
        let label = |task: &str| {
            if uniform {
                return task.to_string();
            }
            let (lo, hi) = seeds[task];
            let n = if lo == hi { format!("n = {lo}") } else { format!("n = {lo}–{hi}") };
            match task.strip_suffix(')') {
                Some(open) => format!("{open}, {n})"),
                None => format!("{task} ({n})"),
            }
        };
        let values: BTreeMap<(String, String), (f64, f64)> =
            cells.iter().map(|((t, m), v)| ((label(t), m.clone()), crate::bench::mean_std(v))).collect();
        let tasks: Vec<String> = tasks.iter().map(|t| label(t)).collect();
        let stem = out.join(format!("methods-{protocol}-{shots}"));
        let title = format!("test score ×100 at the centroid, mean ± std over split seeds ({protocol}, K = {shots})");
        plot::method_comparison(&tasks, &methods, &values, "score × 100", &title, &stem)?;
        written.push(stem);
    }
    if written.is_empty() {
        return Err(Error::Input(format!("no finished runs under {:?}", bench_dirs)));
    }
    Ok(written)
}
