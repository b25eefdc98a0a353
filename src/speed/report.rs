//! The JSON line of a figure: its head ([`head`]) and the order of its keys ([`to_line`]).

use serde_json::{json, Value};

use super::{Figure, Options};

/// The start of a figure's JSON line: implementation, figure, threads, method, device, and
/// the `--set` overrides if any.
pub(super) fn head(opts: &Options, f: Figure) -> Value {
    let mut v = json!({
        "impl": "ours", "what": f.name(), "threads": opts.threads, "method": f.method().name(), "device": opts.device
    });
    if !opts.sets.is_empty() {
        v["set"] = json!(opts.sets);
    }
    v
}

/// The keys every figure has, first and in this order (the rest follow, sorted).
pub const MAIN_KEYS: [&str; 6] =
    ["impl", "what", "samples_per_second", "step_seconds_median", "peak_rss_mb", "threads"];

/// One JSON line with [`MAIN_KEYS`] first.
pub fn to_line(v: &Value) -> String {
    let Some(map) = v.as_object() else { return v.to_string() };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| (MAIN_KEYS.iter().position(|m| m == k).unwrap_or(MAIN_KEYS.len()), k.to_string()));
    let fields: Vec<String> = keys.iter().map(|k| format!("{}:{}", Value::from(k.as_str()), map[k.as_str()])).collect();
    format!("{{{}}}", fields.join(","))
}
