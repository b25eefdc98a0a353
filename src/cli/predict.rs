//! `prefix-subspace predict`: predict labels for new texts with a trained run: one JSONL row per input line.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;
use prefix_subspace::atomic::write_atomic;
use prefix_subspace::method::subspace::At;

/// The flags of `predict`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: super::RunArgs,
    /// One text per line, or JSON objects (lines starting with "{") with "text_a" (or
    /// "text"), "text_b" and an optional "id"; "-" = stdin. A pair task (one trained on
    /// text pairs, e.g. rte) takes two texts per line, separated by a tab or given as
    /// "text_a" and "text_b"; a single-text task takes exactly one (no tab, no "text_b").
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// Where to write the JSONL predictions; "-" = stdout. A file is written atomically; one
    /// that exists is refused unless --overwrite.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    /// Replace an existing --output file.
    #[arg(long)]
    overwrite: bool,
    /// Fail on the first bad input line (`FILE:LINE: what was wrong`, exit status 2,
    /// nothing written) instead of giving it an error row.
    #[arg(long)]
    strict: bool,
    /// centroid | vertex:I | ensemble:M | alpha:A,B,...
    #[arg(long, default_value = "centroid")]
    at: String,
    /// fp32 or bf16: the number format of the backbone's dense-layer products (default:
    /// the run's own `precision`); see `eval --help`.
    #[arg(long)]
    precision: Option<String>,
}

/// Runs `predict`.
pub fn run(args: Args) -> Result<()> {
    let Args { run: super::RunArgs { run, data_dir }, input, output, overwrite, at, precision, strict } = args;
    prefix_subspace::predict::check_output(&input, &output, overwrite)?;
    let (session, _vs, subspace) = prefix_subspace::rundir::open_run(&run, precision.as_deref(), data_dir.as_deref())?;
    let (point, m) = At::parse(&at)?;
    point.check(subspace.n, &at)?;
    let p = prefix_subspace::predict::run(&session, &subspace, &point, m, &input, strict)?;
    if output.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(p.text.as_bytes())?;
        out.flush()?;
    } else {
        write_atomic(&output, p.text.as_bytes())?;
    }
    if let Some(note) = p.note() {
        eprintln!("{note}");
    }
    Ok(())
}
