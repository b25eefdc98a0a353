//! The `setfit` method (Tunstall et al. 2022, the `setfit` library's defaults), for encoders
//! and classification tasks:
//!
//! 1. **Contrastive fine-tuning of the body.** [`ITERATIONS`] rounds over the few-shot train
//!    set; in each, every example gets one positive pair (another example of its class) and
//!    one negative pair (an example of another class); the pairs are shuffled ([`pairs`], drawn
//!    from [`Stream::Pairs`]). One epoch over them, in batches of [`PAIR_BATCH`] pairs: the
//!    loss is sentence-transformers' `CosineSimilarityLoss`, the mean squared error between
//!    cos(u, v) of the two pooled embeddings and the pair's label (1 same class, 0 otherwise).
//!    Every encoder weight is trained (the `full` method's set), AdamW at `lr` (default 2e-5)
//!    with `weight_decay` and gradient clipping `clip`, linear warm-up over [`WARMUP`] of the
//!    steps then linear decay (`max_steps` > 0 keeps only the first `max_steps` batches,
//!    `epochs` is not used); the model's own dropout on (`backbone_dropout`), reseeded per
//!    step from [`Stream::Step`]. The pooling is the run's (the model's declared one: mean for
//!    all-MiniLM-L6-v2). A pair task's two texts are one input (the tokenizer's pair encoding,
//!    as every other method reads them).
//! 2. **The head.** The probe's logistic regression ([`crate::method::probe::fit_run`]) on the
//!    L2-normalised embeddings of the fine-tuned body, its C chosen on the dev split among
//!    [`crate::method::probe::CS`]. The library uses scikit-learn's default C = 1; choosing C on dev
//!    treats it as every other hyper-parameter here (and as `probe`, so the two compare).
//!
//! The checkpoint holds the fine-tuned encoder weights, the head and the probe's variables, so
//! `eval --run` and `predict --run` reproduce the run.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::results::SetfitSummary;
use tch::{Kind, Tensor};

use crate::config::RunConfig;
use crate::data::Label;
use crate::error::{Error, Result};
use crate::method::subspace::At;
use crate::model::tokenizer::pad_batch;
use crate::optim::AdamW;
use crate::streams::{seed_torch, stream_seed, Stream};

/// Rounds of pair generation (the library's `num_iterations`).
pub const ITERATIONS: usize = 20;
/// Pairs per contrastive step (the library's `batch_size`).
pub const PAIR_BATCH: usize = 16;
/// The share of the contrastive steps spent warming the learning rate up (`warmup_proportion`).
pub const WARMUP: f64 = 0.1;

/// A training pair: two example indices and whether they share a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// The first example (the one the pair was made for).
    pub a: usize,
    /// Its partner.
    pub b: usize,
    /// True for a positive pair (same class), false for a negative one.
    pub same: bool,
}

/// SetFit's pairs of examples with classes `labels`: for each of `iterations` rounds and each
/// example, a positive pair (another example of its class, uniformly; itself when it is its
/// class's only example) and a negative pair (an example of another class, uniformly; none
/// when every example shares one class), then all pairs shuffled. Drawn from `seed`'s
/// [`Stream::Pairs`].
pub fn pairs(labels: &[usize], iterations: usize, seed: u64) -> Vec<Pair> {
    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(seed, Stream::Pairs, 0));
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let members: Vec<Vec<usize>> =
        (0..classes).map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect()).collect();
    let mut out = Vec::with_capacity(2 * iterations * labels.len());
    for _ in 0..iterations {
        for (a, &c) in labels.iter().enumerate() {
            let same = &members[c];
            let b = if same.len() > 1 {
                // Uniform among the others of the class: skip a's own position.
                let k = rng.gen_range(0..same.len() - 1);
                let k = if same[k] >= a { k + 1 } else { k };
                same[k]
            } else {
                a
            };
            out.push(Pair { a, b, same: true });
            let others = labels.len() - same.len();
            if others > 0 {
                let k = rng.gen_range(0..others);
                let b = (0..labels.len()).filter(|&i| labels[i] != c).nth(k).expect("k < others");
                out.push(Pair { a, b, same: false });
            }
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.gen_range(0..=i);
        out.swap(i, j);
    }
    out
}

