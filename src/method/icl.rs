//! `icl` (decoders): in-context learning. The few-shot train examples, written with the
//! template and their label word, go in front of every input; their keys and values are
//! computed once and used as a fixed prefix (shifted positions). Nothing is trained.
//!
//! The number of demonstrations per class is `icl_shots`, or (`icl_shots = 0`, the default)
//! chosen on the dev split among 1, 2, 4, 8, 16 and 32 (the fewest among the best). The choice
//! is the checkpoint variable `icl_shots`, so `eval` and `predict` rebuild the same prompt.

use std::path::Path;

use tch::{nn, Tensor};

use super::subspace::Subspace;
use super::{AfterSteps, Fitted, Method};
use crate::data::Example;
use crate::error::{Error, Result};
use crate::eval::{outputs, score};
use crate::session::Session;
use crate::streams::{seed_torch, Stream};

/// The demonstration counts per class tried on dev when `icl_shots = 0`.
pub const SHOTS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// In-context learning with the train examples as demonstrations.
pub struct InContext;

impl Method for InContext {
    fn name(&self) -> &'static str {
        "icl"
    }
    /// No gradient step is taken; the value is never used.
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn trains(&self) -> bool {
        false
    }
    fn needs_decoder(&self) -> bool {
        true
    }
    /// Calibrated behind the demonstrations: now when `icl_shots` fixes them, after the dev
    /// choice of their number otherwise ([`use_demonstrations`]).
    fn calibrate(&self, session: &Session, s: &mut Subspace) -> Result<()> {
        if session.cfg.icl_shots == 0 {
            return Ok(());
        }
        calibrate(session, s)
    }

    fn setup(&self, session: &Session, s: &mut Subspace, root: &nn::Path) -> Result<()> {
        // The number of demonstrations per class, a variable of the checkpoint: icl_shots, or
        // (icl_shots = 0) the one `train` chooses on the dev split.
        let mut k = root.zeros_no_train("icl_shots", &[1]);
        let _ = tch::no_grad(|| k.fill_(session.cfg.icl_shots as f64));
        s.set_icl_shots(k);
        if session.cfg.icl_shots > 0 {
            s.set_context(demonstrations(session, session.cfg.icl_shots)?);
        }
        Ok(())
    }

    fn loaded(&self, session: &Session, s: &mut Subspace, checkpoint: &Path) -> Result<()> {
        if session.cfg.icl_shots == 0 {
            let k = s.icl_shots();
            if k == 0 {
                return Err(Error::Input(format!(
                    "{}: this in-context learning run never chose its number of demonstrations (unfinished?)",
                    checkpoint.display()
                )));
            }
            use_demonstrations(session, s, k)?;
        }
        Ok(())
    }

    fn after_steps(&self, ctx: &mut AfterSteps) -> Result<Fitted> {
        let (session, cfg) = (ctx.session, &ctx.session.cfg);
        if cfg.icl_shots > 0 {
            return Ok(Fitted::default());
        }
        let task = &session.task;
        let main = task.main_metric.name();
        let (enc, pad) = (&*session.backbone, session.tokenizer.pad_id());
        let words = session.tokenizer.prompt().map_or(1, |p| p.words.len());
        let most = task.split.train.len().div_ceil(words.max(1));
        let mut best_k: Option<(f64, usize, Vec<i64>)> = None;
        let mut tried = Vec::new();
        for k in SHOTS.into_iter().filter(|&k| k <= most.max(1)) {
            let ids = demonstration_ids(session, k)?;
            if let Err(too_long) = fits_context(session, k, ids.len()) {
                // More demonstrations would not fit either: the larger counts are not tried.
                if k == SHOTS[0] {
                    return Err(too_long);
                }
                tried.push(format!("{k}: over the model's context"));
                break;
            }
            use_ids(session, ctx.subspace, k, &ids)?;
            seed_torch(cfg.seed, Stream::Dev, 0);
            let out = outputs(enc, ctx.subspace, ctx.dev, ctx.dev_at, ctx.dev_m, cfg.eval_batch_size, pad);
            let v = score(&out, &ctx.dev.labels, &task.metrics, true)[main];
            tried.push(format!("{k}: {v:.4}"));
            if best_k.as_ref().is_none_or(|(b, _, _)| v > *b) {
                best_k = Some((v, k, ids));
            }
        }
        let (_, k, ids) = best_k.expect("at least one demonstration count");
        use_ids(session, ctx.subspace, k, &ids)?;
        (ctx.say)(format!("icl: {k} demonstrations per class, chosen on dev ({main}: {})", tried.join(", ")));
        Ok(Fitted::default())
    }
}

/// In-context learning with `per_class` demonstrations per class (recorded in the
/// checkpoint variable `icl_shots`), calibrated behind them when `calibrate` is on.
pub fn use_demonstrations(session: &Session, s: &mut Subspace, per_class: usize) -> Result<()> {
    let ids = demonstration_ids(session, per_class)?;
    fits_context(session, per_class, ids.len())?;
    use_ids(session, s, per_class, &ids)
}

