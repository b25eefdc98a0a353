//! `prefix-subspace speed`: training and inference throughput of this implementation, one
//! JSON line per figure, with the same figures and keys as `bench/peft_reference.py` (the
//! PyTorch + transformers + PEFT reference) so that `scripts/speed.sh` can put them side by side.
//!
//! Figures (`--only NAME`; without it every figure runs, in one process):
//!
//! | name | what |
//! |---|---|
//! | `fixed-prefix`, `fixed-subspace` | training steps at a fixed shape, batch 16 × 128 random tokens (full attention mask), prefix 16: plain prefix tuning and the prefix subspace (n = 3, the defaults) |
//! | `fixed-lora`, `fixed-full` | the same shape, LoRA (r 8, α 16, query/value) and full fine-tuning |
//! | `sst2-prefix`, `sst2-subspace` | a real `train` run on SST-2, 16 per class (32 examples), batch 8, dynamic padding |
//! | `infer-prefix`, `infer-subspace` | inference (centroid) on the SST-2 dev set: 872 sentences, batch 64 |
//!
//! Everything runs through the library's own training pieces, so the speed measured is the
//! speed of `train`: the fixed-shape steps build the model with [`Session::new_subspace`] and
//! take the step of the training loop (reseeded draws, [`Subspace::forward`] with dropout,
//! cross-entropy + cos² regulariser, [`AdamW`] with clipping, inputs padded by [`pad_batch`]);
//! the SST-2 figures *are* [`crate::train::train`] runs (with one evaluation at the end), timed
//! from the per-step times they log in `metrics.jsonl`; inference is [`outputs`].
//!
//! Peak memory is `VmHWM` of `/proc/self/status` when the figure is done: run one figure per
//! process (`--only`) for a clean peak; with several figures in one process each reports the
//! peak so far.
//!
//! FLOP/s (fixed-shape figures): [`step_flops`] counts the matrix multiplications of one
//! training step analytically, 2·m·n·k for every forward product and, in the backward pass,
//! 2·m·n·k for every operand of a product whose gradient is needed (frozen weights get no
//! weight-gradient product; a layer input that does not depend on a trained tensor gets no
//! input gradient). Elementwise work (LayerNorm, softmax, GELU, dropout, AdamW) is not counted.
//! The CPU's fp32 peak is estimated from `/proc/cpuinfo` ([`peak_gflops`]), and raised to the
//! rate of a measured fp32 matrix product when that is higher ([`Peak::at_least_gemm`]).
//!
//! Products alone (every figure): [`step_products`] lists the matrix products of the figure's
//! own steps or batches (the same shapes, the same dynamic padding), and
//! [`products_only_seconds`] runs just those, back to back, on the same threads.
//! `products_only_samples_per_second` is then the rate the figure would reach if LayerNorm,
//! softmax, GELU, dropout, the optimizer and everything else took no time: a ceiling for any
//! implementation that runs the same products with the same BLAS (PEFT's torch does), and
//! `products_share` is the fraction of the figure's time those products account for.
//! `gflops` is the figure's counted FLOPs over its measured time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use crate::config::{DevAt, RunConfig};
use crate::data::fewshot::{FewShotSplit, Protocol};
use crate::data::Label;
use crate::error::{Error, Result};
use crate::eval::{outputs, Encoded};
use crate::method::subspace::{At, Subspace};
use crate::method::Method;
pub use crate::method::{LoraTargets, Trainable};
use crate::metrics::Metric;
use crate::model::load::Weights;
use crate::model::{Config, Encoder, Pooling, TextTokenizer};
use crate::optim::AdamW;
use crate::session::Session;
use crate::task::TaskData;

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Prefix tuning (one vertex), fixed shape.
    FixedPrefix,
    /// Prefix subspace (3 vertices), fixed shape.
    FixedSubspace,
    /// LoRA, fixed shape.
    FixedLora,
    /// Full fine-tuning, fixed shape.
    FixedFull,
    /// Prefix tuning, SST-2 16 per class.
    Sst2Prefix,
    /// Prefix subspace, SST-2 16 per class.
    Sst2Subspace,
    /// LoRA, SST-2 16 per class (the comparison on models PEFT cannot prefix-tune: MPNet).
    Sst2Lora,
    /// Inference on SST-2 dev with a prefix.
    InferPrefix,
    /// Inference on SST-2 dev at the centroid of a subspace.
    InferSubspace,
    /// Inference on SST-2 dev with LoRA (unmerged, as PEFT runs it).
    InferLora,
}

impl Figure {
    /// Every figure, in output order.
    pub const ALL: [Figure; 10] = [
        Figure::FixedPrefix,
        Figure::FixedSubspace,
        Figure::FixedLora,
        Figure::FixedFull,
        Figure::Sst2Prefix,
        Figure::Sst2Subspace,
        Figure::Sst2Lora,
        Figure::InferPrefix,
        Figure::InferSubspace,
        Figure::InferLora,
    ];

    /// The name used by `--only` and in the JSON lines (`"what"`).
    pub fn name(self) -> &'static str {
        match self {
            Figure::FixedPrefix => "fixed-prefix",
            Figure::FixedSubspace => "fixed-subspace",
            Figure::FixedLora => "fixed-lora",
            Figure::FixedFull => "fixed-full",
            Figure::Sst2Prefix => "sst2-prefix",
            Figure::Sst2Subspace => "sst2-subspace",
            Figure::Sst2Lora => "sst2-lora",
            Figure::InferPrefix => "infer-prefix",
            Figure::InferSubspace => "infer-subspace",
            Figure::InferLora => "infer-lora",
        }
    }

    /// Parses a figure name.
    pub fn parse(s: &str) -> Result<Self> {
        crate::config::by_name(&Self::ALL, Self::name, s).map_err(|names| {
            Error::Input(format!("--only {s}: unknown figure (expected one of: {})", names.join(", ")))
        })
    }

    /// The method trained (or evaluated).
    pub fn method(self) -> &'static dyn Method {
        match self {
            Figure::FixedPrefix | Figure::Sst2Prefix | Figure::InferPrefix => &crate::method::prefix::PrefixTuning,
            Figure::FixedSubspace | Figure::Sst2Subspace | Figure::InferSubspace => {
                &crate::method::subspace::PrefixSubspace
            }
            Figure::FixedLora | Figure::Sst2Lora | Figure::InferLora => &crate::method::lora::Lora,
            Figure::FixedFull => &crate::method::full::FullFineTuning,
        }
    }

    /// True for the fixed-shape training figures (the only ones `--shape base` runs).
    pub fn fixed_shape(self) -> bool {
        matches!(self, Figure::FixedPrefix | Figure::FixedSubspace | Figure::FixedLora | Figure::FixedFull)
    }
}

