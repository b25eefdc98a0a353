//! `prefix-subspace plot`: draw the figures of a run (training curves; accuracy along the simplex) or of a bench

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The flags of `plot`.
#[derive(clap::Args)]
pub struct Args {
    /// A run directory: figures go to RUN/plots/.
    #[arg(long, required_unless_present = "bench")]
    run: Option<PathBuf>,
    /// The GLUE data folder, instead of the run's own `data_dir` (a relative path there is read
    /// from where the command runs); the run checks by hash that it gives the same data.
    #[arg(long, requires = "run")]
    data_dir: Option<PathBuf>,
    /// Bench folders: figures go to the first one's plots/.
    #[arg(long, num_args = 1.., conflicts_with = "run")]
    bench: Vec<PathBuf>,
    /// With --bench: only these tasks (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "bench")]
    tasks: Vec<String>,
    /// With --bench: only these methods / variant names (comma-separated), bars in this order.
    #[arg(long, value_delimiter = ',', requires = "bench")]
    variants: Vec<String>,
    /// For n ≥ 3, the split of the triangle heat map (dev or test).
    #[arg(long, default_value = "dev")]
    split: String,
    /// Step of α along the edge / over the triangle.
    #[arg(long, default_value_t = 0.05)]
    step: f64,
}

/// Runs `plot`.
pub fn run(args: Args) -> Result<()> {
    let Args { run, bench, split, step, data_dir, tasks, variants } = args;
    if !(0.01..=0.5).contains(&step) {
        bail!("--step {step}: expected a value in [0.01, 0.5]");
    }
    let written = if let Some(run) = run {
        if !run.join("checkpoint.safetensors").is_file() && run.join("results.json").is_file() {
            // A finished run kept without its weights, as the cells of bench/results/ are: its
            // training curves only (its log, or its bench folder's metrics.jsonl.gz).
            let metric = prefix_subspace::figures::finished_main_metric(&run)?;
            let w = prefix_subspace::figures::training(&run, &metric, &run.join("plots"))?;
            eprintln!(
                "note: {} has no checkpoint.safetensors: only its training curves were drawn (the simplex figures need the weights)",
                run.display()
            );
            println!("{}.png\n{}.svg", w.display(), w.display());
            return Ok(());
        }
        // The run is opened (and so checked) before anything is created in it.
        let (session, _vs, subspace) = prefix_subspace::rundir::open_run(&run, None, data_dir.as_deref())?;
        let out = run.join("plots");
        std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
        let mut w = vec![prefix_subspace::figures::training(&run, session.task.main_metric.name(), &out)?];
        w.extend(prefix_subspace::figures::simplex(&session, &subspace, &split, step, &out)?);
        w
    } else {
        prefix_subspace::figures::bench_methods(&bench, &bench[0].join("plots"), &tasks, &variants)?
    };
    for w in written {
        println!("{}.png\n{}.svg", w.display(), w.display());
    }
    Ok(())
}