/// [`use_demonstrations`] with the demonstrations' token ids already built and checked.
fn use_ids(session: &Session, s: &mut Subspace, per_class: usize, ids: &[i64]) -> Result<()> {
    s.set_context(keys_values(session, ids));
    s.record_icl_shots(per_class);
    if session.cfg.calibrate {
        calibrate(session, s)?;
    }
    Ok(())
}

/// In-context learning: the keys and values `(L, 2, 1, D, W)` of the `per_class`
/// demonstrations per class ([`demonstration_ids`]), refused when they do not fit the
/// model's context ([`fits_context`]).
pub fn demonstrations(session: &Session, per_class: usize) -> Result<Tensor> {
    let ids = demonstration_ids(session, per_class)?;
    fits_context(session, per_class, ids.len())?;
    Ok(keys_values(session, &ids))
}

/// The keys and values `(L, 2, 1, D, W)` of one token sequence, computed without gradient.
fn keys_values(session: &Session, ids: &[i64]) -> Tensor {
    let dev = session.backbone.device();
    let n = ids.len() as i64;
    let batch = crate::model::Batch {
        input_ids: Tensor::from_slice(ids).view([1, n]).to(dev),
        attention_mask: Tensor::ones([1, n], (tch::Kind::Int64, dev)),
        token_type_ids: Tensor::zeros([1, n], (tch::Kind::Int64, dev)),
    };
    tch::no_grad(|| session.backbone.keys_values(&batch))
}

/// Whether `n` tokens of demonstrations (`per_class` per class) leave room for an input of
/// `max_len` tokens in the model's context; the error says the counts.
fn fits_context(session: &Session, per_class: usize, n: usize) -> Result<()> {
    let n = n as i64;
    if session.backbone.max_tokens(n) < session.cfg.max_len as i64 {
        return Err(Error::Input(format!(
            "icl: {per_class} demonstration(s) per class take {n} tokens, and with inputs of up to max_len = {} tokens that passes the model's context of {} tokens; set icl_shots lower (or max_len)",
            session.cfg.max_len,
            session.backbone.max_tokens(0)
        )));
    }
    Ok(())
}

/// The token ids of the demonstrations: the few-shot train examples (`per_class` of each
/// class, at most all) written with the template and their label word, one per paragraph, in
/// an order drawn with the run's seed. A regression task's "classes" are its two poles: an
/// example goes with the nearer one ([`crate::prompt::Prompt::word_index`]). Refused when no
/// class has `per_class` examples; whether they fit the model's context is [`fits_context`].
pub fn demonstration_ids(session: &Session, per_class: usize) -> Result<Vec<i64>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let prompt = session.tokenizer.prompt().ok_or_else(|| Error::Input("icl needs a decoder".into()))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(session.cfg.seed ^ 0x1c1);
    // A regression task's examples are written with the nearer pole's word, and chosen per pole.
    let range = session.task.score_range;
    let mut chosen: Vec<&Example> = Vec::new();
    let mut largest = 0;
    for c in 0..prompt.words.len() {
        let mut of_class: Vec<_> =
            session.task.split.train.iter().filter(|e| prompt.word_index(e.label, range) == Some(c)).collect();
        largest = largest.max(of_class.len());
        of_class.shuffle(&mut rng);
        let k = per_class.min(of_class.len());
        chosen.extend(of_class.into_iter().take(k));
    }
    if per_class > largest {
        return Err(Error::Input(format!(
            "icl_shots = {per_class}: the few-shot train set has at most {largest} examples of a class (shots = {}); set icl_shots to at most {largest}, or 0 to choose it on dev",
            session.cfg.shots
        )));
    }
    chosen.shuffle(&mut rng);
    let mut text = String::new();
    for e in chosen {
        let Some(c) = prompt.word_index(e.label, range) else { continue };
        text.push_str(&prompt.fill(&e.text_a, e.text_b.as_deref()));
        text.push_str(&prompt.words[c]);
        text.push_str("\n\n");
    }
    let mut ids = session.tokenizer.ids(&text)?;
    if let Some(bos) = session.tokenizer.bos() {
        ids.insert(0, bos);
    }
    Ok(ids)
}

/// Contextual calibration (Zhao et al. 2021): the label words' logits get −log p(word |
/// content-free input), the input `N/A` (both texts of a pair task) written into the
/// template, behind the demonstrations for in-context learning.
pub fn calibrate(session: &Session, s: &mut Subspace) -> Result<()> {
    if session.cfg.method.trains() || !s.label_words() {
        return Err(Error::Input(format!(
            "calibrate = true: only for zero-shot and icl on a decoder with label words (method = \"{}\")",
            session.cfg.method.name()
        )));
    }
    let pairs = session.task.split.train.iter().any(|e| e.text_b.is_some());
    let input = session.tokenizer.encode("N/A", pairs.then_some("N/A"))?;
    let dev = session.backbone.device();
    let batch = crate::model::tokenizer::pad_batch(&[input], session.tokenizer.pad_id(), dev);
    let logits = tch::no_grad(|| {
        s.forward(
            session.backbone.as_ref(),
            &batch,
            &s.fixed_alphas(&crate::method::subspace::At::Centroid, dev),
            false,
        )
    });
    s.set_word_bias(&logits.log_softmax(-1, tch::Kind::Float).squeeze_dim(0).neg());
    Ok(())
}