/// The encoder the fixed-shape figures run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The model folder's own checkpoint.
    Model,
    /// A BERT-base-shaped encoder (12 layers × 768, 12 heads, FFN 3072, vocabulary 30522)
    /// with random weights, built in memory.
    Base,
}

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Model folder (default: the installed all-MiniLM-L6-v2); also gives the tokenizer.
    pub model: Option<PathBuf>,
    /// Intra-op threads.
    pub threads: usize,
    /// One figure, or all.
    pub only: Option<Figure>,
    /// Timed steps of the fixed-shape figures (the median is reported).
    pub steps: usize,
    /// Untimed steps before them.
    pub warmup: usize,
    /// Epochs of the SST-2 figures; the first is warm-up and not counted.
    pub epochs: usize,
    /// Timed passes over SST-2 dev (after one untimed pass).
    pub passes: usize,
    /// Batch size × tokens of the fixed shape.
    pub batch: i64,
    /// Tokens per example of the fixed shape.
    pub seq_len: i64,
    /// GLUE folder (default: $GLUE_DIR).
    pub data_dir: Option<PathBuf>,
    /// Encoder of the fixed-shape figures.
    pub shape: Shape,
    /// Use this fp32 peak (GFLOP/s, all threads together) instead of the estimate.
    pub peak_gflops: Option<f64>,
    /// Write the SST-2 few-shot split (example ids) here, for `peft_reference.py --split-json`.
    pub split_out: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`: where every figure runs.
    pub device: String,
    /// `key=value` config overrides for every figure (as `train --set`), e.g.
    /// `backbone_dropout=false`; the figure's method and the speed settings win.
    pub sets: Vec<String>,
    /// Also time the fixed-shape steps' phases (forward, backward, update; medians). On a GPU
    /// each phase then waits for its kernels, which can slow the step a little.
    pub phases: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            model: None,
            threads: 2,
            only: None,
            steps: 10,
            warmup: 2,
            epochs: 6,
            passes: 3,
            batch: 16,
            seq_len: 128,
            data_dir: None,
            shape: Shape::Model,
            peak_gflops: None,
            split_out: None,
            device: "cpu".into(),
            sets: Vec::new(),
            phases: false,
        }
    }
}

/// Runs the figures of `opts`, calling `emit` with each JSON line as soon as it is measured.
pub fn run(opts: &Options, mut emit: impl FnMut(&Value)) -> Result<()> {
    if opts.threads == 0 {
        return Err(Error::Input("--threads must be at least 1".into()));
    }
    if opts.steps == 0 || opts.passes == 0 || opts.batch < 1 || opts.seq_len < 2 {
        return Err(Error::Input("--steps, --passes, --batch must be at least 1 and --seq-len at least 2".into()));
    }
    if opts.epochs < 2 {
        return Err(Error::Input("--epochs must be at least 2 (the first one is warm-up)".into()));
    }
    tch::set_num_threads(opts.threads as i32);
    let device = crate::embed::parse_device(&opts.device)?;
    let figures: Vec<Figure> = match (opts.only, opts.shape) {
        (Some(f), Shape::Base) if !f.fixed_shape() => {
            return Err(Error::Input(format!(
                "--only {}: --shape base applies to the fixed-shape figures only (fixed-prefix, fixed-subspace, fixed-lora, fixed-full)",
                f.name()
            )))
        }
        (Some(f), _) => vec![f],
        (None, Shape::Base) => Figure::ALL.into_iter().filter(|f| f.fixed_shape()).collect(),
        (None, Shape::Model) => Figure::ALL.to_vec(),
    };
    // A decoder LLM: the training and inference figures of real runs, timed as they are; the
    // fixed-shape figures and the FLOP model describe an encoder.
    let decoder = opts.shape == Shape::Model && {
        let dir = model_dir(opts)?;
        crate::model::decoder::find_gguf(&dir)?.is_some() || crate::model::hf_decoder::is_hf_decoder(&dir)
    };
    let figures: Vec<Figure> = match (decoder, opts.only) {
        (true, Some(f)) if f.fixed_shape() => {
            return Err(Error::Input(format!(
                "--only {}: the fixed-shape figures are for encoders; with a decoder LLM run sst2-prefix, sst2-subspace, sst2-lora, infer-prefix, infer-subspace or infer-lora",
                f.name()
            )))
        }
        (true, None) => figures.into_iter().filter(|f| !f.fixed_shape()).collect(),
        _ => figures,
    };
    let cpu_fixed = device == Device::Cpu && figures.iter().any(|f| f.fixed_shape());
    let peak = match opts.peak_gflops {
        Some(g) => Peak { gflops: g, how: format!("--peak-gflops {g}"), gemm_gflops: None },
        None if cpu_fixed => peak_gflops(opts.threads).at_least_gemm(gemm_gflops()),
        None => peak_gflops(opts.threads),
    };
    if cpu_fixed {
        eprintln!("fp32 peak: {:.1} GFLOP/s ({})", peak.gflops, peak.how);
    }
    for f in figures {
        let v = if f.fixed_shape() {
            fixed(opts, f, device, &peak)?
        } else if matches!(f, Figure::Sst2Prefix | Figure::Sst2Subspace | Figure::Sst2Lora) {
            sst2(opts, f)?
        } else {
            infer(opts, f)?
        };
        emit(&v);
    }
    Ok(())
}

fn model_dir(opts: &Options) -> Result<PathBuf> {
    let dir = opts.model.as_deref().map(crate::paths::model).unwrap_or_else(crate::paths::default_model);
    if !dir.exists() {
        return Err(Error::Input(format!(
            "{}: model not found (run scripts/setup.sh for the default model, or pass --model DIR)",
            dir.display()
        )));
    }
    Ok(dir)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn head(opts: &Options, f: Figure) -> Value {
    let mut v = json!({
        "impl": "ours", "what": f.name(), "threads": opts.threads, "method": f.method().name(), "device": opts.device
    });
    if !opts.sets.is_empty() {
        v["set"] = json!(opts.sets);
    }
    v
}

/// A task with no data: the fixed-shape figures need a [`Session`] (to build the model the
/// way `train` does) but read no examples.
fn no_data_task() -> TaskData {
    TaskData {
        name: "fixed-shape".into(),
        label_names: vec!["0".into(), "1".into()],
        metrics: vec![Metric::Accuracy],
        main_metric: Metric::Accuracy,
        split: FewShotSplit { protocol: Protocol::PerClass, k: 0, seed: 0, train: vec![], dev: vec![] },
        score_range: None,
        tests: vec![],
        notes: vec![],
    }
}

/// A BERT-base-shaped encoder with random weights (N(0, 0.02²) matrices, zero biases, unit
/// LayerNorm scales), built in memory.
pub fn base_encoder(seed: i64, device: Device) -> Result<Encoder> {
    let cfg: Config = serde_json::from_value(json!({
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
        "type_vocab_size": 2, "pad_token_id": 0
    }))
    .expect("a valid config");
    tch::manual_seed(seed);
    let shapes = cfg.bert_parameter_shapes();
    let opts = (Kind::Float, Device::Cpu);
    let tensors = shapes
        .into_iter()
        .map(|(n, s)| {
            let t = if n.ends_with("LayerNorm.weight") {
                Tensor::ones(s.as_slice(), opts)
            } else if n.ends_with(".bias") {
                Tensor::zeros(s.as_slice(), opts)
            } else {
                Tensor::randn(s.as_slice(), opts) * 0.02
            };
            // Drawn on the CPU, so every device gets the same weights.
            (n, t.to_device(device))
        })
        .collect();
    let mut w = Weights::from_tensors(Path::new("random-bert-base"), tensors);
    Encoder::from_weights(cfg, &mut w, device)
}

/// The shape of a step of `session`'s model with `subspace` on examples of these `lengths`
/// (padded to the longest), its linear layers on the real tokens only when `packed`.
fn step_shape(session: &Session, subspace: &Subspace, lengths: &[i64], packed: bool) -> StepShape {
    let c = &session.encoder().expect("the speed figures run an encoder").config;
    let (b, t) = (lengths.len() as i64, lengths.iter().copied().max().unwrap_or(0));
    StepShape {
        batch: b,
        seq: t,
        tokens: if packed { lengths.iter().sum() } else { b * t },
        prefix: subspace.prefix_len(),
        layers: c.num_hidden_layers,
        hidden: c.hidden_size,
        ffn: c.intermediate_size,
        classes: subspace.classes,
        vertices: subspace.n as i64,
        heads: if session.cfg.head_simplex { subspace.n as i64 } else { 1 },
        attention_heads: c.num_attention_heads,
    }
}

/// Ends a figure's line: its peak RSS (read first, so that it is the figure's own), then its
/// `products` run by themselves ([`products_only_seconds`], median of `reps`) against the
/// `seconds` that `samples` examples took in the figure. `products_only_samples_per_second`
/// is the rate this machine would give if nothing but those products ran: a ceiling for any
/// implementation that runs them with the same BLAS.
fn finish_with_products(v: &mut Value, products: &[Product], device: Device, reps: usize, samples: f64, seconds: f64) {
    v["peak_rss_mb"] = json!(peak_rss_mb());
    let alone = products_only_seconds(products, device, reps);
    let flops: f64 = products.iter().map(Product::flops).sum();
    v["products_only_seconds"] = json!(alone);
    v["products_only_samples_per_second"] = json!(samples / alone);
    v["products_only_gflops"] = json!(flops / alone / 1e9);
    v["products_share"] = json!(alone / seconds);
}

fn fixed(opts: &Options, f: Figure, device: Device, peak: &Peak) -> Result<Value> {
    let dir = model_dir(opts)?;
    let encoder = match opts.shape {
        Shape::Model => Encoder::load(&dir, device)?,
        Shape::Base => base_encoder(0, device)?,
    };
    let pooling = match opts.shape {
        Shape::Model => Pooling::auto(&dir),
        Shape::Base => Pooling::Mean,
    };
    let mut cfg = RunConfig::default().apply_overrides(&opts.sets)?;
    (cfg.method, cfg.threads, cfg.model, cfg.device) =
        (f.method(), opts.threads, Some(dir.clone()), opts.device.clone());
    let cfg = cfg.resolve()?;
    let tokenizer = TextTokenizer::from_dir(&dir, cfg.max_len)?;
    let mut session = Session::from_parts(cfg, no_data_task(), Box::new(encoder), tokenizer, pooling);
    let (vs, subspace) = session.new_subspace()?;
    let mut opt = AdamW::new(&vs, session.cfg.lr, session.cfg.weight_decay);
    let (b, t) = (opts.batch, opts.seq_len);
    let vocab = session.encoder().expect("the speed figures run an encoder").config.vocab_size;
    let (lo, hi) = if vocab > 20000 { (1000, 20000) } else { (1, vocab) };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let items: Vec<(Vec<i64>, Vec<i64>)> =
        (0..b).map(|_| ((0..t).map(|_| rng.gen_range(lo..hi)).collect(), vec![0; t as usize])).collect();
    let labels: Vec<Label> = (0..b).map(|i| Label::Class((i % 2) as usize)).collect();
    let mut times = Vec::new();
    let mut phases = Vec::new();
    for step in 0..opts.warmup + opts.steps {
        let t0 = Instant::now();
        let input = crate::train::StepInput::Tokens(items.clone());
        let (lr, head_lr) = (session.cfg.lr, session.cfg.head_lr);
        let mut p = crate::train::Phases::default();
        let timed = opts.phases.then_some(&mut p);
        let (loss, _) =
            crate::train::train_step(&session, &subspace, &mut opt, input, &labels, step, lr, head_lr, timed);
        if !loss.is_finite() {
            return Err(Error::Input(format!("{}: loss is {loss} at step {}", f.name(), step + 1)));
        }
        if step >= opts.warmup {
            times.push(t0.elapsed().as_secs_f64());
            if opts.phases {
                phases.push(p);
            }
        }
    }
    let step_s = median(&times);
    let c = &session.encoder().expect("the speed figures run an encoder").config;
    let trainable = session.cfg.method.trainable(&session.cfg);
    let dims = step_shape(&session, &subspace, &vec![t; b as usize], false);
    let fl = step_flops(&dims, &trainable);
    let gflops = fl.total() / step_s / 1e9;
    let mut v = head(opts, f);
    v["samples_per_second"] = json!(b as f64 / step_s);
    v["step_seconds_median"] = json!(step_s);
    v["step_seconds_min"] = json!(times.iter().copied().fold(f64::INFINITY, f64::min));
    v["steps"] = json!(opts.steps);
    v["warmup_steps"] = json!(opts.warmup);
    v["shape"] = json!(match opts.shape {
        Shape::Model => format!("model {}x{}", c.num_hidden_layers, c.hidden_size),
        Shape::Base => "base 12x768 (random weights)".to_string(),
    });
    v["batch"] = json!(b);
    v["seq_len"] = json!(t);
    v["prefix_len"] = json!(dims.prefix);
    v["vertices"] = json!(dims.vertices);
    v["gflop_per_step"] = json!(fl.total() / 1e9);
    v["gflop_forward"] = json!(fl.forward / 1e9);
    v["gflop_backward"] = json!(fl.backward / 1e9);
    v["gflops"] = json!(gflops);
    finish_with_products(&mut v, &step_products(&dims, &trainable).all(), device, 5, b as f64, step_s);
    if opts.phases {
        let of = |get: fn(&crate::train::Phases) -> f64| median(&phases.iter().map(get).collect::<Vec<_>>());
        v["forward_seconds_median"] = json!(of(|p| p.forward));
        v["backward_seconds_median"] = json!(of(|p| p.backward));
        v["update_seconds_median"] = json!(of(|p| p.update));
    }
    if device == Device::Cpu {
        v["peak_gflops"] = json!(peak.gflops);
        v["peak_fraction"] = json!(gflops / peak.gflops);
        v["peak_estimate"] = json!(peak.how);
        v["gemm_gflops"] = json!(peak.gemm_gflops);
    }
    Ok(v)
}

fn sst2_config(opts: &Options, method: &'static dyn Method) -> Result<RunConfig> {
    let mut cfg = RunConfig::default().apply_overrides(&opts.sets)?;
    cfg.task = "sst2".into();
    cfg.data_dir = opts.data_dir.clone().or(cfg.data_dir);
    cfg.model = Some(model_dir(opts)?);
    (cfg.method, cfg.threads, cfg.device) = (method, opts.threads, opts.device.clone());
    cfg.resolve()
}

/// A fresh folder under the system temp dir (removed by the caller).
fn temp_dir(tag: &str) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("prefix-subspace-speed-{tag}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn sst2(opts: &Options, f: Figure) -> Result<Value> {
    let mut cfg = sst2_config(opts, f.method())?;
    cfg.epochs = opts.epochs;
    // One evaluation, after the last step, on as little as possible: the steps are what is timed.
    cfg.eval_every = 1_000_000;
    cfg.dev_at = DevAt::Centroid;
    cfg.dev_samples = 1;
    cfg.ensemble_samples = 1;
    cfg.test_limit = 16;
    let mut session = Session::open(cfg)?;
    if let Some(p) = &opts.split_out {
        let text = serde_json::to_string_pretty(&session.task.split.summary()).expect("split serialises");
        crate::atomic::write_atomic(p, text.as_bytes())?;
    }
    let lengths: Vec<usize> =
        Encoded::new(&session.tokenizer, &session.task.split.train)?.inputs.iter().map(|(ids, _)| ids.len()).collect();
    let dir = temp_dir(f.name())?;
    let result = crate::train::train(&mut session, &dir, true);
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).map_err(|e| Error::io(&dir, e));
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let (mut samples, mut seconds, mut times) = (0usize, 0.0f64, Vec::new());
    let batch = session.cfg.batch_size;
    let per_epoch = session.task.split.train.len().div_ceil(batch);
    for line in log?.lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| Error::Input(format!("metrics.jsonl: {e}")))?;
        if v["kind"] != "step" || v["epoch"].as_u64().unwrap_or(0) < 2 {
            continue;
        }
        // Every step's batch size: the last one of an epoch may be smaller.
        let step = v["step"].as_u64().unwrap_or(1) as usize;
        let within = (step - 1) % per_epoch;
        let n = if within + 1 == per_epoch { session.task.split.train.len() - within * batch } else { batch };
        let dt = n as f64 / v["samples_per_second"].as_f64().unwrap_or(f64::NAN);
        samples += n;
        seconds += dt;
        times.push(dt);
    }
    let mut v = head(opts, f);
    // The FLOP model (an encoder's): the timed steps' batches, as `train` forms them: its epoch
    // orders, cut into batches, each padded to its longest example.
    if let Some(packed) = session.backbone.as_encoder().map(|e| e.packs()) {
        let (trainable, mut products) = (session.cfg.method.trainable(&session.cfg), Vec::new());
        let (subspace, n) = (session.new_subspace()?.1, lengths.len());
        for epoch in 2..=opts.epochs {
            for chunk in crate::streams::epoch_order(session.cfg.seed, n, epoch).chunks(batch) {
                let ls: Vec<i64> = chunk.iter().map(|&i| lengths[i] as i64).collect();
                products.extend(step_products(&step_shape(&session, &subspace, &ls, packed), &trainable).all());
            }
        }
        let flops: f64 = products.iter().map(Product::flops).sum();
        v["gflops"] = json!(flops / seconds / 1e9);
        finish_with_products(&mut v, &products, session.backbone.device(), 1, samples as f64, seconds);
    } else {
        v["peak_rss_mb"] = json!(peak_rss_mb());
    }
    v["samples_per_second"] = json!(samples as f64 / seconds);
    v["step_seconds_median"] = json!(median(&times));
    v["steps"] = json!(times.len());
    v["epochs_timed"] = json!(opts.epochs - 1);
    v["train_examples"] = json!(lengths.len());
    v["batch"] = json!(batch);
    v["mean_tokens"] = json!(lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64);
    v["split_hash"] = json!(session.task.split.split_hash());
    Ok(v)
}

fn infer(opts: &Options, f: Figure) -> Result<Value> {
    let cfg = sst2_config(opts, f.method())?;
    let mut session = Session::open(cfg)?;
    let (_vs, subspace) = session.new_subspace()?;
    let (name, examples) = session.task.tests.first().ok_or_else(|| Error::Input("sst2 has no test set".into()))?;
    let data = Encoded::new(&session.tokenizer, examples)?;
    let (bs, pad) = (session.cfg.eval_batch_size, session.tokenizer.pad_id());
    let run = || outputs(&*session.backbone, &subspace, &data, &At::Centroid, 1, bs, pad);
    let _ = run();
    let mut times = Vec::new();
    for _ in 0..opts.passes {
        let t0 = Instant::now();
        let out = run();
        times.push(t0.elapsed().as_secs_f64());
        assert_eq!(out.size()[0], data.len() as i64);
    }
    let pass_s = median(&times);
    let batches = data.len().div_ceil(bs);
    let mut v = head(opts, f);
    if session.backbone.as_encoder().is_some() {
        // The FLOP model (an encoder's): the pass's batches, as `outputs` forms them:
        // length-sorted chunks padded to their longest.
        let mut lengths: Vec<i64> = data.inputs.iter().map(|(ids, _)| ids.len() as i64).collect();
        lengths.sort_unstable();
        let (trainable, mut products) = (session.cfg.method.trainable(&session.cfg), Vec::new());
        for chunk in lengths.chunks(bs) {
            // Inference always packs (no weight gradients).
            let dims = step_shape(&session, &subspace, chunk, true);
            products.extend(step_products(&dims, &trainable).forward);
        }
        let flops: f64 = products.iter().map(Product::flops).sum();
        v["gflop_per_pass"] = json!(flops / 1e9);
        v["gflops"] = json!(flops / pass_s / 1e9);
        finish_with_products(&mut v, &products, session.backbone.device(), opts.passes, data.len() as f64, pass_s);
    } else {
        v["peak_rss_mb"] = json!(peak_rss_mb());
    }
    v["samples_per_second"] = json!(data.len() as f64 / pass_s);
    v["step_seconds_median"] = json!(pass_s / batches as f64);
    v["step"] = json!(format!("one batch of {bs} (median pass time / {batches} batches)"));
    v["passes"] = json!(opts.passes);
    v["examples"] = json!(data.len());
    v["data"] = json!(format!("sst2 {name} (GLUE dev.tsv)"));
    v["batch"] = json!(bs);
    v["order"] = json!("sorted by length (eval::outputs)");
    v["mean_tokens"] = json!(data.inputs.iter().map(|(i, _)| i.len()).sum::<usize>() as f64 / data.len() as f64);
    Ok(v)
}

/// The keys every figure has, first and in this order (the rest follow, sorted).
pub const MAIN_KEYS: [&str; 6] =
    ["impl", "what", "samples_per_second", "step_seconds_median", "peak_rss_mb", "threads"];

/// One JSON line with [`MAIN_KEYS`] first.
pub fn to_line(v: &Value) -> String {
    let Some(map) = v.as_object() else { return v.to_string() };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| (MAIN_KEYS.iter().position(|m| m == k).unwrap_or(MAIN_KEYS.len()), k.to_string()));
    let fields: Vec<String> = keys.iter().map(|k| format!("{}:{}", Value::from(k.as_str()), map[k.as_str()])).collect();
    format!("{{{}}}", fields.join(","))
}

/// Peak resident memory of this process so far, MiB (`VmHWM` of `/proc/self/status`; 0 if
/// unreadable).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// An fp32 peak and how it was estimated.
#[derive(Debug, Clone)]
pub struct Peak {
    /// GFLOP/s over all the threads used.
    pub gflops: f64,
    /// One line: flags, FLOP per cycle, clock, cores.
    pub how: String,
    /// The rate of a large fp32 matrix product measured on the same threads, if measured.
    pub gemm_gflops: Option<f64>,
}

impl Peak {
    /// The peak raised to a measured matrix-product rate when that rate is higher: the clock
    /// the estimate reads is then below the one the cores really run at (boost), and a
    /// fraction of the estimate would flatter the figure.
    pub fn at_least_gemm(self, gemm: f64) -> Peak {
        if gemm > self.gflops {
            Peak {
                gflops: gemm,
                how: format!(
                    "a measured fp32 matrix product, {gemm:.1} GFLOP/s, above the estimate {:.1} GFLOP/s ({})",
                    self.gflops, self.how
                ),
                gemm_gflops: Some(gemm),
            }
        } else {
            Peak { gemm_gflops: Some(gemm), ..self }
        }
    }
}

/// The fp32 rate, in GFLOP/s, of a BERT-base-sized matrix product (2048 × 3072 by 3072 × 768,
/// the second feed-forward layer of a batch of 16 × 128 tokens) on the current threads: the
/// median of 9 after 3 untimed.
pub fn gemm_gflops() -> f64 {
    let _guard = tch::no_grad_guard();
    let opts = (tch::Kind::Float, Device::Cpu);
    let (m, k, n) = (2048i64, 3072i64, 768i64);
    let a = Tensor::ones([m, k], opts) * 0.5;
    let b = Tensor::ones([k, n], opts) * 0.25;
    let mut times = Vec::new();
    for i in 0..12 {
        let t0 = Instant::now();
        let c = a.matmul(&b);
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(c.size(), [m, n]);
        if i >= 3 {
            times.push(dt);
        }
    }
    2.0 * (m * k * n) as f64 / median(&times) / 1e9
}

/// Estimates the fp32 peak of `cores` cores from `/proc/cpuinfo` (and the cpufreq maximum or
/// `lscpu`'s max MHz when available): FLOP per cycle per core from the vector flags (avx512f:
/// 2 FMA units × 16 lanes × 2 = 64; avx2 + fma: 2 × 8 × 2 = 32; else 8) × clock × cores.
/// AMD family 25 (Zen 3/Zen 4) executes 512-bit FMAs on 256-bit units, so its avx512f peak is
/// that of avx2 (32).
pub fn peak_gflops(cores: usize) -> Peak {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines().find_map(|l| {
            let (key, val) = l.split_once(':')?;
            (key.trim() == k).then(|| val.trim().to_string())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let vendor = field("vendor_id").unwrap_or_default();
    let family: u32 = field("cpu family").and_then(|s| s.parse().ok()).unwrap_or(0);
    let zen_double_pumped = vendor == "AuthenticAMD" && family == 25;
    let (per_cycle, isa) = if has("avx512f") && !zen_double_pumped {
        (64.0, "avx512f: 2 FMA units x 16 fp32 lanes x 2 FLOP".to_string())
    } else if has("avx512f") {
        (32.0, "avx512f on AMD family 25 (Zen 3/4: 512-bit FMA split over 256-bit units): 2 x 8 lanes x 2 FLOP".into())
    } else if has("avx2") && has("fma") {
        (32.0, "avx2+fma: 2 FMA units x 8 fp32 lanes x 2 FLOP".to_string())
    } else {
        (8.0, "no avx2/fma: 8 FLOP/cycle assumed".to_string())
    };
    let cpufreq = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|khz| (khz / 1000.0, "cpufreq cpuinfo_max_freq"));
    let lscpu = || {
        let out = std::process::Command::new("lscpu").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "CPU max MHz")
                .then(|| v.trim().parse::<f64>().ok())
                .flatten()
                .map(|m| (m, "lscpu CPU max MHz"))
        })
    };
    let (mhz, clock_src) = cpufreq
        .or_else(lscpu)
        .or_else(|| field("cpu MHz").and_then(|s| s.parse().ok()).map(|m| (m, "/proc/cpuinfo cpu MHz")))
        .unwrap_or((2000.0, "no clock found: 2000 MHz assumed"));
    let gflops = per_cycle * mhz / 1000.0 * cores as f64;
    Peak {
        gflops,
        how: format!("{isa} = {per_cycle} FLOP/cycle/core x {mhz:.0} MHz ({clock_src}) x {cores} cores (threads used)"),
        gemm_gflops: None,
    }
}

/// The dimensions of one training step.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// B.
    pub batch: i64,
    /// T, tokens per example (the batch's longest example under dynamic padding).
    pub seq: i64,
    /// Token rows the linear layers run on: B·T, or the batch's real tokens when the encoder
    /// packs out the padding (see `model::Packing`; attention still runs on B × T).
    pub tokens: i64,
    /// p, prefix length (0 = no prefix).
    pub prefix: i64,
    /// L.
    pub layers: i64,
    /// H.
    pub hidden: i64,
    /// F, feed-forward inner size.
    pub ffn: i64,
    /// C, outputs of the head.
    pub classes: i64,
    /// n, vertices mixed into the prefix.
    pub vertices: i64,
    /// Heads mixed (n with a head simplex, else 1).
    pub heads: i64,
    /// Attention heads (they split H; the attention products are batched over them).
    pub attention_heads: i64,
}

/// Matmul FLOPs of one training step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flops {
    /// Forward.
    pub forward: f64,
    /// Backward.
    pub backward: f64,
}

impl Flops {
    /// Forward + backward.
    pub fn total(&self) -> f64 {
        self.forward + self.backward
    }
}

/// One matrix product of a step: `batch` independent (m × k) by (k × n) products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Independent products (B × heads for attention, else 1).
    pub batch: i64,
    /// Rows of the left operand.
    pub m: i64,
    /// Shared dimension.
    pub k: i64,
    /// Columns of the right operand.
    pub n: i64,
}

impl Product {
    fn new(batch: i64, m: i64, k: i64, n: i64) -> Self {
        Self { batch, m, k, n }
    }

    /// 2·batch·m·k·n.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

/// The matrix products of one training step, in the order they run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Products {
    /// Forward (all an inference pass does).
    pub forward: Vec<Product>,
    /// Backward (in forward order: the order does not change their cost).
    pub backward: Vec<Product>,
}

impl Products {
    /// Forward then backward, in one list.
    pub fn all(&self) -> Vec<Product> {
        [self.forward.as_slice(), self.backward.as_slice()].concat()
    }

    /// Their FLOPs.
    pub fn flops(&self) -> Flops {
        let sum = |v: &[Product]| v.iter().map(Product::flops).sum();
        Flops { forward: sum(&self.forward), backward: sum(&self.backward) }
    }
}

/// Lists the matrix products of one training step (forward and backward), following which
/// tensors need a gradient: [`step_flops`] counts them, and the `products_only_*` figures of
/// `speed` run them alone.
///
/// With N token rows (`StepShape::tokens`: B·T, or fewer when packed) and S = p + T keys, a linear layer in → out is an (N × in) by (in × out)
/// product forward; backward, its input gradient (when the input depends on a trained tensor)
/// is (N × out) by (out × in) and its weight gradient (when the weight is trained) (in × N) by
/// (N × out). Per layer, forward: the Q, K, V and output projections (H → H), the
/// feed-forward (H → F → H), attention scores QKᵀ and the weighted sum PV (B·heads products of
/// T × d by d × S and T × S by S × d, d = H / heads), LoRA's (N × in) by (in × r) and (N × r)
/// by (r × out) per adapted projection. Backward, for prefix tuning (frozen weights): every
/// layer after the first needs the input gradients of all six projections and all four
/// attention gradients (dQ, dK, dP, dV); the first layer's input (the frozen embeddings) needs
/// no gradient, so neither do its Q, K, V projections nor dQ; its dK and dV (which hold the
/// prefix's) and dP are needed. Full fine-tuning needs every gradient: backward = 2 × forward.
/// Also listed: the prefix mixing α·vertices ((B·L) × n by n × 2pH, forward and the vertices'
/// gradient) and the head (B × H by H × C per mixed head, forward and each of its two
/// gradients). Not listed: LayerNorm, softmax, GELU, dropout, embedding lookups, the
/// optimizer.
pub fn step_products(s: &StepShape, what: &Trainable) -> Products {
    let (n_tok, h, ff, p) = (s.tokens, s.hidden, s.ffn, s.prefix);
    let keys = s.seq + p;
    let full = matches!(what, Trainable::Full);
    let (r, targets) = match *what {
        Trainable::Lora { r, targets } => (r, targets),
        _ => (0, LoraTargets::default()),
    };
    let mut ps = Products::default();
    // A linear layer in → out on N tokens; returns whether its output needs a gradient.
    let linear = |ps: &mut Products, din: i64, dout: i64, lora: bool, input_grad: bool| -> bool {
        ps.forward.push(Product::new(1, n_tok, din, dout));
        if full {
            ps.backward.push(Product::new(1, din, n_tok, dout)); // weight gradient
        }
        if input_grad {
            ps.backward.push(Product::new(1, n_tok, dout, din)); // input gradient
        }
        if lora {
            ps.forward.push(Product::new(1, n_tok, din, r));
            ps.forward.push(Product::new(1, n_tok, r, dout));
            // dB, d(xA), dA always; dx through A when the input needs it.
            ps.backward.push(Product::new(1, r, n_tok, dout));
            ps.backward.push(Product::new(1, n_tok, dout, r));
            ps.backward.push(Product::new(1, din, n_tok, r));
            if input_grad {
                ps.backward.push(Product::new(1, n_tok, r, din));
            }
        }
        input_grad || full || lora
    };
    let prefix = p > 0;
    if prefix {
        ps.forward.push(Product::new(1, s.batch * s.layers, s.vertices, 2 * p * h));
        // The vertices' gradient (α needs none).
        ps.backward.push(Product::new(1, s.vertices, s.batch * s.layers, 2 * p * h));
    }
    let (bh, d) = (s.batch * s.attention_heads, h / s.attention_heads);
    let mut x_grad = full; // embeddings are trained only in full fine-tuning
    for _ in 0..s.layers {
        let q = linear(&mut ps, h, h, targets.query, x_grad);
        let k = linear(&mut ps, h, h, targets.key, x_grad) || prefix;
        let v = linear(&mut ps, h, h, targets.value, x_grad) || prefix;
        let scores = q || k;
        ps.forward.push(Product::new(bh, s.seq, d, keys)); // QKᵀ
        ps.forward.push(Product::new(bh, s.seq, keys, d)); // PV
        if q {
            ps.backward.push(Product::new(bh, s.seq, keys, d)); // dQ = dS K
        }
        if k {
            ps.backward.push(Product::new(bh, keys, s.seq, d)); // dK = dSᵀ Q
        }
        if scores {
            ps.backward.push(Product::new(bh, s.seq, d, keys)); // dP = dCtx Vᵀ
        }
        if v {
            ps.backward.push(Product::new(bh, keys, s.seq, d)); // dV = Pᵀ dCtx
        }
        let ctx = scores || v;
        let o = linear(&mut ps, h, h, targets.output, ctx);
        let a = o || x_grad;
        let up = linear(&mut ps, h, ff, false, a);
        let down = linear(&mut ps, ff, h, false, up);
        x_grad = down || a;
    }
    for _ in 0..s.heads {
        ps.forward.push(Product::new(1, s.batch, h, s.classes));
        ps.backward.push(Product::new(1, h, s.batch, s.classes)); // the head's weight gradient
        if x_grad {
            ps.backward.push(Product::new(1, s.batch, s.classes, h)); // the pooled features' gradient
        }
    }
    ps
}

/// Counts the matmul FLOPs of one training step (forward + backward): the sum over
/// [`step_products`].
pub fn step_flops(s: &StepShape, what: &Trainable) -> Flops {
    step_products(s, what).flops()
}

/// Wall seconds that `products` take when nothing else runs: each product once, in order, on
/// the current threads, its operands contiguous views of two random buffers (allocated
/// beforehand, as large as the largest operands), its output allocated as in a real step. The
/// median of `reps` runs after one untimed run. Backward products run untransposed: BLAS reads
/// a transposed operand at about the same speed.
pub fn products_only_seconds(products: &[Product], device: Device, reps: usize) -> f64 {
    let _guard = tch::no_grad_guard();
    let opts = (Kind::Float, device);
    let left = Tensor::randn([products.iter().map(|p| p.batch * p.m * p.k).max().unwrap_or(0)], opts);
    let right = Tensor::randn([products.iter().map(|p| p.batch * p.k * p.n).max().unwrap_or(0)], opts);
    let run = || {
        let t0 = Instant::now();
        for p in products {
            let a = left.narrow(0, 0, p.batch * p.m * p.k);
            let b = right.narrow(0, 0, p.batch * p.k * p.n);
            let c = if p.batch == 1 {
                a.view([p.m, p.k]).mm(&b.view([p.k, p.n]))
            } else {
                a.view([p.batch, p.m, p.k]).bmm(&b.view([p.batch, p.k, p.n]))
            };
            let _ = std::hint::black_box(c);
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        t0.elapsed().as_secs_f64()
    };
    run();
    median(&(0..reps.max(1)).map(|_| run()).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(p: i64) -> StepShape {
        StepShape {
            batch: 16,
            seq: 128,
            tokens: 16 * 128,
            prefix: p,
            layers: 6,
            hidden: 384,
            ffn: 1536,
            classes: 2,
            vertices: 1,
            heads: 1,
            attention_heads: 12,
        }
    }

    #[test]
    fn packing_shrinks_the_linear_layers_only() {
        let padded = step_products(&shape(16), &Trainable::Prefix);
        let packed = step_products(&StepShape { tokens: 16 * 64, ..shape(16) }, &Trainable::Prefix);
        assert_eq!(padded.forward.len(), packed.forward.len());
        for (a, b) in padded.all().iter().zip(packed.all()) {
            if a.batch == 1 && a.m == 16 * 128 {
                assert_eq!(b.m, 16 * 64, "{a:?}: a linear layer runs on the packed rows");
            } else if a.batch == 1 && a.k == 16 * 128 {
                assert_eq!(b.k, 16 * 64, "{a:?}: a weight gradient sums over the packed rows");
            } else {
                assert_eq!(*a, b, "attention, the head and the prefix mixing keep their shape");
            }
        }
    }

    #[test]
    fn full_fine_tuning_backward_is_twice_forward() {
        let s = StepShape { prefix: 0, ..shape(0) };
        let fl = step_flops(&s, &Trainable::Full);
        assert!((fl.backward - 2.0 * fl.forward).abs() < 1e-6 * fl.forward, "{fl:?}");
    }

    #[test]
    fn prefix_step_matches_the_hand_count() {
        let s = shape(16);
        let (n, h, f, keys, l) = (16.0 * 128.0, 384.0, 1536.0, 144.0, 6.0);
        let lin = 2.0 * n * (4.0 * h * h + 2.0 * h * f);
        let attn = 2.0 * n * keys * h;
        let mix = 2.0 * 16.0 * 6.0 * 2.0 * 16.0 * h;
        let head = 2.0 * 16.0 * h * 2.0;
        let fwd = l * (lin + 2.0 * attn) + mix + head;
        // Layer 0: no Q/K/V input gradients, no dQ; later layers: everything but weights.
        let layer0 = 2.0 * n * (h * h + 2.0 * h * f) + 3.0 * attn;
        let bwd = (l - 1.0) * (lin + 4.0 * attn) + layer0 + mix + 2.0 * head;
        let fl = step_flops(&s, &Trainable::Prefix);
        assert!((fl.forward - fwd).abs() < 1.0, "{} vs {fwd}", fl.forward);
        assert!((fl.backward - bwd).abs() < 1.0, "{} vs {bwd}", fl.backward);
    }

    #[test]
    fn prefix_step_lists_each_product_once() {
        let s = shape(16);
        let ps = step_products(&s, &Trainable::Prefix);
        // Mixing, 6 projections + QKᵀ + PV per layer, the head.
        assert_eq!(ps.forward.len(), 1 + 6 * 8 + 1);
        // The vertices' gradient; layer 0: the input gradients of output, up, down and dK, dP,
        // dV; later layers: all six input gradients and the four attention ones; the head's
        // weight and input gradients.
        assert_eq!(ps.backward.len(), 1 + 6 + 5 * 10 + 2);
        let attn: Vec<&Product> = ps.forward.iter().filter(|p| p.batch > 1).collect();
        assert_eq!(attn.len(), 12);
        assert!(attn.iter().all(|p| p.batch == 16 * 12 && [p.m, p.k, p.n].contains(&32)), "{attn:?}");
        // The H → H input gradients: Q, K, V and output of layers 1-5, and layer 0's output.
        let square = Product::new(1, 16 * 128, 384, 384);
        assert_eq!(ps.backward.iter().filter(|p| **p == square).count(), 5 * 4 + 1);
        assert_eq!(ps.flops(), step_flops(&s, &Trainable::Prefix));
    }

    #[test]
    fn lora_costs_more_than_prefix_and_less_than_full() {
        let s = StepShape { prefix: 0, ..shape(0) };
        let lora =
            step_flops(&s, &Trainable::Lora { r: 8, targets: LoraTargets::of(&["query".into(), "value".into()]) });
        let full = step_flops(&s, &Trainable::Full);
        assert!(lora.forward > full.forward && lora.backward < full.backward, "{lora:?} {full:?}");
    }

    #[test]
    fn a_measured_matrix_product_above_the_estimate_becomes_the_peak() {
        let est = || Peak { gflops: 100.0, how: "32 FLOP/cycle".into(), gemm_gflops: None };
        let p = est().at_least_gemm(120.0);
        assert_eq!((p.gflops, p.gemm_gflops), (120.0, Some(120.0)));
        assert!(p.how.contains("measured") && p.how.contains("32 FLOP/cycle"), "{}", p.how);
        let p = est().at_least_gemm(90.0);
        assert_eq!((p.gflops, p.gemm_gflops, p.how.as_str()), (100.0, Some(90.0), "32 FLOP/cycle"));
    }

    #[test]
    fn figure_names_round_trip() {
        for f in Figure::ALL {
            assert_eq!(Figure::parse(f.name()).unwrap(), f);
        }
        assert!(Figure::parse("fixed-prompt").is_err());
    }
}
