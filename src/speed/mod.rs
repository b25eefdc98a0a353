//! `prefix-subspace speed`: training and inference throughput of this implementation, one
//! JSON line per figure, with the same figures and keys as `bench/peft_reference.py` (the
//! PyTorch + transformers + PEFT reference) so that `scripts/speed.sh` can put them side by side.
//!
//! Figures (`--only NAME`; without it every figure runs, in one process):
//!
//! | name | what |
//! |---|---|
//! | `fixed-prefix`, `fixed-subspace` | training steps at a fixed shape, batch 16 × 128 random tokens (full attention mask), prefix 16: plain prefix tuning and the prefix subspace (n = 3, the defaults) |
//! | `fixed-lora`, `fixed-full` | the same shape, LoRA (r 8, α 16, query/value) and full fine-tuning |
//! | `sst2-prefix`, `sst2-subspace` | a real `train` run on SST-2, 16 per class (32 examples), batch 8, dynamic padding |
//! | `infer-prefix`, `infer-subspace` | inference (centroid) on the SST-2 dev set: 872 sentences, batch 64 |
//!
//! Everything runs through the library's own training pieces, so the speed measured is the
//! speed of `train`: the fixed-shape steps build the model with [`Session::new_subspace`] and
//! take the step of the training loop (reseeded draws, [`Subspace::forward`] with dropout,
//! cross-entropy + cos² regulariser, [`AdamW`] with clipping, inputs padded by [`pad_batch`]);
//! the SST-2 figures *are* [`crate::train::train`] runs (with one evaluation at the end), timed
//! from the per-step times they log in `metrics.jsonl`; inference is [`outputs`].
//!
//! Peak memory is `VmHWM` of `/proc/self/status` when the figure is done: run one figure per
//! process (`--only`) for a clean peak; with several figures in one process each reports the
//! peak so far.
//!
//! FLOP/s (fixed-shape figures): [`step_flops`] counts the matrix multiplications of one
//! training step analytically, 2·m·n·k for every forward product and, in the backward pass,
//! 2·m·n·k for every operand of a product whose gradient is needed (frozen weights get no
//! weight-gradient product; a layer input that does not depend on a trained tensor gets no
//! input gradient). Elementwise work (LayerNorm, softmax, GELU, dropout, AdamW) is not counted.
//! The CPU's fp32 peak is estimated from `/proc/cpuinfo` ([`peak_gflops`]), and raised to the
//! rate of a measured fp32 matrix product when that is higher ([`Peak::at_least_gemm`]).
//!
//! Products alone (every figure): [`step_products`] lists the matrix products of the figure's
//! own steps or batches (the same shapes, the same dynamic padding), and
//! [`products_only_seconds`] runs just those, back to back, on the same threads.
//! `products_only_samples_per_second` is then the rate the figure would reach if LayerNorm,
//! softmax, GELU, dropout, the optimizer and everything else took no time: a ceiling for any
//! implementation that runs the same products with the same BLAS (PEFT's torch does), and
//! `products_share` is the fraction of the figure's time those products account for.
//! `gflops` is the figure's counted FLOPs over its measured time.
//!
//! Files: this one runs the figures ([`run`], [`Options`]); `figures` measures each one,
//! `flops` is the FLOP model ([`step_products`], [`step_flops`]), `machine` the machine's
//! fp32 peak and memory, and `report` the JSON lines.

use std::path::PathBuf;

use serde_json::Value;
use tch::Device;

use crate::error::{Error, Result};
use crate::method::Method;
pub use crate::method::{LoraTargets, Trainable};

mod figures;
mod flops;
mod machine;
mod report;

pub use figures::{base_encoder, products_only_seconds};
pub use flops::{step_flops, step_products, Flops, Product, Products, StepShape};
pub use machine::{gemm_gflops, peak_gflops, peak_rss_mb, Peak};
pub use report::{to_line, MAIN_KEYS};

use figures::{fixed, infer, sst2};

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Prefix tuning (one vertex), fixed shape.
    FixedPrefix,
    /// Prefix subspace (3 vertices), fixed shape.
    FixedSubspace,
    /// LoRA, fixed shape.
    FixedLora,
    /// Full fine-tuning, fixed shape.
    FixedFull,
    /// Prefix tuning, SST-2 16 per class.
    Sst2Prefix,
    /// Prefix subspace, SST-2 16 per class.
    Sst2Subspace,
    /// LoRA, SST-2 16 per class (the comparison on models PEFT cannot prefix-tune: MPNet).
    Sst2Lora,
    /// Inference on SST-2 dev with a prefix.
    InferPrefix,
    /// Inference on SST-2 dev at the centroid of a subspace.
    InferSubspace,
    /// Inference on SST-2 dev with LoRA (unmerged, as PEFT runs it).
    InferLora,
}

