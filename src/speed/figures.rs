//! The measurement of each figure: fixed-shape training steps ([`fixed`]), real SST-2 runs
//! ([`sst2`]), inference ([`infer`]), and the products of a figure timed alone
//! ([`products_only_seconds`]).

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
use crate::metrics::Metric;
use crate::model::load::Weights;
use crate::model::{Config, Encoder, Pooling, TextTokenizer};
use crate::optim::AdamW;
use crate::session::Session;
use crate::task::TaskData;

use super::report::head;
use super::{
    median, model_dir, peak_rss_mb, step_flops, step_products, Figure, Options, Peak, Product, Shape, StepShape,
};

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

pub(super) fn fixed(opts: &Options, f: Figure, device: Device, peak: &Peak) -> Result<Value> {
    let dir = model_dir(opts)?;
    let encoder = match opts.shape {
        Shape::Model => Encoder::load(&dir, device)?,
        Shape::Base => base_encoder(0, device)?,
    };
    let pooling = match opts.shape {
        Shape::Model => Pooling::auto(&dir)?,
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

pub(super) fn sst2(opts: &Options, f: Figure) -> Result<Value> {
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
    let steps = crate::state::log_lines(&dir.join("metrics.jsonl"), "step");
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let (mut samples, mut seconds, mut times) = (0usize, 0.0f64, Vec::new());
    let batch = session.cfg.batch_size;
    let per_epoch = session.task.split.train.len().div_ceil(batch);
    for v in steps? {
        if v["epoch"].as_u64().unwrap_or(0) < 2 {
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

pub(super) fn infer(opts: &Options, f: Figure) -> Result<Value> {
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
