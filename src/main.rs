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
use prefix_subspace::rundir;
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
    /// status 1) and nothing is written.
    #[command(verbatim_doc_comment)]
    Predict {
        /// The run directory written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// One text per line, or JSON objects (lines starting with "{") with "text_a" (or
        /// "text"), "text_b" and an optional "id"; "-" = stdin. A pair task (one trained on
        /// text pairs, e.g. rte) takes two texts per line, separated by a tab or given as
        /// "text_a" and "text_b"; a single-text task takes exactly one (no tab, no "text_b").
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Where to write the JSONL predictions; "-" = stdout. A file is written atomically.
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// Fail on the first bad input line (`FILE:LINE: what was wrong`, exit status 1,
        /// nothing written) instead of giving it an error row.
        #[arg(long)]
        strict: bool,
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
    Ok(At::parse(s)?)
}

fn check_at(at: &At, n: usize, arg: &str) -> Result<()> {
    Ok(at.check(n, arg)?)
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
    let session = Session::open(cfg)?;
    prefix_subspace::train::check_resume(&session, dir)?;
    Ok(session)
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
        if v.get("data_hash").and_then(|h| h.as_str()).is_some_and(|h| h != session.data_hash()) {
            bail!(
                "{}: the texts or labels of the run's examples changed since training (data hash differs): the data files were edited",
                split_path.display()
            );
        }
    }
    let checkpoint = run.join("checkpoint.safetensors");
    if !checkpoint.is_file() {
        bail!(
            "{}: no checkpoint.safetensors: the run stopped before its first dev evaluation, so there is nothing to evaluate (train it again with --overwrite)",
            run.display()
        );
    }
    if !run.join("results.json").is_file() {
        let best = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "eval" && v["best"] == true)
            .filter_map(|v| v["step"].as_u64())
            .next_back();
        eprintln!(
            "note: {} is unfinished (no results.json: training was interrupted or is still running); using its best checkpoint so far{}",
            run.display(),
            best.map(|s| format!(", from step {s}")).unwrap_or_default()
        );
    }
    let (vs, s) = session.load_subspace(&checkpoint)?;
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
            prefix_subspace::model::check_vocab(&tokenizer, &encoder.config, &dir)?;
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
            // The run directory is locked for the whole run (released by the OS however the
            // process ends), and only ever emptied when it is a run directory of this tool's.
            let (mut session, out, _lock, created) = match &args.resume {
                Some(dir) => {
                    let session = open_resume(dir, &args)?;
                    let lock = rundir::lock(dir, rundir::Kind::Run)?;
                    (session, dir.clone(), lock, false)
                }
                None => {
                    let cfg = args.config()?;
                    let out = args.out.clone().expect("clap requires --out without --resume");
                    let refuse_existing = || -> Result<()> {
                        if out.exists() && !out.is_dir() {
                            bail!("{}: --out names a file, not a directory", out.display());
                        }
                        if rundir::has_content(&out) && !args.overwrite {
                            bail!(
                                "{}: run directory exists and is not empty (pass --overwrite to replace it, or --resume {} to continue it)",
                                out.display(),
                                out.display()
                            );
                        }
                        if args.overwrite {
                            rundir::check_replaceable(&out)?;
                        }
                        Ok(())
                    };
                    refuse_existing()?;
                    // Everything that can fail on bad input fails here, before anything is written.
                    let session = Session::open(cfg)?;
                    let created = !out.exists();
                    let lock = rundir::lock(&out, rundir::Kind::Run)?;
                    // Checked again under the lock: another process may have written meanwhile.
                    refuse_existing()?;
                    if args.overwrite {
                        rundir::clear(&out)?;
                    }
                    (session, out, lock, created)
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
                prefix_subspace::train::resume(&mut session, &out, args.quiet)
            } else {
                train(&mut session, &out, args.quiet)
            };
            let results = match results {
                Ok(r) => r,
                Err(e) => {
                    // A run that saved nothing to continue from or evaluate (it failed before
                    // its first checkpoint) leaves no directory behind that looks like a run.
                    let interrupted = matches!(e, prefix_subspace::Error::Interrupted { .. });
                    let nothing_saved = !out.join("checkpoint.safetensors").exists();
                    if !interrupted && args.resume.is_none() && nothing_saved && rundir::clear(&out).is_ok() && created
                    {
                        let _ = std::fs::remove_file(out.join(rundir::RUN_MARKER));
                        let _ = std::fs::remove_dir(&out);
                    }
                    return Err(e.into());
                }
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
                    let step = At::parse_sweep(step)?;
                    if subspace.n < 2 {
                        bail!("--at {at}: a sweep needs at least 2 vertices (this run has {})", subspace.n);
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
                // Read (and check) every run first: a merge that fails creates nothing.
                let rows = prefix_subspace::bench::collect(&merge)?;
                if rows.is_empty() {
                    bail!(
                        "bench --merge {}: no finished runs under cells/; nothing was written to {}",
                        merge.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" "),
                        out.display()
                    );
                }
                let _lock = prefix_subspace::rundir::lock(&out, prefix_subspace::rundir::Kind::Bench)?;
                let n = prefix_subspace::bench::write_rows(&merge, &rows, &out)?;
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
            // Held until the bench ends: a second bench on the same folder is refused.
            let _lock = prefix_subspace::rundir::lock(&out, prefix_subspace::rundir::Kind::Bench)?;
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
            if !(0.01..=0.5).contains(&step) {
                bail!("--step {step}: expected a value in [0.01, 0.5]");
            }
            let written = if let Some(run) = run {
                // The run is opened (and so checked) before anything is created in it.
                let (session, _vs, subspace) = open_run(&run, None)?;
                let out = run.join("plots");
                std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
                let mut w = vec![prefix_subspace::figures::training(&run, session.task.main_metric.name(), &out)?];
                w.extend(prefix_subspace::figures::simplex(&session, &subspace, &split, step, &out)?);
                w
            } else {
                if let Some(b) = bench.iter().find(|b| !b.join("cells").is_dir()) {
                    bail!(
                        "{}: not a bench folder (no cells/); give folders written by `prefix-subspace bench`",
                        b.display()
                    );
                }
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
                // Unreadable, not JSON, or without the fields of the table: one line naming it.
                rows.push(prefix_subspace::report::read_results(&r.join("results.json"))?);
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
        Command::Predict { run, input, output, at, precision, strict } => {
            let (session, _vs, subspace) = open_run(&run, precision.as_deref())?;
            let (point, m) = parse_at(&at)?;
            check_at(&point, subspace.n, &at)?;
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

/// 2 for bad input (a flag, a config value, a data or model file: what the user can fix),
/// 1 for failures of the system (I/O, libtorch).
fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<prefix_subspace::Error>() {
        Some(prefix_subspace::Error::Input(_) | prefix_subspace::Error::Data(_)) => 2,
        Some(_) => 1,
        None if e.chain().any(|c| c.is::<std::io::Error>()) => 1,
        None => 2,
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
        std::process::exit(exit_code(&e));
    }
}
