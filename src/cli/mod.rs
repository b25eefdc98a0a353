//! The command line: one file per command, each holding its flags (`Args`) and a `run` that
//! parses what clap leaves as text, calls the library and prints. Every decision about runs,
//! configs and data is the library's.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod embed;
mod eval;
mod export;
mod plot;
mod predict;
mod report;
mod speed;
mod train;

/// The run that `eval`, `predict` and `export` reopen, and where its GLUE data is.
#[derive(clap::Args)]
struct RunArgs {
    /// The run directory written by `train`.
    #[arg(long)]
    run: PathBuf,
    /// The GLUE data folder, instead of the run's own `data_dir` (a relative path there is read
    /// from where the command runs); the run checks by hash that it gives the same data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Parser)]
#[command(
    name = "prefix-subspace",
    version,
    about = "Few-shot fine-tuning of pretrained transformers with a simplex of deep prefixes"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a prefix subspace (or plain prefix tuning) on a few-shot sample and test it.
    Train(train::Args),
    /// Print sentence embeddings, one JSON array per line.
    Embed(embed::Args),
    /// Evaluate a trained run at a point of the simplex, on its dev or test split.
    Eval(eval::Args),
    /// Run a benchmark grid (resumable: finished cells are never recomputed), or merge the
    /// outputs of several shards.
    Bench(bench::Args),
    /// Draw the figures of a run (training curves; accuracy along the simplex) or of a bench
    /// (method comparison with error bars), as PNG and SVG.
    Plot(plot::Args),
    /// Export a trained prefix as a PEFT prefix-tuning adapter (+ the head, saved alongside).
    Export(export::Args),
    /// Print a table of finished runs (test metrics at the centroid, the ensemble, the best
    /// vertex).
    Report(report::Args),
    /// Predict labels for new texts with a trained run: one JSONL row per input line.
    ///
    /// Row i answers input line i, always, and starts with "line" (1-based) and, for a JSON
    /// line with one, its "id" (string or number). A good line gets "label" and
    /// "probabilities" (or "score" for a regression task):
    ///   {"line":1,"id":"r7","label":"positive","probabilities":{"negative":0.1,"positive":0.9}}
    /// A bad line (blank, not UTF-8, invalid JSON, no text field, a pair given to a
    /// single-text task or one text to a pair task) gets "error" instead:
    ///   {"line":3,"error":"empty line"}
    /// The exit status is 0 whenever rows were written (stderr says how many are errors);
    /// with --strict, the first bad line fails the command (`FILE:LINE: what was wrong`,
    /// status 2) and nothing is written.
    #[command(verbatim_doc_comment)]
    Predict(predict::Args),
    /// Print every config key (for `--set KEY=VALUE` and config files): default, valid values
    /// and meaning.
    Keys,
    /// Measure training and inference speed (samples/s, peak memory, FLOP/s), one JSON line
    /// per figure; `scripts/speed.sh` compares it with the PEFT reference.
    Speed(speed::Args),
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Export(a) => export::run(a),
        Command::Report(a) => report::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Speed(a) => speed::run(a),
        Command::Keys => {
            print!("{}", prefix_subspace::config::keys_text());
            Ok(())
        }
    }
}
