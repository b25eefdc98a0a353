//! Config resolution with every key: the input picks keys and gives their values as
//! `--set KEY=VALUE` would (each line `INDEX VALUE`, INDEX taken modulo the number of keys), and
//! as `--at` forms; resolving, writing back and parsing must never panic, and a resolved config
//! must pass its own ranges again after a round trip through TOML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefix_subspace::config::RunConfig;
use prefix_subspace::subspace::At;

fn keys() -> Vec<String> {
    prefix_subspace::config::key_docs().iter().map(|d| d.key.to_string()).collect()
}

fuzz_target!(|input: &[u8]| {
    let keys = keys();
    let text = String::from_utf8_lossy(input);
    let mut sets = Vec::new();
    for line in text.lines() {
        let (i, value) = line.split_once(' ').unwrap_or((line, ""));
        let i = i.bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
        sets.push(format!("{}={value}", keys[i % keys.len()]));
        let _ = At::parse(value);
        let _ = At::parse_sweep(value);
    }
    if let Ok(c) = RunConfig::default().apply_overrides(&sets) {
        if let Ok(r) = c.resolve() {
            let back = RunConfig::from_toml_text(&r.to_toml()).expect("a resolved config reads back");
            assert!(back.resolve().is_ok());
        }
    }
});