/// What the contrastive phase did.
pub struct Done {
    /// Contrastive steps taken.
    pub steps: usize,
    /// Pairs seen.
    pub seen: usize,
    /// Seconds spent in the steps.
    pub step_seconds: f64,
    /// The `setfit` object of results.json.
    pub summary: SetfitSummary,
}

/// The `setfit` method.
pub struct Setfit;

impl super::Method for Setfit {
    fn name(&self) -> &'static str {
        "setfit"
    }
    fn default_lr(&self) -> f64 {
        2e-5
    }
    /// Its gradient steps are its own (contrastive, [`fine_tune`]), not the common loop's.
    fn loop_steps(&self) -> bool {
        false
    }
    fn fits_probe(&self) -> bool {
        true
    }
    fn check(&self, task: &crate::task::TaskData, model: &std::path::Path, decoder: bool) -> Result<()> {
        if decoder {
            return Err(Error::Input(format!(
                "method = \"setfit\": fine-tunes a sentence encoder (e.g. all-MiniLM-L6-v2); {} is a decoder LLM",
                model.display()
            )));
        }
        if task.is_regression() {
            return Err(Error::Input(format!(
                "method = \"setfit\": classification only; task {} is a regression task",
                task.name
            )));
        }
        Ok(())
    }
    fn prepare_backbone(
        &self,
        _cfg: &crate::config::RunConfig,
        backbone: &mut dyn crate::model::Backbone,
        root: &tch::nn::Path,
    ) -> Result<()> {
        backbone.make_trainable(root, &|_| true);
        Ok(())
    }
    fn after_steps(&self, ctx: &mut super::AfterSteps) -> Result<super::Fitted> {
        let (steps, summary) = if ctx.resumed_trained {
            // Resumed during the test evaluation: the phase is over, its summary is in the log.
            (None, summary_from_log(ctx)?)
        } else {
            // Contrastive fine-tuning of the body (one line per step in metrics.jsonl); the
            // head is then the probe's, fitted on the fine-tuned embeddings.
            let done = fine_tune(ctx)?;
            (Some((done.steps, done.seen, done.step_seconds)), done.summary)
        };
        let mut fitted = super::probe::fit_head(ctx)?;
        fitted.steps = steps;
        fitted.setfit = Some(summary);
        Ok(fitted)
    }
}

/// Phase 1: fine-tunes the encoder weights in `ctx.vs` (trainable: every encoder weight) on
/// the pairs of `ctx.train` with the run's optimizer, logging each step through `ctx.emit`
/// (`{"kind": "step", "step", "epoch": 1, "loss", "regulariser": null, "lr",
/// "samples_per_second"}`, samples counted in pairs). A resumed run continues after
/// `ctx.done`'s steps (each step's dropout is seeded by its number, so the steps are those of
/// an uninterrupted run); after every step `ctx.checkpoint` saves the state when due and stops
/// an interrupted run.
pub fn fine_tune(ctx: &mut super::AfterSteps) -> Result<Done> {
    let (session, vs, subspace, train) = (ctx.session, ctx.vs, &*ctx.subspace, ctx.train);
    let cfg = &session.cfg;
    let enc = &*session.backbone;
    let device = enc.device();
    let pad = session.tokenizer.pad_id();
    let (pairs, total, warmup) = plan(&train.labels, cfg)?;
    let schedule = |step: usize| -> f64 {
        if step < warmup {
            (step + 1) as f64 / warmup as f64
        } else {
            (total - step) as f64 / (total - warmup).max(1) as f64
        }
    };
    let opt = &mut *ctx.opt;
    let alphas = subspace.fixed_alphas(&At::Centroid, device);
    let (start, _, mut step_seconds) = ctx.done;
    let mut last = f64::NAN;
    for (step, chunk) in pairs.chunks(PAIR_BATCH).enumerate().skip(start) {
        let t0 = Instant::now();
        seed_torch(cfg.seed, Stream::Step, step as u64);
        let items: Vec<(Vec<i64>, Vec<i64>)> = chunk
            .iter()
            .map(|p| train.inputs[p.a].clone())
            .chain(chunk.iter().map(|p| train.inputs[p.b].clone()))
            .collect();
        let b = chunk.len() as i64;
        let f = subspace.features(enc, &pad_batch(&items, pad, device), &alphas, true);
        let cos = Tensor::cosine_similarity(&f.narrow(0, 0, b), &f.narrow(0, b, b), 1, 1e-8);
        let y: Vec<f32> = chunk.iter().map(|p| f32::from(u8::from(p.same))).collect();
        let loss = cos.mse_loss(&Tensor::from_slice(&y).to(device), tch::Reduction::Mean);
        let lr = cfg.lr * schedule(step);
        opt.set_lr_group(0, lr);
        opt.zero_grad();
        loss.backward();
        let loss_v = loss.to_kind(Kind::Double).double_value(&[]);
        if !loss_v.is_finite() {
            return Err(Error::Input(format!(
                "setfit: the contrastive loss is {loss_v} at step {}; try a smaller lr",
                step + 1
            )));
        }
        if cfg.clip > 0.0 {
            opt.clip_grad_norm(cfg.clip);
        }
        opt.step();
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let dt = t0.elapsed().as_secs_f64();
        step_seconds += dt;
        last = loss_v;
        (ctx.emit)(json!({
            "kind": "step", "step": step + 1, "epoch": 1, "loss": loss_v, "regulariser": null, "lr": lr,
            "samples_per_second": chunk.len() as f64 / dt,
        }))?;
        let seen = ((step + 1) * PAIR_BATCH).min(pairs.len());
        (ctx.checkpoint)(opt, (step + 1, seen, step_seconds), total)?;
    }
    (ctx.say)(format!("setfit: {total} contrastive steps on {} pairs, last loss {last:.4}", pairs.len()));
    // The moments are never used again (the head is fitted in closed form): a fresh optimizer
    // keeps them out of the state saved for the test evaluation.
    *opt = AdamW::new(vs, cfg.lr, cfg.weight_decay);
    Ok(Done { steps: total, seen: pairs.len(), step_seconds, summary: summary(cfg, pairs.len(), total, warmup, last) })
}

