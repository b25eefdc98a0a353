//! The run config (TOML file, `--set` overrides, validation) and the bench config parser on
//! arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefix_subspace::bench::BenchConfig;
use prefix_subspace::config::RunConfig;

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|input: &[u8]| {
    let path = scratch::scratch("config.toml", input);
    if let Ok(c) = RunConfig::from_file(&path) {
        let _ = c.clone().resolve();
        // Each line of the input as a --set override too.
        let sets: Vec<String> = String::from_utf8_lossy(input).lines().map(str::to_string).collect();
        if let Ok(c) = c.apply_overrides(&sets) {
            let _ = c.to_toml();
            let _ = c.resolve();
        }
    }
    if let Ok(b) = BenchConfig::from_file(&path) {
        if let Ok(cells) = b.cells() {
            for cell in cells.iter().take(1000) {
                let _ = cell.config.to_toml();
            }
        }
    }
});
