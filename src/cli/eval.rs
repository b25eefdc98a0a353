//! `prefix-subspace eval`: evaluate a trained run at a point of the simplex, on its dev or test split.

use anyhow::{bail, Result};
use prefix_subspace::eval::Encoded;
use prefix_subspace::train::evaluate_at;

/// The flags of `eval`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: super::RunArgs,
    /// centroid | vertex:I | ensemble:M | alpha:A,B,... | sweep:STEP (vertex 0 → 1) | all.
    #[arg(long, default_value = "centroid")]
    at: String,
    /// dev or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// fp32 or bf16: the number format of the backbone's dense-layer products for this
    /// evaluation (default: the run's own `precision`). bf16 was 1.5-2x faster on
    /// CPUs with AMX or Zen 4's AVX512-BF16, slower on one without AMX (`speed` measures it);
    /// scores can differ from fp32's by a few examples.
    #[arg(long)]
    precision: Option<String>,
}

/// Runs `eval`.
pub fn run(args: Args) -> Result<()> {
    let Args { run: super::RunArgs { run, data_dir }, at, split, precision } = args;
    let (session, _vs, subspace) = prefix_subspace::rundir::open_run(&run, precision.as_deref(), data_dir.as_deref())?;
    let data: Vec<(String, Encoded)> = match split.as_str() {
        "dev" => vec![("dev".into(), Encoded::new(&session.tokenizer, &session.task.split.dev)?)],
        "test" => session
            .task
            .tests
            .iter()
            .map(|(n, ex)| Ok((n.clone(), Encoded::new(&session.tokenizer, ex)?)))
            .collect::<Result<_>>()?,
        other => bail!("--split {other}: expected dev or test"),
    };
    let mut report = serde_json::Map::new();
    for (name, d) in &data {
        report.insert(name.clone(), evaluate_at(&session, &subspace, d, &at)?);
    }
    println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(report))?);
    Ok(())
}
