//! `prefix-subspace export`: export a trained prefix as a PEFT prefix-tuning adapter (+ the head, saved alongside).

use std::path::PathBuf;

use anyhow::{bail, Result};
use prefix_subspace::method::subspace::At;

/// The flags of `export`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: super::RunArgs,
    /// centroid | vertex:I | alpha:A,B,...
    #[arg(long, default_value = "centroid")]
    at: String,
    /// Output format (only peft).
    #[arg(long, default_value = "peft")]
    format: String,
    /// Output folder (created if needed). Files of the adapter already there are refused
    /// unless --overwrite; other files are left alone.
    #[arg(long)]
    out: PathBuf,
    /// Replace the adapter's files in an existing --out folder.
    #[arg(long)]
    overwrite: bool,
}

/// Runs `export`.
pub fn run(args: Args) -> Result<()> {
    let Args { run: super::RunArgs { run, data_dir }, at, format, out, overwrite } = args;
    if format != "peft" {
        bail!("--format {format}: only peft is supported");
    }
    let out = prefix_subspace::export::check_out(&out, overwrite)?;
    let (session, _vs, subspace) = prefix_subspace::rundir::open_run(&run, None, data_dir.as_deref())?;
    let (point, m) = At::parse(&at)?;
    if m > 1 {
        bail!("--at {at}: export one point of the simplex (centroid, vertex:I or alpha:...), not an ensemble");
    }
    point.check(subspace.n, &at)?;
    if let Some(w) = prefix_subspace::export::peft(&session, &subspace, &point, &out)? {
        eprintln!("warning: {w}");
    }
    println!("wrote {}", out.path().display());
    Ok(())
}
