//! `icl` (decoders): in-context learning. The few-shot train examples, written with the
//! template and their label word, go in front of every input; their keys and values are
//! computed once and used as a fixed prefix (shifted positions). Nothing is trained.
//!
//! The number of demonstrations per class is `icl_shots`, or (`icl_shots = 0`, the default)
//! chosen on the dev split among 1, 2, 4, 8, 16 and 32 (the fewest among the best). The choice
//! is the checkpoint variable `icl_shots`, so `eval` and `predict` rebuild the same prompt.

use std::path::Path;

use tch::nn;

use super::subspace::Subspace;
use super::{AfterSteps, Fitted, Method};
use crate::config::RunConfig;
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
    fn calibrates_later(&self, cfg: &RunConfig) -> bool {
        cfg.icl_shots == 0
    }

    fn setup(&self, session: &Session, s: &mut Subspace, root: &nn::Path) -> Result<()> {
        // The number of demonstrations per class, a variable of the checkpoint: icl_shots, or
        // (icl_shots = 0) the one `train` chooses on the dev split.
        let mut k = root.zeros_no_train("icl_shots", &[1]);
        let _ = tch::no_grad(|| k.fill_(session.cfg.icl_shots as f64));
        s.set_icl_shots(k);
        if session.cfg.icl_shots > 0 {
            s.set_context(session.demonstrations(session.cfg.icl_shots)?);
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
            session.use_demonstrations(s, k)?;
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
        let most = task.split.train.len().div_ceil(task.label_names.len().max(1));
        let mut best_k: Option<(f64, usize)> = None;
        let mut tried = Vec::new();
        for k in SHOTS.into_iter().filter(|&k| k <= most.max(1)) {
            session.use_demonstrations(ctx.subspace, k)?;
            seed_torch(cfg.seed, Stream::Dev, 0);
            let out = outputs(enc, ctx.subspace, ctx.dev, ctx.dev_at, ctx.dev_m, cfg.eval_batch_size, pad);
            let v = score(&out, &ctx.dev.labels, &task.metrics, true)[main];
            tried.push(format!("{k}: {v:.4}"));
            if best_k.is_none_or(|(b, _)| v > b) {
                best_k = Some((v, k));
            }
        }
        let (_, k) = best_k.expect("at least one demonstration count");
        session.use_demonstrations(ctx.subspace, k)?;
        (ctx.say)(format!("icl: {k} demonstrations per class, chosen on dev ({main}: {})", tried.join(", ")));
        Ok(Fitted::default())
    }
}
