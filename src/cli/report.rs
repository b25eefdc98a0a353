//! `prefix-subspace report`: print a table of finished runs (test metrics at the centroid, the
//! ensemble and the best vertex, beside the majority-class rate).

use std::path::PathBuf;

use anyhow::Result;

/// The flags of `report`.
#[derive(clap::Args)]
pub struct Args {
    /// Run directories.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

/// Runs `report`.
pub fn run(args: Args) -> Result<()> {
    let Args { runs } = args;
    let mut rows = Vec::new();
    for r in &runs {
        if r.is_file() {
            anyhow::bail!("{}: a file, not a run directory (report takes the folders `train` writes)", r.display());
        }
        if !r.join("results.json").exists() && r.join("cells").is_dir() {
            anyhow::bail!(
                "{}: a bench folder, not a run directory; its table is {} (or give its cells: `report {}/cells/*/`)",
                r.display(),
                r.join("summary.md").display(),
                r.display()
            );
        }
        // Unreadable, not JSON, or without the fields of the table: one line naming it.
        rows.push(prefix_subspace::report::read_results(&r.join("results.json"))?);
    }
    print!("{}", prefix_subspace::report::runs_table(&rows));
    Ok(())
}
