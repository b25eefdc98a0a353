//! The `prefix-subspace` command line: parses, calls the library, prints.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use prefix_subspace::config::{Method, Protocol, RunConfig};
use prefix_subspace::embed::{embed_texts, parse_device};
use prefix_subspace::eval::{outputs, score, Encoded};
use prefix_subspace::model::{Encoder, Pooling, TextTokenizer};
use prefix_subspace::paths;
use prefix_subspace::subspace::At;
use prefix_subspace::train::{evaluate_all, train, write_atomic, Session};

#[derive(Parser)]
#[command(
    name = "prefix-subspace",
    version,
    about = "Few-shot fine-tuning of pretrained transformers with a simplex of deep prefixes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
enum PoolArg {
    /// The pooling the model folder declares (sentence-transformers), else the first token.
    Auto,
    /// Mean over real tokens.
    Mean,
    /// The first token ([CLS] / <s>).
    Cls,
}

#[derive(Subcommand)]
enum Command {
    /// Print sentence embeddings, one JSON array per line.
    Embed {
        /// Hugging Face model folder (config.json, model.safetensors, tokenizer files).
        /// Default: the installed all-MiniLM-L6-v2.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Pooling of the final hidden states.
        #[arg(long, value_enum, default_value = "auto")]
        pool: PoolArg,
        /// Scale each embedding to unit length.
        #[arg(long)]
        normalize: bool,
        /// Read texts from a file, one per line ("-" for stdin). Without TEXT or --input, stdin is read.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Truncate inputs to this many tokens.
        #[arg(long, default_value_t = 256)]
        max_len: usize,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// fp32 or bf16: the number format of the dense-layer products (bf16: faster on CPUs
        /// with AVX512-BF16 or AMX; embeddings differ slightly from fp32's, see the README).
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// Texts to embed.
        texts: Vec<String>,
    },
    /// Train a prefix subspace (or plain prefix tuning) on a few-shot sample and test it.
    Train(TrainArgs),
    /// Evaluate a trained run at a point of the simplex, on its dev or test split.
    Eval {
        /// The run directory written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// centroid | vertex:I | ensemble:M | alpha:A,B,... | sweep:STEP (vertex 0 → 1) | all.
        #[arg(long, default_value = "centroid")]
        at: String,
        /// dev or test.
        #[arg(long, default_value = "test")]
        split: String,
        /// fp32 or bf16: the number format of the encoder's dense-layer products for this
        /// evaluation (default: the run's own `precision`). bf16 is about 1.5-2x faster on
        /// CPUs with AVX512-BF16 or AMX; scores can differ from fp32's by a few examples.
        #[arg(long)]
        precision: Option<String>,
    },
    /// Run a benchmark grid (resumable: finished cells are never recomputed), or merge the
    /// outputs of several shards.
    Bench {
        /// The bench description (TOML: tasks, shots, split_seeds, methods, [[variant]], [base]).
        #[arg(long, required_unless_present = "merge")]
        config: Option<PathBuf>,
        /// Output folder (cells/, results.csv, summary.md).
        #[arg(long)]
        out: PathBuf,
        /// Cells run at the same time (each single-threaded when > 1).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run only shard I of N (0-based): every N-th cell of the grid's stable order.
        #[arg(long)]
        shard: Option<String>,
        /// Run only the cells of these tasks (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        /// Run only the cells of these methods / variant names (comma-separated).
        #[arg(long, value_delimiter = ',')]
        variants: Vec<String>,
        /// Combine the finished cells of these bench folders into --out's tables.
        #[arg(long, num_args = 1.., conflicts_with = "config")]
        merge: Vec<PathBuf>,
        /// Run nothing: print where the (selected) cells stand under --out (finished,
        /// interrupted, stale, to run) and the cell-seconds spent.
        #[arg(long, conflicts_with = "merge")]
        status: bool,
    },
    /// Draw the figures of a run (training curves; accuracy along the simplex) or of a bench
    /// (method comparison with error bars), as PNG and SVG.
    Plot {
        /// A run directory: figures go to RUN/plots/.
        #[arg(long, required_unless_present = "bench")]
        run: Option<PathBuf>,
        /// Bench folders: figures go to the first one's plots/.
        #[arg(long, num_args = 1.., conflicts_with = "run")]
        bench: Vec<PathBuf>,
        /// For n ≥ 3, the split of the triangle heat map (dev or test).
        #[arg(long, default_value = "dev")]
        split: String,
        /// Step of α along the edge / over the triangle.
        #[arg(long, default_value_t = 0.05)]
        step: f64,
    },
    /// Export a trained prefix as a PEFT prefix-tuning adapter (+ the head, saved alongside).
    Export {
        /// The run directory written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// centroid | vertex:I | alpha:A,B,...
        #[arg(long, default_value = "centroid")]
        at: String,
        /// Output format (only peft).
        #[arg(long, default_value = "peft")]
        format: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a table of finished runs (test metrics at the centroid, the ensemble, the best
    /// vertex).
    Report {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
    /// Measure training and inference speed (samples/s, peak memory, FLOP/s), one JSON line
    /// per figure; `scripts/speed.sh` compares it with the PEFT reference.
    Speed(SpeedArgs),
    /// Predict labels for new texts with a trained run (JSONL out: label, probabilities).
    Predict {
        /// The run directory written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// One text per line (a tab separates the two texts of a pair), or JSONL objects with
        /// "text_a" (or "text") and "text_b"; "-" = stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Where to write the JSONL predictions; "-" = stdout.
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// centroid | vertex:I | ensemble:M | alpha:A,B,...
        #[arg(long, default_value = "centroid")]
        at: String,
        /// fp32 or bf16: the number format of the encoder's dense-layer products (default:
        /// the run's own `precision`); see `eval --help`.
        #[arg(long)]
        precision: Option<String>,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, polarity (demo data) or user.
    #[arg(long)]
    task: Option<String>,
    /// Folder holding the GLUE task folders (default: $GLUE_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hugging Face model folder (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// subspace, prefix, lora, bitfit, head, prompt or full.
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

#[derive(clap::Args)]
struct SpeedArgs {
    /// Hugging Face model folder (default: the installed all-MiniLM-L6-v2).
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
    /// Override a config key for every figure, as `train --set` (e.g. --set backbone_dropout=false).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Also time the phases of the fixed-shape steps (forward, backward, update: medians in
    /// the JSON line); on a GPU each phase then waits for its kernels.
    #[arg(long)]
    phases: bool,
}

impl TrainArgs {
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
            c.method = Method::parse(m)?;
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

fn parse_at(s: &str) -> Result<(At, usize)> {
    let bad = || anyhow::anyhow!("--at {s}: expected centroid, vertex:I, ensemble:M or alpha:A,B,...");
    Ok(match s.split_once(':') {
        None if s == "centroid" => (At::Centroid, 1),
        Some(("vertex", i)) => (At::Vertex(i.parse().map_err(|_| bad())?), 1),
        Some(("ensemble", m)) => (At::Sample, m.parse().map_err(|_| bad())?),
        Some(("alpha", a)) => {
            let v = a.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<Vec<_>, _>>().map_err(|_| bad())?;
            if v.iter().any(|x| *x < 0.0) || v.iter().sum::<f64>() <= 0.0 {
                bail!("--at {s}: alpha weights must be non-negative and not all zero");
            }
            (At::Alpha(v), 1)
        }
        _ => return Err(bad()),
    })
}

fn check_at(at: &At, n: usize, arg: &str) -> Result<()> {
    match at {
        At::Vertex(i) if *i >= n => bail!("--at {arg}: this run has {n} vertices (0..{})", n - 1),
        At::Alpha(a) if a.len() != n => bail!("--at {arg}: give {n} weights, one per vertex"),
        _ => Ok(()),
    }
}

/// Reopens a run directory: its config, data (the same split, checked by hash) and weights.
/// The session of an interrupted run, from its own config.toml (with `--device` and the
/// `--set` keys that do not change numbers applied).
fn open_resume(dir: &std::path::Path, args: &TrainArgs) -> Result<Session> {
    let cfg_path = dir.join("config.toml");
    let state = dir.join(prefix_subspace::train::RESUME_FILE);
    for s in &args.sets {
        let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k.trim());
        if !["threads", "checkpoint_every", "device"].contains(&key) {
            bail!("--set {s}: with --resume only threads, checkpoint_every and device may change (the rest would change the run's numbers)");
        }
    }
    if !cfg_path.is_file() {
        bail!("{}: not a run directory (no config.toml)", dir.display());
    }
    if !state.is_file() {
        if dir.join("results.json").is_file() {
            bail!("{}: this run already finished (results.json is there); nothing to resume", dir.display());
        }
        bail!(
            "{}: no saved training state; the run stopped before its first checkpoint: train it again with --overwrite",
            state.display()
        );
    }
    let mut cfg = RunConfig::from_file(&cfg_path)?.apply_overrides(&args.sets)?;
    if let Some(d) = &args.device {
        cfg.device = d.clone();
    }
    Ok(Session::open(cfg)?)
}

/// A trained run, with the dense-layer products in `precision` (`fp32` or `bf16`) instead of
/// the run's own when given (a note on stderr says so when it differs).
fn open_run(
    run: &std::path::Path,
    precision: Option<&str>,
) -> Result<(Session, tch::nn::VarStore, prefix_subspace::subspace::Subspace)> {
    let cfg_path = run.join("config.toml");
    if !cfg_path.is_file() {
        bail!("{}: not a run directory (no config.toml); train one with `prefix-subspace train`", run.display());
    }
    let mut cfg = RunConfig::from_file(&cfg_path)?;
    if let Some(p) = precision {
        let chosen = prefix_subspace::config::Precision::parse(p)?;
        if chosen != cfg.precision {
            eprintln!(
                "note: dense-layer products in {}; the run was trained in {}",
                chosen.name(),
                cfg.precision.name()
            );
        }
        cfg.precision = chosen;
    }
    let mut session = Session::open(cfg)?;
    let split_path = run.join("split.json");
    if let Ok(text) = std::fs::read_to_string(&split_path) {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", split_path.display()))?;
        let hash = session.task.split.split_hash();
        if v.get("hash").and_then(|h| h.as_str()) != Some(hash.as_str()) {
            bail!("{}: the data now gives a different few-shot split (hash {hash}): the data files changed since training", split_path.display());
        }
    }
    let (vs, s) = session.load_subspace(&run.join("checkpoint.safetensors"))?;
    Ok((session, vs, s))
}

fn print_table(results: &serde_json::Value) {
    let metrics_of = |v: &serde_json::Value| -> String {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k} {:.4}", x.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join("  ")
            })
            .unwrap_or_default()
    };
    for key in ["test", "test_matched", "test_mismatched"] {
        if let Some(t) = results.get(key).and_then(|t| t.as_object()) {
            println!("{key}:");
            for (at, m) in t {
                println!("  {at:<10} {}", metrics_of(m));
            }
        }
    }
}

fn model_dir(model: Option<PathBuf>) -> Result<PathBuf> {
    let dir = model.as_deref().map(paths::model).unwrap_or_else(paths::default_model);
    if !dir.is_dir() {
        bail!(
            "{}: model folder not found (run scripts/setup.sh to install the default model, or pass --model DIR)",
            dir.display()
        );
    }
    Ok(dir)
}

fn read_lines(input: Option<PathBuf>) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = match input.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?,
        )),
    };
    let name = input.map(|p| p.display().to_string()).unwrap_or_else(|| "<stdin>".into());
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: not valid UTF-8 text", i + 1))?;
        let line = line.trim_end_matches('\r');
        if !line.trim().is_empty() {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed { model, pool, normalize, input, max_len, batch_size, device, precision, texts } => {
            let dir = model_dir(model)?;
            let device = parse_device(&device)?;
            let precision = prefix_subspace::config::Precision::parse(&precision)?;
            let texts = if texts.is_empty() || input.is_some() { read_lines(input)? } else { texts };
            if texts.is_empty() {
                bail!("no text to embed (give TEXT arguments, --input FILE, or lines on stdin)");
            }
            let mut encoder = Encoder::load(&dir, device)?;
            encoder.set_product_kind(precision.product_kind());
            let tokenizer = TextTokenizer::from_dir(&dir, max_len)?;
            let pooling = match pool {
                PoolArg::Auto => Pooling::auto(&dir),
                PoolArg::Mean => Pooling::Mean,
                PoolArg::Cls => Pooling::Cls,
            };
            let emb = embed_texts(&encoder, &tokenizer, &texts, pooling, normalize, batch_size)?;
            let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&emb)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for r in rows {
                serde_json::to_writer(&mut out, &r)?;
                writeln!(out)?;
            }
            out.flush()?;
        }
        Command::Train(args) => {
            let (mut session, out) = match &args.resume {
                Some(dir) => (open_resume(dir, &args)?, dir.clone()),
                None => {
                    let cfg = args.config()?;
                    let out = args.out.clone().expect("clap requires --out without --resume");
                    let non_empty =
                        out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(true);
                    if non_empty && !args.overwrite {
                        bail!(
                            "{}: run directory exists and is not empty (pass --overwrite to replace it, or --resume {} to continue it)",
                            out.display(),
                            out.display()
                        );
                    }
                    // Everything that can fail on bad input fails here, before anything is written.
                    let session = Session::open(cfg)?;
                    if args.overwrite && out.exists() {
                        std::fs::remove_dir_all(&out).with_context(|| format!("{}: cannot remove", out.display()))?;
                    }
                    (session, out)
                }
            };
            for n in &session.task.notes {
                eprintln!("note: {n}");
            }
            // Ctrl-C: the loop saves its state after the current step and exits; a second
            // Ctrl-C exits at once.
            ctrlc::set_handler(|| {
                if prefix_subspace::train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    // Not `exit`: its static destructors would tear libtorch down under the
                    // training thread, which then panics with a backtrace.
                    #[cfg(unix)]
                    // SAFETY: _exit ends the process at once; nothing is left half-written (every
                    // file is written to a temporary name and renamed).
                    unsafe {
                        libc::_exit(130)
                    }
                    #[cfg(not(unix))]
                    std::process::exit(130);
                }
                eprintln!(
                    "\ninterrupt: saving the training state after this step or test batch (Ctrl-C again to quit now)"
                );
            })
            .context("cannot install the Ctrl-C handler")?;
            // SIGTERM (a job scheduler's or `kill`'s request, and a dying bench's): the same
            // save-and-exit, never escalated, however many arrive.
            #[cfg(unix)]
            {
                extern "C" fn on_term(_: libc::c_int) {
                    prefix_subspace::train::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
                if unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) } == libc::SIG_ERR {
                    anyhow::bail!("cannot install the SIGTERM handler");
                }
            }
            let results = if args.resume.is_some() {
                prefix_subspace::train::resume(&mut session, &out, args.quiet)?
            } else {
                train(&mut session, &out, args.quiet)?
            };
            let sel = &results["dev_selection"];
            let main = session.task.main_metric.name();
            let how = match sel["samples"].as_u64() {
                Some(m) if m > 1 => format!("{m} sampled models per example"),
                _ => "centroid".to_string(),
            };
            println!(
                "{} {} (n = {}), {} train / {} dev examples, split seed {}, seed {}: best dev {main} {:.4} ({how}) at step {}, trained in {:.1} s",
                results["task"].as_str().unwrap_or(""),
                results["method"].as_str().unwrap_or(""),
                results["vertices"],
                results["train_examples"],
                results["dev_examples"],
                results["split_seed"],
                results["seed"],
                sel[main].as_f64().unwrap_or(f64::NAN),
                results["best_step"],
                results["train_seconds"].as_f64().unwrap_or(0.0)
            );
            print_table(&results);
            println!("run directory: {}", out.display());
        }
        Command::Eval { run, at, split, precision } => {
            let (session, _vs, subspace) = open_run(&run, precision.as_deref())?;
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
            let (enc, pad, bs) = (&session.encoder, session.tokenizer.pad_id(), session.cfg.eval_batch_size);
            let metrics = &session.task.metrics;
            let mut report = serde_json::Map::new();
            for (name, d) in &data {
                let value = if at == "all" {
                    evaluate_all(&session, &subspace, d, &session.cfg)?
                } else if let Some(step) = at.strip_prefix("sweep:") {
                    let step: f64 =
                        step.parse().map_err(|_| anyhow::anyhow!("--at {at}: expected sweep:STEP, e.g. sweep:0.05"))?;
                    if subspace.n < 2 || !(step > 0.0 && step <= 1.0) {
                        bail!("--at {at}: a sweep needs at least 2 vertices and a step in (0, 1]");
                    }
                    let k = (1.0 / step).round() as usize;
                    let rows: Vec<serde_json::Value> = (0..=k)
                        .map(|i| {
                            let t = i as f64 / k as f64;
                            let mut a = vec![0.0; subspace.n];
                            a[0] = 1.0 - t;
                            a[1] = t;
                            let o = outputs(enc, &subspace, d, &At::Alpha(a), 1, bs, pad);
                            serde_json::json!({"t": t, "metrics": score(&o, &d.labels, metrics, false)})
                        })
                        .collect();
                    serde_json::Value::Array(rows)
                } else {
                    let (point, m) = parse_at(&at)?;
                    check_at(&point, subspace.n, &at)?;
                    // The same draws as the final evaluation of training.
                    prefix_subspace::train::seed_torch(session.cfg.seed, prefix_subspace::train::Stream::Test, 0);
                    let o = outputs(enc, &subspace, d, &point, m, bs, pad);
                    serde_json::json!(score(&o, &d.labels, metrics, false))
                };
                report.insert(name.clone(), value);
            }
            println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(report))?);
        }
        Command::Bench { config, out, jobs, shard, tasks, variants, merge, status } => {
            if !merge.is_empty() {
                std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
                let n = prefix_subspace::bench::write_tables(&merge, &out)?;
                println!("merged {n} runs into {}", out.join("summary.md").display());
                return Ok(());
            }
            let path = config.expect("clap requires --config without --merge");
            let bench = prefix_subspace::bench::BenchConfig::from_file(&path)?;
            let mut cells = bench.cells()?;
            if !tasks.is_empty() {
                cells.retain(|c| tasks.contains(&c.config.task));
            }
            if !variants.is_empty() {
                cells.retain(|c| variants.contains(&c.variant));
            }
            if let Some(s) = shard {
                cells = prefix_subspace::bench::shard(cells, prefix_subspace::bench::parse_shard(&s)?);
            }
            if status {
                print!("{}", prefix_subspace::bench::status_report(&cells, &out));
                return Ok(());
            }
            std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
            let exe = std::env::current_exe()?;
            let failed = prefix_subspace::bench::run_cells(&exe, cells, &out, jobs)?;
            print!("{}", std::fs::read_to_string(out.join("summary.md")).unwrap_or_default());
            if failed > 0 {
                bail!(
                    "{failed} cell(s) failed; their logs are in {}/cells/ (rerun the same command to retry them)",
                    out.display()
                );
            }
        }
        Command::Plot { run, bench, split, step } => {
            if !(step > 0.0 && step <= 0.5) {
                bail!("--step {step}: expected a value in (0, 0.5]");
            }
            let written = if let Some(run) = run {
                let out = run.join("plots");
                std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
                let (session, _vs, subspace) = open_run(&run, None)?;
                let mut w = vec![prefix_subspace::figures::training(&run, session.task.main_metric.name(), &out)?];
                w.extend(prefix_subspace::figures::simplex(&session, &subspace, &split, step, &out)?);
                w
            } else {
                let out = bench[0].join("plots");
                std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
                prefix_subspace::figures::bench_methods(&bench, &out)?
            };
            for w in written {
                println!("{}.png\n{}.svg", w.display(), w.display());
            }
        }
        Command::Export { run, at, format, out } => {
            if format != "peft" {
                bail!("--format {format}: only peft is supported");
            }
            let (session, _vs, subspace) = open_run(&run, None)?;
            let (point, m) = parse_at(&at)?;
            if m > 1 {
                bail!("--at {at}: export one point of the simplex (centroid, vertex:I or alpha:...), not an ensemble");
            }
            check_at(&point, subspace.n, &at)?;
            if let Some(w) = prefix_subspace::export::peft(&session, &subspace, &point, &out)? {
                eprintln!("warning: {w}");
            }
            println!("wrote {}", out.display());
        }
        Command::Report { runs } => {
            let mut rows = Vec::new();
            for r in &runs {
                let p = r.join("results.json");
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("{}: cannot read (is the run finished?)", p.display()))?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", p.display()))?;
                rows.push(v);
            }
            print!("{}", prefix_subspace::report::runs_table(&rows));
        }
        Command::Speed(a) => {
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
                device: a.device,
                sets: a.sets,
                phases: a.phases,
            };
            prefix_subspace::speed::run(&opts, |v| {
                println!("{}", prefix_subspace::speed::to_line(v));
                let _ = std::io::stdout().flush();
            })?;
        }
        Command::Predict { run, input, output, at, precision } => {
            let (session, _vs, subspace) = open_run(&run, precision.as_deref())?;
            let (point, m) = parse_at(&at)?;
            check_at(&point, subspace.n, &at)?;
            let lines = read_lines(Some(input.clone()))?;
            let mut examples = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let (a, b) = if line.trim_start().starts_with('{') {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .with_context(|| format!("{}:{}: invalid JSON", input.display(), i + 1))?;
                    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                    let a = get("text_a").or_else(|| get("text")).or_else(|| get("sentence")).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}:{}: expected a \"text_a\" (or \"text\") string field",
                            input.display(),
                            i + 1
                        )
                    })?;
                    (a, get("text_b"))
                } else {
                    match line.split_once('\t') {
                        Some((a, b)) => (a.to_string(), Some(b.to_string())),
                        None => (line.clone(), None),
                    }
                };
                examples.push(prefix_subspace::data::Example {
                    id: format!("{}:{}", input.display(), i + 1),
                    text_a: a,
                    text_b: b,
                    label: prefix_subspace::data::Label::Class(0),
                });
            }
            let d = Encoded::new(&session.tokenizer, &examples)?;
            let o = outputs(
                &session.encoder,
                &subspace,
                &d,
                &point,
                m,
                session.cfg.eval_batch_size,
                session.tokenizer.pad_id(),
            );
            let mean = o.mean_dim(1, false, tch::Kind::Float);
            let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&mean)?;
            let names = &session.task.label_names;
            let mut text = String::new();
            for r in rows {
                let v = if names.is_empty() {
                    serde_json::json!({"score": r[0]})
                } else {
                    let best = r.iter().enumerate().fold(0, |bi, (i, p)| if *p > r[bi] { i } else { bi });
                    serde_json::json!({"label": names[best], "probabilities": names.iter().cloned().zip(r.iter().map(|p| serde_json::json!(p))).collect::<serde_json::Map<String, serde_json::Value>>()})
                };
                text.push_str(&v.to_string());
                text.push('\n');
            }
            if output.as_os_str() == "-" {
                print!("{text}");
            } else {
                write_atomic(&output, text.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Keeps the C heap from handing memory back to the kernel (glibc only). libtorch allocates
/// its tensors with `malloc`; by default glibc trims the top of the heap whenever enough of
/// it is free and gives every large block (the feed-forward activations of a long evaluation
/// batch, a word-embedding gradient) a mapping of its own, unmapped when freed, so the next
/// such tensor lands on fresh pages the kernel must zero first. Here nothing is trimmed and
/// nothing is mapped apart: every block comes from the heap and is reused (measured: 4 % of
/// a BERT-base-shape training step, 16 % of the final evaluation of an RTE run; see
/// docs/performance.md). Values are unaffected; the heap keeps its peak size.
fn keep_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() {
    keep_the_heap();
    if let Err(e) = run(Cli::parse()) {
        if let Some(i @ prefix_subspace::Error::Interrupted { .. }) = e.downcast_ref::<prefix_subspace::Error>() {
            eprintln!("{i}");
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
