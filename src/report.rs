//! Plain-text tables of finished runs.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::results::{Results, Scores, TEST_SETS};

/// The main metric of a `{metric: value}` object: the first of accuracy, mcc, pearson, f1.
fn main_value(m: &Value) -> Option<(String, f64)> {
    ["accuracy", "mcc", "pearson", "f1"]
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_f64).map(|v| (k.to_string(), v)))
}

/// Reads a run's `results.json`: one line naming the file when it cannot be read, is not JSON,
/// or lacks what the tables show (the task, the method, and each test set scored at the
/// centroid, at least one of them), or is not the [`Results`] of a run.
pub fn read_results(path: &Path) -> Result<Results> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Input(format!("{}: not found (is the run finished?)", path.display())),
        _ => Error::io(path, e),
    })?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: invalid JSON: {e}", path.display())))?;
    let bad = |what: String| {
        Err(Error::Input(format!(
            "{}: {what}; expected the results.json that `prefix-subspace train` writes",
            path.display()
        )))
    };
    if !v.is_object() {
        return bad("not a JSON object".into());
    }
    for k in ["task", "method"] {
        if !v.get(k).is_some_and(Value::is_string) {
            return bad(format!("no \"{k}\" string"));
        }
    }
    let mut scored = 0;
    for set in TEST_SETS {
        let Some(t) = v.get(set) else { continue };
        if t.get("centroid").and_then(main_value).is_none() {
            return bad(format!("\"{set}\" has no score at the centroid (\"centroid\": {{\"accuracy\": ...}})"));
        }
        scored += 1;
    }
    if scored == 0 {
        return bad("no test scores (\"test\": {\"centroid\": {\"accuracy\": ...}})".into());
    }
    Results::from_value(v, path)
}

/// Reads the results of the run directory `dir` ([`read_results`] on its `results.json`);
/// a file, a bench folder, or a folder of runs is refused with one line saying what it is and
/// what to give.
pub fn read_run(dir: &Path) -> Result<Results> {
    crate::rundir::refuse_file(dir)?;
    let is_run = dir.join("results.json").exists() || dir.join("config.toml").exists();
    if !is_run && dir.join("cells").is_dir() {
        return Err(Error::Input(format!(
            "{}: a bench folder, not a run directory; its table is {} (or give its cells: `report {}/cells/*/`)",
            dir.display(),
            dir.join("summary.md").display(),
            dir.display()
        )));
    }
    if !is_run {
        let runs = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().filter(|e| e.path().join("results.json").is_file()).count())
            .unwrap_or(0);
        if runs > 0 {
            return Err(Error::Input(format!(
                "{}: a folder of {runs} finished run{}, not a run directory (give them: `report {}/*/`)",
                dir.display(),
                if runs == 1 { "" } else { "s" },
                dir.display()
            )));
        }
    }
    read_results(&dir.join("results.json"))
}

/// The model a run names, as a short name: its folder's or file's name without `.gguf`.
fn model_name(r: &Results) -> String {
    let name = r.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".gguf").map(str::to_string).unwrap_or(name)
}