impl Figure {
    /// Every figure, in output order.
    pub const ALL: [Figure; 10] = [
        Figure::FixedPrefix,
        Figure::FixedSubspace,
        Figure::FixedLora,
        Figure::FixedFull,
        Figure::Sst2Prefix,
        Figure::Sst2Subspace,
        Figure::Sst2Lora,
        Figure::InferPrefix,
        Figure::InferSubspace,
        Figure::InferLora,
    ];

    /// The name used by `--only` and in the JSON lines (`"what"`).
    pub fn name(self) -> &'static str {
        match self {
            Figure::FixedPrefix => "fixed-prefix",
            Figure::FixedSubspace => "fixed-subspace",
            Figure::FixedLora => "fixed-lora",
            Figure::FixedFull => "fixed-full",
            Figure::Sst2Prefix => "sst2-prefix",
            Figure::Sst2Subspace => "sst2-subspace",
            Figure::Sst2Lora => "sst2-lora",
            Figure::InferPrefix => "infer-prefix",
            Figure::InferSubspace => "infer-subspace",
            Figure::InferLora => "infer-lora",
        }
    }

    /// Parses a figure name.
    pub fn parse(s: &str) -> Result<Self> {
        crate::config::by_name(&Self::ALL, Self::name, s).map_err(|names| {
            Error::Input(format!("--only {s}: unknown figure (expected one of: {})", names.join(", ")))
        })
    }

    /// The method trained (or evaluated).
    pub fn method(self) -> &'static dyn Method {
        match self {
            Figure::FixedPrefix | Figure::Sst2Prefix | Figure::InferPrefix => &crate::method::prefix::PrefixTuning,
            Figure::FixedSubspace | Figure::Sst2Subspace | Figure::InferSubspace => {
                &crate::method::subspace::PrefixSubspace
            }
            Figure::FixedLora | Figure::Sst2Lora | Figure::InferLora => &crate::method::lora::Lora,
            Figure::FixedFull => &crate::method::full::FullFineTuning,
        }
    }

    /// True for the fixed-shape training figures (the only ones `--shape base` runs).
    pub fn fixed_shape(self) -> bool {
        matches!(self, Figure::FixedPrefix | Figure::FixedSubspace | Figure::FixedLora | Figure::FixedFull)
    }
}

/// The encoder the fixed-shape figures run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The model folder's own checkpoint.
    Model,
    /// A BERT-base-shaped encoder (12 layers × 768, 12 heads, FFN 3072, vocabulary 30522)
    /// with random weights, built in memory.
    Base,
}

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Model folder (default: the installed all-MiniLM-L6-v2); also gives the tokenizer.
    pub model: Option<PathBuf>,
    /// Intra-op threads.
    pub threads: usize,
    /// One figure, or all.
    pub only: Option<Figure>,
    /// Timed steps of the fixed-shape figures (the median is reported).
    pub steps: usize,
    /// Untimed steps before them.
    pub warmup: usize,
    /// Epochs of the SST-2 figures; the first is warm-up and not counted.
    pub epochs: usize,
    /// Timed passes over SST-2 dev (after one untimed pass).
    pub passes: usize,
    /// Batch size × tokens of the fixed shape.
    pub batch: i64,
    /// Tokens per example of the fixed shape.
    pub seq_len: i64,
    /// GLUE folder (default: $GLUE_DIR).
    pub data_dir: Option<PathBuf>,
    /// Encoder of the fixed-shape figures.
    pub shape: Shape,
    /// Use this fp32 peak (GFLOP/s, all threads together) instead of the estimate.
    pub peak_gflops: Option<f64>,
    /// Write the SST-2 few-shot split (example ids) here, for `peft_reference.py --split-json`.
    pub split_out: Option<PathBuf>,
    /// Replace an existing `split_out` file (refused otherwise, before any figure runs).
    pub overwrite: bool,
    /// `cpu`, `cuda` or `cuda:N`: where every figure runs.
    pub device: String,
    /// `key=value` config overrides for every figure (as `train --set`), e.g.
    /// `backbone_dropout=false`; the figure's method and the speed settings win.
    pub sets: Vec<String>,
    /// Also time the fixed-shape steps' phases (forward, backward, update; medians). On a GPU
    /// each phase then waits for its kernels, which can slow the step a little.
    pub phases: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            model: None,
            threads: 2,
            only: None,
            steps: 10,
            warmup: 2,
            epochs: 6,
            passes: 3,
            batch: 16,
            seq_len: 128,
            data_dir: None,
            shape: Shape::Model,
            peak_gflops: None,
            split_out: None,
            overwrite: false,
            device: "cpu".into(),
            sets: Vec::new(),
            phases: false,
        }
    }
}

