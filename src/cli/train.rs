//! `prefix-subspace train`: trains a method on a few-shot sample and tests it, into a run
//! directory (new, or an interrupted one continued with `--resume`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use prefix_subspace::config::{Protocol, RunConfig};
use prefix_subspace::results::{Results, Scores};
use prefix_subspace::rundir::Writing;

#[derive(clap::Args)]
pub struct Args {
    /// cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, polarity (demo data) or user.
    #[arg(long)]
    task: Option<String>,
    /// Folder holding the GLUE task folders (default: $GLUE_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hugging Face encoder folder, GGUF file (decoder LLM), or installed model name such as smollm2-135m-instruct (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// subspace, prefix, lora, bitfit, head, prompt, full, probe or setfit (encoders); on a decoder also zero-shot or icl.
    #[arg(long)]
    method: Option<String>,
    /// K: examples per class (per-class protocol) or in total (--protocol total).
    #[arg(long)]
    shots: Option<usize>,
    /// per-class (LM-BFF) or total.
    #[arg(long)]
    protocol: Option<String>,
    /// Seed of the few-shot sample.
    #[arg(long)]
    split_seed: Option<u64>,
    /// Training seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of vertices n.
    #[arg(long)]
    vertices: Option<usize>,
    /// Sample from a partial train file (train.subset.tsv) when the full one is missing.
    #[arg(long)]
    allow_partial_train: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// A TOML config file (keys as in a run's config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. --set beta=0 --set granularity=example.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The run directory to write.
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Replace an existing run directory.
    #[arg(long)]
    overwrite: bool,
    /// Continue the interrupted run in this directory (its own config.toml; only --quiet,
    /// --device and --set threads=N / checkpoint_every=N may be given with it).
    #[arg(
        long,
        value_name = "RUN_DIR",
        conflicts_with_all = ["out", "overwrite", "task", "data_dir", "model", "method", "shots", "protocol",
            "split_seed", "seed", "vertices", "allow_partial_train", "config"]
    )]
    resume: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

impl Args {
    fn config(&self) -> Result<RunConfig> {
        let base = match &self.config {
            Some(p) => RunConfig::from_file(p)?,
            None => RunConfig::default(),
        };
        let mut c = base.apply_overrides(&self.sets)?;
        if let Some(t) = &self.task {
            c.task = t.clone();
        }
        if let Some(d) = &self.data_dir {
            c.data_dir = Some(d.clone());
        }
        if let Some(m) = &self.model {
            c.model = Some(m.clone());
        }
        if let Some(m) = &self.method {
            c.method = prefix_subspace::method::parse(m)?;
        }
        if let Some(p) = &self.protocol {
            c.protocol = match p.as_str() {
                "per-class" => Protocol::PerClass,
                "total" => Protocol::Total,
                other => bail!("unknown protocol \"{other}\" (expected per-class or total)"),
            };
        }
        c.shots = self.shots.unwrap_or(c.shots);
        c.split_seed = self.split_seed.unwrap_or(c.split_seed);
        c.seed = self.seed.unwrap_or(c.seed);
        c.vertices = self.vertices.unwrap_or(c.vertices);
        c.allow_partial_train |= self.allow_partial_train;
        if let Some(d) = &self.device {
            c.device = d.clone();
        }
        Ok(c)
    }
}

/// Runs `train`: opens the run directory (locked for the whole run, released by the OS however
/// the process ends; only ever emptied when it is a run directory of this tool's), trains, and
/// prints the dev selection and the test table.
pub fn run(args: Args) -> Result<()> {
    let mut w = match &args.resume {
        Some(dir) => Writing::resume(dir, &args.sets, args.device.as_deref())?,
        None => {
            let out = args.out.clone().expect("clap requires --out without --resume");
            Writing::start(args.config()?, &out, args.overwrite)?
        }
    };
    for n in &w.session.task.notes {
        eprintln!("note: {n}");
    }
    if let Some(p) = w.session.tokenizer.prompt() {
        eprintln!("note: prompt: {}", p.describe());
    }
    prefix_subspace::train::install_interrupt_handlers()?;
    let out = w.dir.clone();
    let results = if w.resuming {
        prefix_subspace::train::resume(&mut w.session, &out, args.quiet)
    } else {
        prefix_subspace::train::train(&mut w.session, &out, args.quiet)
    };
    let results = results.inspect_err(|e| w.discard_if_unsaved(e))?;
    let session = &w.session;
    let sel = &results.dev_selection;
    let main = session.task.main_metric.name();
    let how = match sel.samples {
        m if m > 1 => format!("{m} sampled models per example"),
        _ => "centroid".to_string(),
    };
    println!(
        "{} {} (n = {}), {} train / {} dev examples, split seed {}, seed {}: best dev {main} {:.4} ({how}) at step {}, trained in {:.1} s",
        results.task,
        results.method,
        results.vertices,
        results.train_examples,
        results.dev_examples,
        results.split_seed,
        results.seed,
        sel.score.get(main).copied().unwrap_or(f64::NAN),
        results.best_step,
        results.train_seconds
    );
    print_table(&results);
    println!("run directory: {}", out.display());
    Ok(())
}

fn print_table(results: &Results) {
    let metrics_of =
        |m: &Scores| -> String { m.iter().map(|(k, x)| format!("{k} {x:.4}")).collect::<Vec<_>>().join("  ") };
    for (key, t) in results.test_sets() {
        println!("{key}:");
        for (at, m) in t {
            println!("  {at:<10} {}", metrics_of(m));
        }
    }
}
