//! The valid range of every number-valued config key ([`RANGES`]), checked by
//! [`super::RunConfig::check_ranges`] and listed by `prefix-subspace keys`.

use super::*;

/// The valid range of a number-valued config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// An integer in `[lo, hi]`.
    Int(u64, u64),
    /// A finite number between `lo` and `hi`, each bound included or not.
    Float {
        /// Lower bound.
        lo: f64,
        /// Whether `lo` itself is allowed.
        lo_incl: bool,
        /// Upper bound.
        hi: f64,
        /// Whether `hi` itself is allowed.
        hi_incl: bool,
    },
}

impl Range {
    const fn closed(lo: f64, hi: f64) -> Self {
        Range::Float { lo, lo_incl: true, hi, hi_incl: true }
    }

    /// Whether the finite number `x` lies in the range.
    pub fn contains(&self, x: f64) -> bool {
        match *self {
            Range::Int(lo, hi) => x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64,
            Range::Float { lo, lo_incl, hi, hi_incl } => {
                x.is_finite() && (x > lo || (lo_incl && x == lo)) && (x < hi || (hi_incl && x == hi))
            }
        }
    }

    /// The range in words, e.g. "an integer in [1, 64]", "a number in [0, 1)".
    pub fn describe(&self) -> String {
        match *self {
            Range::Int(lo, hi) => format!("an integer in [{lo}, {hi}]"),
            Range::Float { lo, lo_incl, hi, hi_incl } => {
                format!("a number in {}{lo}, {hi}{}", if lo_incl { "[" } else { "(" }, if hi_incl { "]" } else { ")" })
            }
        }
    }
}

/// A config key and its valid range.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange {
    /// The key.
    pub key: &'static str,
    /// Its valid values.
    pub range: Range,
}

const fn int(key: &'static str, lo: u64, hi: u64) -> KeyRange {
    KeyRange { key, range: Range::Int(lo, hi) }
}
const fn num(key: &'static str, range: Range) -> KeyRange {
    KeyRange { key, range }
}

/// The largest seed: seeds are stored as TOML integers, which are signed 64-bit.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// The most models one evaluation may sample per example (`dev_samples`, `ensemble_samples`,
/// `--at ensemble:M`).
pub const MAX_SAMPLES: u64 = 1024;

/// The valid range of every number-valued key, checked once when a config is resolved (the
/// model-dependent limits on `max_len` and `prefix_len` are checked when the model is loaded).
pub const RANGES: &[KeyRange] = &[
    int("shots", 1, 100_000),
    int("split_seed", 0, MAX_SEED),
    int("max_len", 8, 8192),
    int("threads", 0, 256),
    int("vertices", 1, 64),
    int("prefix_len", 1, 1024),
    num("beta", Range::closed(0.0, 1e6)),
    num("prefix_dropout", Range::Float { lo: 0.0, lo_incl: true, hi: 1.0, hi_incl: false }),
    num("head_dropout", Range::Float { lo: 0.0, lo_incl: true, hi: 1.0, hi_incl: false }),
    int("reparam", 0, 4096),
    num("init_std", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    num("init_peft_noise", Range::closed(0.0, 10.0)),
    int("seed", 0, MAX_SEED),
    num("lr", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    num("head_lr", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    int("lora_r", 1, 1024),
    num("lora_alpha", Range::Float { lo: 0.0, lo_incl: false, hi: 1e6, hi_incl: true }),
    num("weight_decay", Range::closed(0.0, 100.0)),
    num("warmup_ratio", Range::closed(0.0, 1.0)),
    num("clip", Range::closed(0.0, 1e6)),
    int("batch_size", 1, 4096),
    int("epochs", 0, 100_000),
    int("max_steps", 0, 100_000_000),
    int("eval_every", 0, 100_000_000),
    int("patience", 0, 1_000_000),
    int("checkpoint_every", 0, 100_000_000),
    int("numerics", NUMERICS as u64, NUMERICS as u64),
    int("dev_samples", 1, MAX_SAMPLES),
    int("ensemble_samples", 1, MAX_SAMPLES),
    int("eval_batch_size", 1, 65_536),
    int("icl_shots", 0, MAX_SAMPLES),
    int("test_limit", 0, 1_000_000_000),
];

/// The LoRA targets `lora_targets` may name.
pub const LORA_TARGETS: [&str; 4] = ["query", "key", "value", "output"];