/// The contrastive phase of a run on train labels `labels`: its pairs (the first `max_steps`
/// batches when a step budget is set: it cuts the epoch short), its steps and its warm-up steps.
fn plan(labels: &[Label], cfg: &RunConfig) -> Result<(Vec<Pair>, usize, usize)> {
    let labels = labels
        .iter()
        .map(|l| match l {
            Label::Class(c) => Ok(*c),
            Label::Score(_) => Err(Error::Input("method = \"setfit\": classification only".into())),
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut pairs = pairs(&labels, ITERATIONS, cfg.seed);
    if cfg.max_steps > 0 {
        pairs.truncate(cfg.max_steps * PAIR_BATCH);
    }
    let total = pairs.len().div_ceil(PAIR_BATCH);
    let warmup = (WARMUP * total as f64).ceil() as usize;
    Ok((pairs, total, warmup))
}

/// results.json's `setfit` object.
fn summary(cfg: &RunConfig, pairs: usize, steps: usize, warmup: usize, last_loss: f64) -> SetfitSummary {
    SetfitSummary {
        iterations: ITERATIONS as u64,
        pairs: pairs as u64,
        batch_pairs: PAIR_BATCH as u64,
        steps: steps as u64,
        warmup_steps: warmup as u64,
        lr: cfg.lr,
        loss: "CosineSimilarityLoss: MSE(cos(u, v), 1 same class / 0 otherwise)".into(),
        head: "probe: logistic regression on L2-normalised embeddings, C chosen on dev".into(),
        last_loss,
    }
}

/// The `setfit` object of a run resumed after its contrastive phase: the phase's plan again,
/// its last loss from the last step line of metrics.jsonl.
fn summary_from_log(ctx: &super::AfterSteps) -> Result<SetfitSummary> {
    let cfg = &ctx.session.cfg;
    let (pairs, total, warmup) = plan(&ctx.train.labels, cfg)?;
    let steps = crate::state::log_lines(ctx.metrics, "step")?;
    match steps.last().and_then(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?))) {
        Some((step, loss)) if step as usize == total && steps.len() == total => {
            Ok(summary(cfg, pairs.len(), total, warmup, loss))
        }
        _ => Err(Error::Input(format!(
            "{}: expected {total} contrastive step lines ending with step {total} and its loss, found {} step lines: the log was edited",
            ctx.metrics.display(),
            steps.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_seeded() {
        let labels = [0, 1, 0, 1, 2, 2];
        assert_eq!(pairs(&labels, 3, 7), pairs(&labels, 3, 7));
        assert_ne!(pairs(&labels, 3, 7), pairs(&labels, 3, 8));
    }
}
