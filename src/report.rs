//! Plain-text tables of finished runs.

use serde_json::Value;

/// The main metric of a `{metric: value}` object: the first of accuracy, mcc, pearson, f1.
fn main_value(m: &Value) -> Option<(String, f64)> {
    ["accuracy", "mcc", "pearson", "f1"]
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_f64).map(|v| (k.to_string(), v)))
}

/// One row per run: task, method, n, test set, centroid, ensemble, best vertex, train time.
pub fn runs_table(runs: &[Value]) -> String {
    let mut out = format!(
        "{:<10} {:<10} {:>2} {:<16} {:>9} {:>9} {:>12} {:>8}\n",
        "task", "method", "n", "test (metric)", "centroid", "ensemble", "best vertex", "train s"
    );
    for r in runs {
        for key in ["test", "test_matched", "test_mismatched"] {
            let Some(t) = r.get(key) else { continue };
            let Some((metric, centroid)) = t.get("centroid").and_then(main_value) else {
                continue;
            };
            let get = |at: &str| t.get(at).and_then(main_value).map(|(_, v)| v);
            let ensemble = get("ensemble");
            let best =
                (0..64).filter_map(|i| get(&format!("vertex{i}")).map(|v| (i, v))).max_by(|a, b| a.1.total_cmp(&b.1));
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            out.push_str(&format!(
                "{:<10} {:<10} {:>2} {:<16} {:>9.4} {:>9} {:>12} {:>8.1}\n",
                r["task"].as_str().unwrap_or("?"),
                r["method"].as_str().unwrap_or("?"),
                r["vertices"].as_u64().unwrap_or(0),
                format!("{key} ({metric})"),
                centroid,
                fmt(ensemble),
                best.map_or("-".to_string(), |(i, v)| format!("{v:.4} (v{i})")),
                r["train_seconds"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    out
}