/// The name of each run in a table: its directory's name, or the whole path as given when two
/// runs share a directory name.
pub fn run_names(dirs: &[std::path::PathBuf]) -> Vec<String> {
    let short: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().map_or_else(|| d.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect();
    let unique = short.iter().collect::<std::collections::BTreeSet<_>>().len() == short.len();
    if unique {
        short
    } else {
        dirs.iter().map(|d| d.display().to_string()).collect()
    }
}

/// One row per run (its name, its results) and test set: task, method, n, test set, centroid,
/// ensemble, best vertex, train time; a `model` column after the task when the runs name more
/// than one model, and a last `run` column with the runs' names when two runs of a task share
/// model, method and n (a variant such as `prefix-text` beside `prefix`); then one `majority`
/// row per task and test set. Columns widen to their longest entry.
pub fn runs_table(runs: &[(String, Results)]) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut rows: Vec<[String; 10]> = Vec::new();
    for (name, r) in runs {
        for (key, t) in r.test_sets() {
            let Some((metric, centroid)) = t.get("centroid").and_then(Scores::main_value) else {
                continue;
            };
            let get = |at: &str| t.get(at).and_then(Scores::main_value).map(|(_, v)| v);
            let best =
                (0..64).filter_map(|i| get(&format!("vertex{i}")).map(|v| (i, v))).max_by(|a, b| a.1.total_cmp(&b.1));
            rows.push([
                r.task.clone(),
                model_name(r),
                r.method.clone(),
                r.vertices.to_string(),
                format!("{key} ({metric})"),
                format!("{centroid:.4}"),
                fmt(get("ensemble")),
                best.map_or("-".to_string(), |(i, v)| format!("{v:.4} (v{i})")),
                format!("{:.1}", r.train_seconds),
                name.clone(),
            ]);
        }
    }
    let alike: std::collections::BTreeSet<_> =
        runs.iter().map(|(_, r)| (&r.task, model_name(r), &r.method, r.vertices)).collect();
    let show_names = alike.len() < runs.len();
    // Once per test set, the score of always answering its most frequent class in the main
    // metric (runs that recorded only its accuracy: that; older runs: nothing).
    let mut seen = std::collections::BTreeSet::new();
    for (_, r) in runs {
        let Some(m) = &r.majority else { continue };
        for (set, rate) in m {
            let task = &r.task;
            // The metric of the run's own line.
            let main = r.test_set(set).and_then(|t| t.get("centroid")).and_then(Scores::main_value);
            let in_metric = main.and_then(|(k, _)| {
                r.majority_scores.as_ref().and_then(|s| s.get(set)).and_then(|s| s.get(k)).map(|&v| (k, v))
            });
            let (metric, value) = in_metric.unwrap_or(("accuracy", *rate));
            // One line per task, test set and rate: runs scored on different samples of a test
            // set get one each ([`mixed_test_sets`] says so).
            if seen.insert((task.to_string(), set.clone(), value.to_bits())) {
                let cells =
                    [task.to_string(), String::new(), "majority".into(), "-".into(), format!("{set} ({metric})")];
                let mut row: [String; 10] = Default::default();
                row[..5].clone_from_slice(&cells);
                row[5] = format!("{value:.4}");
                rows.push(row);
            }
        }
    }
    let header =
        ["task", "model", "method", "n", "test (metric)", "centroid", "ensemble", "best vertex", "train s", "run"];
    let models: std::collections::BTreeSet<String> = runs.iter().map(|(_, r)| model_name(r)).collect();
    // Minimum widths (the table's layout before the model column existed); left-aligned text.
    let min = [10, 0, 10, 2, 16, 9, 9, 12, 8, 0];
    let left = [true, true, true, false, true, false, false, false, false, true];
    let shown: Vec<usize> = (0..10).filter(|&c| (c != 1 || models.len() > 1) && (c != 9 || show_names)).collect();
    let width =
        |c: usize| rows.iter().map(|r| r[c].chars().count()).chain([min[c], header[c].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..10).map(width).collect();
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (k, &c) in shown.iter().enumerate() {
            // A majority row ends after its score, as before.
            if c > 5 && cells[c].is_empty() {
                break;
            }
            if k > 0 {
                l.push(' ');
            }
            let w = widths[c];
            l += &if left[c] { format!("{:<w$}", cells[c]) } else { format!("{:>w$}", cells[c]) };
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for r in &rows {
        out += &line(r);
    }
    out
}

/// One line per task and test set whose runs scored different examples (different counts,
/// or different majority-class rates): their scores do not compare. Runs that recorded
/// neither are not counted.
pub fn mixed_test_sets<'a>(runs: impl IntoIterator<Item = &'a Results>) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut seen: BTreeMap<(String, String), (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
    for r in runs {
        for (set, _) in r.test_sets() {
            let e = seen.entry((r.task.clone(), set.to_string())).or_default();
            if let Some(&n) = r.test_examples.as_ref().and_then(|m| m.get(set)) {
                e.0.insert(n);
            }
            if let Some(&rate) = r.majority.as_ref().and_then(|m| m.get(set)) {
                e.1.insert(rate.to_bits());
            }
        }
    }
    seen.into_iter()
        .filter(|(_, (n, rates))| n.len() > 1 || rates.len() > 1)
        .map(|((task, set), (n, _))| {
            let counts = if n.len() > 1 {
                format!(" ({} examples)", n.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))
            } else {
                String::new()
            };
            format!(
                "the {task} runs were scored on different {set} sets{counts}: their {set} scores do not compare (test_limit, or the data, differ)"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::TestScores;

    fn run(task: &str, metric: &str, v: f64) -> Results {
        let s = Scores(BTreeMap::from([(metric.to_string(), v)]));
        Results {
            task: task.into(),
            method: "prefix".into(),
            vertices: 1,
            test: Some(TestScores::from([("centroid".to_string(), s)])),
            majority: Some(BTreeMap::from([("test".to_string(), 0.684)])),
            ..Results::default()
        }
    }

    /// The runs named `r0`, `r1`, ...
    fn named<const N: usize>(runs: [Results; N]) -> Vec<(String, Results)> {
        runs.into_iter().enumerate().map(|(i, r)| (format!("r{i}"), r)).collect()
    }

    #[test]
    fn runs_alike_but_for_their_settings_are_told_apart_by_name() {
        // prefix and prefix-text (another init) of one task: same method and n, two rows.
        let runs = vec![
            ("rte-prefix".to_string(), run("rte", "accuracy", 0.51)),
            ("rte-prefix-text".to_string(), run("rte", "accuracy", 0.52)),
        ];
        let t = runs_table(&runs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].ends_with("train s run"), "{t}");
        assert!(lines[1].ends_with(" rte-prefix") && lines[2].ends_with(" rte-prefix-text"), "{t}");
        let different = runs_table(&named([run("rte", "accuracy", 0.5), run("sst2", "accuracy", 0.8)]));
        assert!(!different.contains(" run") && !different.contains("r1"), "no column when rows differ\n{different}");
        let dirs = ["a/run", "b/run/", "c/other"].map(std::path::PathBuf::from);
        assert_eq!(run_names(&dirs[2..]), ["other"]);
        assert_eq!(run_names(&dirs), ["a/run", "b/run/", "c/other"], "the paths when two names clash");
    }

    #[test]
    fn runs_scored_on_different_test_sets_are_said_not_to_compare() {
        let sized = |n: u64, rate: f64| {
            let mut r = run("sst2", "accuracy", 0.8);
            r.test_examples = Some(BTreeMap::from([("test".to_string(), n)]));
            r.majority = Some(BTreeMap::from([("test".to_string(), rate)]));
            r
        };
        assert!(mixed_test_sets(&[sized(872, 0.5092), sized(872, 0.5092)]).is_empty());
        let notes = mixed_test_sets(&[sized(872, 0.5092), sized(24, 0.5)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("sst2 runs") && notes[0].contains("(24, 872 examples)"), "{notes:?}");
        // Runs written before the count was recorded: told apart by their majority rates.
        assert_eq!(mixed_test_sets(&[run("sst2", "accuracy", 0.8), sized(24, 0.5)]).len(), 1);
        // One majority line per rate.
        let t = runs_table(&named([sized(872, 0.5092), sized(24, 0.5)]));
        assert_eq!(t.lines().filter(|l| l.contains("majority")).count(), 2, "{t}");
    }

    #[test]
    fn the_majority_line_is_in_the_main_metric_when_recorded() {
        // CoLA's line reads MCC: always answering "acceptable" scores 0 there, not its 68.4 %.
        let old = run("cola", "mcc", 0.1);
        let mut new = run("cola", "mcc", 0.1);
        let s = Scores(BTreeMap::from([("accuracy".to_string(), 0.684), ("mcc".to_string(), 0.0)]));
        new.majority_scores = Some(BTreeMap::from([("test".to_string(), s)]));
        let line = |t: &str| t.lines().find(|l| l.contains("majority")).unwrap().to_string();
        let (new, old) = (runs_table(&named([new])), runs_table(&named([old])));
        assert!(line(&new).ends_with("test (mcc)          0.0000"), "{new}");
        assert!(line(&old).ends_with("test (accuracy)     0.6840"), "{old}");
    }

    #[test]
    fn columns_widen_to_their_longest_entry_and_models_show_when_they_differ() {
        let mut a = run("mnli", "accuracy", 0.5);
        a.test_mismatched = a.test.take();
        a.model = "/models/smollm2-135m-instruct".into();
        let mut b = run("rte", "accuracy", 0.25);
        b.model = "/elsewhere/gemma-3-270m.gguf".into();
        let t = runs_table(&named([a.clone(), b]));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].find("centroid"), lines[1].find("0.5000").map(|i| i - 2), "{t}");
        assert_eq!(lines[1].find("0.5000"), lines[2].find("0.2500"), "{t}");
        assert!(lines[0].starts_with("task       model                 method "), "{t}");
        assert!(lines[2].starts_with("rte        gemma-3-270m          prefix "), "{t}");
        let one = runs_table(&named([a]));
        assert!(!one.contains("model") && !one.contains("smollm2"), "one model: no column\n{one}");
    }
}
