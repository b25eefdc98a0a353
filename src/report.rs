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

/// One row per run: task, method, n, test set, centroid, ensemble, best vertex, train time.
pub fn runs_table(runs: &[Results]) -> String {
    let mut out = format!(
        "{:<10} {:<10} {:>2} {:<16} {:>9} {:>9} {:>12} {:>8}\n",
        "task", "method", "n", "test (metric)", "centroid", "ensemble", "best vertex", "train s"
    );
    for r in runs {
        for (key, t) in r.test_sets() {
            let Some((metric, centroid)) = t.get("centroid").and_then(Scores::main_value) else {
                continue;
            };
            let get = |at: &str| t.get(at).and_then(Scores::main_value).map(|(_, v)| v);
            let ensemble = get("ensemble");
            let best =
                (0..64).filter_map(|i| get(&format!("vertex{i}")).map(|v| (i, v))).max_by(|a, b| a.1.total_cmp(&b.1));
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            out.push_str(&format!(
                "{:<10} {:<10} {:>2} {:<16} {:>9.4} {:>9} {:>12} {:>8.1}\n",
                r.task,
                r.method,
                r.vertices,
                format!("{key} ({metric})"),
                centroid,
                fmt(ensemble),
                best.map_or("-".to_string(), |(i, v)| format!("{v:.4} (v{i})")),
                r.train_seconds,
            ));
        }
    }
    // Once per test set, the score of always answering its most frequent class in the main
    // metric (runs that recorded only its accuracy: that; older runs: nothing).
    let mut seen = std::collections::BTreeSet::new();
    for r in runs {
        let Some(m) = &r.majority else { continue };
        for (set, rate) in m {
            let task = &r.task;
            // The metric of the run's own line.
            let main = r.test_set(set).and_then(|t| t.get("centroid")).and_then(Scores::main_value);
            let in_metric = main.and_then(|(k, _)| {
                r.majority_scores.as_ref().and_then(|s| s.get(set)).and_then(|s| s.get(k)).map(|&v| (k, v))
            });
            let (metric, value) = in_metric.unwrap_or(("accuracy", *rate));
            if seen.insert((task.to_string(), set.clone())) {
                out.push_str(&format!(
                    "{task:<10} {:<10} {:>2} {:<16} {value:>9.4}\n",
                    "majority",
                    "-",
                    format!("{set} ({metric})")
                ));
            }
        }
    }
    out
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

    #[test]
    fn the_majority_line_is_in_the_main_metric_when_recorded() {
        // CoLA's line reads MCC: always answering "acceptable" scores 0 there, not its 68.4 %.
        let old = run("cola", "mcc", 0.1);
        let mut new = run("cola", "mcc", 0.1);
        let s = Scores(BTreeMap::from([("accuracy".to_string(), 0.684), ("mcc".to_string(), 0.0)]));
        new.majority_scores = Some(BTreeMap::from([("test".to_string(), s)]));
        let line = |t: &str| t.lines().find(|l| l.contains("majority")).unwrap().to_string();
        let (new, old) = (runs_table(&[new]), runs_table(&[old]));
        assert!(line(&new).ends_with("test (mcc)          0.0000"), "{new}");
        assert!(line(&old).ends_with("test (accuracy)     0.6840"), "{old}");
    }
}