/// Runs the figures of `opts`, calling `emit` with each JSON line as soon as it is measured.
pub fn run(opts: &Options, mut emit: impl FnMut(&Value)) -> Result<()> {
    if opts.threads == 0 {
        return Err(Error::Input("--threads must be at least 1".into()));
    }
    if opts.steps == 0 || opts.passes == 0 || opts.batch < 1 || opts.seq_len < 2 {
        return Err(Error::Input("--steps, --passes, --batch must be at least 1 and --seq-len at least 2".into()));
    }
    if opts.epochs < 2 {
        return Err(Error::Input("--epochs must be at least 2 (the first one is warm-up)".into()));
    }
    if let Some(p) = &opts.split_out {
        crate::atomic::check_new_file(p, "--split-out", opts.overwrite)?;
    }
    tch::set_num_threads(opts.threads as i32);
    let device = crate::embed::parse_device(&opts.device)?;
    let figures: Vec<Figure> = match (opts.only, opts.shape) {
        (Some(f), Shape::Base) if !f.fixed_shape() => {
            return Err(Error::Input(format!(
                "--only {}: --shape base applies to the fixed-shape figures only (fixed-prefix, fixed-subspace, fixed-lora, fixed-full)",
                f.name()
            )))
        }
        (Some(f), _) => vec![f],
        (None, Shape::Base) => Figure::ALL.into_iter().filter(|f| f.fixed_shape()).collect(),
        (None, Shape::Model) => Figure::ALL.to_vec(),
    };
    // A decoder LLM: the training and inference figures of real runs, timed as they are; the
    // fixed-shape figures and the FLOP model describe an encoder.
    let decoder = opts.shape == Shape::Model && crate::model::is_decoder(&model_dir(opts)?)?;
    let figures: Vec<Figure> = match (decoder, opts.only) {
        (true, Some(f)) if f.fixed_shape() => {
            return Err(Error::Input(format!(
                "--only {}: the fixed-shape figures are for encoders; with a decoder LLM run sst2-prefix, sst2-subspace, sst2-lora, infer-prefix, infer-subspace or infer-lora",
                f.name()
            )))
        }
        (true, None) => figures.into_iter().filter(|f| !f.fixed_shape()).collect(),
        _ => figures,
    };
    let cpu_fixed = device == Device::Cpu && figures.iter().any(|f| f.fixed_shape());
    let peak = match opts.peak_gflops {
        Some(g) => Peak { gflops: g, how: format!("--peak-gflops {g}"), gemm_gflops: None },
        None if cpu_fixed => peak_gflops(opts.threads).at_least_gemm(gemm_gflops()),
        None => peak_gflops(opts.threads),
    };
    if cpu_fixed {
        eprintln!("fp32 peak: {:.1} GFLOP/s ({})", peak.gflops, peak.how);
    }
    for f in figures {
        let v = if f.fixed_shape() {
            fixed(opts, f, device, &peak)?
        } else if matches!(f, Figure::Sst2Prefix | Figure::Sst2Subspace | Figure::Sst2Lora) {
            sst2(opts, f)?
        } else {
            infer(opts, f)?
        };
        emit(&v);
    }
    Ok(())
}

fn model_dir(opts: &Options) -> Result<PathBuf> {
    let dir = opts.model.as_deref().map(crate::paths::model).unwrap_or_else(crate::paths::default_model);
    if !dir.exists() {
        return Err(Error::Input(crate::paths::model_not_found(&dir)));
    }
    Ok(dir)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_round_trip() {
        for f in Figure::ALL {
            assert_eq!(Figure::parse(f.name()).unwrap(), f);
        }
        assert!(Figure::parse("fixed-prompt").is_err());
    }
}
