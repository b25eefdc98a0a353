//! `prefix-subspace speed`: training and inference speed, one JSON line per figure.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// A model folder, a .gguf file or an installed model name (default: the installed
    /// all-MiniLM-L6-v2); a decoder LLM runs the sst2-* and infer-* figures (no FLOP model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// One figure: fixed-prefix, fixed-subspace, fixed-lora, fixed-full, sst2-prefix,
    /// sst2-subspace, sst2-lora, infer-prefix, infer-subspace or infer-lora (default: all, in
    /// this process; one figure per process gives a clean peak memory).
    #[arg(long)]
    only: Option<String>,
    /// Timed training steps of the fixed-shape figures (median reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Epochs of the SST-2 training figures (the first is warm-up, not counted).
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Timed passes over SST-2 dev for the inference figures (after one untimed pass).
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Batch size of the fixed shape.
    #[arg(long, default_value_t = 16)]
    batch: i64,
    /// Tokens per example of the fixed shape.
    #[arg(long, default_value_t = 128)]
    seq_len: i64,
    /// Folder holding the GLUE task folders (default: $GLUE_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// model (the model folder's checkpoint) or base (a random BERT-base-shaped encoder,
    /// 12 × 768; fixed-shape figures only).
    #[arg(long, default_value = "model")]
    shape: String,
    /// cpu, cuda or cuda:N (every figure runs there; the fp32 peak is the CPU's, so no peak
    /// fraction is reported on a GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// fp32 peak of the threads used, GFLOP/s (default: estimated from /proc/cpuinfo).
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// Write the SST-2 few-shot split (example ids) to this file (for bench/peft_reference.py --split-json).
    #[arg(long)]
    split_out: Option<PathBuf>,
    /// Replace an existing --split-out file.
    #[arg(long, requires = "split_out")]
    overwrite: bool,
    /// Override a config key for every figure, as `train --set` (e.g. --set backbone_dropout=false).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Also time the phases of the fixed-shape steps (forward, backward, update: medians in
    /// the JSON line); on a GPU each phase then waits for its kernels.
    #[arg(long)]
    phases: bool,
}

/// Runs `speed`.
pub fn run(a: Args) -> Result<()> {
    let opts = prefix_subspace::speed::Options {
        model: a.model,
        threads: a.threads,
        only: a.only.as_deref().map(prefix_subspace::speed::Figure::parse).transpose()?,
        steps: a.steps,
        warmup: a.warmup,
        epochs: a.epochs,
        passes: a.passes,
        batch: a.batch,
        seq_len: a.seq_len,
        data_dir: a.data_dir,
        shape: match a.shape.as_str() {
            "model" => prefix_subspace::speed::Shape::Model,
            "base" => prefix_subspace::speed::Shape::Base,
            other => bail!("--shape {other}: expected model or base"),
        },
        peak_gflops: a.peak_gflops,
        split_out: a.split_out,
        overwrite: a.overwrite,
        device: a.device,
        sets: a.sets,
        phases: a.phases,
    };
    prefix_subspace::speed::run(&opts, |v| {
        println!("{}", prefix_subspace::speed::to_line(v));
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
