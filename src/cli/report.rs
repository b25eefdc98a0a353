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
    // A file, a bench folder, or results that cannot be read: one line naming it.
    let rows = runs.iter().map(|r| prefix_subspace::report::read_run(r)).collect::<Result<Vec<_>, _>>()?;
    let named: Vec<_> = prefix_subspace::report::run_names(&runs).into_iter().zip(rows).collect();
    print!("{}", prefix_subspace::report::runs_table(&named));
    for note in prefix_subspace::report::mixed_test_sets(named.iter().map(|(_, r)| r)) {
        eprintln!("note: {note}");
    }
    Ok(())
}
