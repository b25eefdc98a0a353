//! The methods: what each one adds to the frozen backbone and trains, one file per method.
//!
//! A method is a [`Method`]: a unit struct in its own file, registered once in [`ALL`]. The
//! run configuration holds `&'static dyn Method` (`method = "prefix"` in a config names it);
//! [`Session`] asks it to prepare the backbone and the run's variables, and the training loop
//! (`crate::train`) asks it what to do around the common AdamW loop. Every method's trainable
//! vectors live in one container, the [`subspace::Subspace`]: the deep prefixes of the simplex
//! (the paper's method, `subspace.rs`: the file to read first), a soft prompt, the heads.
//! Plain prefix tuning is the subspace with one vertex.
//!
//! Adding a method: a new file with a unit struct implementing [`Method`], and one line in
//! [`ALL`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tch::nn;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::eval::Encoded;
use crate::model::Backbone;
use crate::optim::AdamW;
use crate::session::Session;
use crate::task::TaskData;
use subspace::{At, Subspace};

pub mod bitfit;
pub mod full;
pub mod head;
pub mod icl;
pub mod lora;
pub mod prefix;
pub mod probe;
pub mod prompt;
pub mod setfit;
pub mod subspace;
pub mod zero_shot;

/// Every method, in table order: the registry (`method = "<name>"` looks a name up here).
pub static ALL: [&dyn Method; 11] = [
    &subspace::PrefixSubspace,
    &prefix::PrefixTuning,
    &lora::Lora,
    &bitfit::Bitfit,
    &head::HeadOnly,
    &prompt::PromptTuning,
    &full::FullFineTuning,
    &zero_shot::ZeroShot,
    &icl::InContext,
    &probe::Probe,
    &setfit::Setfit,
];

/// What a method is: its name and defaults, what it adds to the backbone, and what it does
/// around the common training loop. The defaults fit a method that trains vectors of the
/// [`Subspace`] (a prefix, a prompt, heads) with the loop's AdamW steps and nothing else.
pub trait Method: Sync {
    /// The name on the command line, in configs and in tables.
    fn name(&self) -> &'static str;

    /// The default learning rate of the method's own parameters (docs/method.md).
    fn default_lr(&self) -> f64;

    /// True when the method trains deep prefixes (and so can have several vertices).
    fn uses_prefix(&self) -> bool {
        false
    }

    /// True when the method trains a soft prompt in front of the input embeddings.
    fn uses_prompt(&self) -> bool {
        false
    }

    /// How many vertices the run has: 1 for every method but the subspace.
    fn vertices(&self, _configured: usize) -> usize {
        1
    }

    /// False for the methods that take no gradient step: zero-shot and in-context learning
    /// (nothing is trained), and the probe (its head is fitted in one go, to convergence, where
    /// the others evaluate once on dev).
    fn trains(&self) -> bool {
        true
    }

    /// Whether the common loop takes the step budget's AdamW steps (SetFit takes its own).
    fn loop_steps(&self) -> bool {
        self.trains()
    }

    /// True for the methods that only a decoder with label words can run.
    fn needs_decoder(&self) -> bool {
        false
    }

    /// True for the methods whose point is a trained head (`head`, `probe`): they need a
    /// linear head, never a decoder's frozen label words.
    fn trains_only_the_head(&self) -> bool {
        false
    }

    /// True when the backbone is frozen and sees no prefix during training, so the loop
    /// computes the train features once (`head`).
    fn caches_features(&self) -> bool {
        false
    }

    /// True for the methods whose head is the probe's logistic regression: the run gets the
    /// probe's checkpoint variables (`probe/normalize`, `probe/c`) and normalised features.
    fn fits_probe(&self) -> bool {
        false
    }

    /// Contextual calibration (`calibrate = true`), when the run is built (after
    /// [`Method::setup`]); `icl.rs` holds it ([`icl::calibrate`]), for the methods that train
    /// nothing and score with label words. The default refuses.
    fn calibrate(&self, session: &Session, _subspace: &mut Subspace) -> Result<()> {
        Err(Error::Input(format!(
            "calibrate = true: only for zero-shot and icl on a decoder with label words (method = \"{}\")",
            session.cfg.method.name()
        )))
    }

    /// Refuses a task or a backbone the method cannot run, in one line (`model`: the
    /// checkpoint; `decoder`: whether it is a decoder LLM).
    fn check(&self, _task: &TaskData, _model: &Path, _decoder: bool) -> Result<()> {
        Ok(())
    }

    /// Adds what the method trains to the backbone (LoRA modules, trainable weights), as
    /// variables of `root`.
    fn prepare_backbone(&self, _cfg: &RunConfig, _backbone: &mut dyn Backbone, _root: &nn::Path) -> Result<()> {
        Ok(())
    }

    /// Completes a freshly built run (its checkpoint variables and fixed context).
    fn setup(&self, _session: &Session, _subspace: &mut Subspace, _root: &nn::Path) -> Result<()> {
        Ok(())
    }

    /// Completes a run whose variables were just read from `checkpoint`.
    fn loaded(&self, _session: &Session, _subspace: &mut Subspace, _checkpoint: &Path) -> Result<()> {
        Ok(())
    }

    /// Runs after the common loop's steps (or instead of them): the fits and dev choices that
    /// are not gradient steps.
    fn after_steps(&self, _ctx: &mut AfterSteps) -> Result<Fitted> {
        Ok(Fitted::default())
    }

    /// What a training step updates, for `speed`'s FLOP model: the prefix (and heads) by
    /// default; LoRA and full fine-tuning say otherwise.
    fn trainable(&self, _cfg: &RunConfig) -> Trainable {
        Trainable::Prefix
    }
}

/// What [`Method::after_steps`] works with.
pub struct AfterSteps<'a> {
    pub session: &'a Session,
    pub vs: &'a nn::VarStore,
    pub subspace: &'a mut Subspace,
    pub train: &'a Encoded,
    pub dev: &'a Encoded,
    /// Where the dev split is scored, and with how many sampled models.
    pub dev_at: &'a At,
    pub dev_m: usize,
    /// Appends a line to metrics.jsonl.
    pub emit: &'a mut dyn FnMut(Value) -> Result<()>,
    /// Prints a progress line.
    pub say: &'a dyn Fn(String),
    /// True when training was already over (a run resumed during its test evaluation): the
    /// saved state holds the fitted weights.
    pub resumed_trained: bool,
    /// The run's metrics.jsonl.
    pub metrics: &'a Path,
    /// The run's optimizer over `vs` (restored from the resume state when resuming), for a
    /// method that takes its own gradient steps here (SetFit).
    pub opt: &'a mut AdamW,
    /// Where such steps stand before an interruption (zeros on a fresh run).
    pub done: StepsDone,
    /// Called after each such step with the optimizer, the new `done` and the number of steps
    /// in all: saves the resume state when it is due or the run is interrupted, and then
    /// returns [`crate::error::Error::Interrupted`].
    pub checkpoint: &'a mut dyn FnMut(&AdamW, StepsDone, usize) -> Result<()>,
}

/// A method's own gradient steps so far: `(steps, examples seen, seconds spent in them)`.
pub type StepsDone = (usize, usize, f64);

/// What [`Method::after_steps`] did.
#[derive(Default)]
pub struct Fitted {
    /// The method's own gradient steps.
    pub steps: Option<StepsDone>,
    /// The dev scores of a fit that picked its own weights (the loop's checkpoint is then this
    /// fit, at step 0).
    pub dev: Option<BTreeMap<String, f64>>,
    /// results.json's `probe` object (the probe's head).
    pub probe: Option<crate::results::ProbeSummary>,
    /// results.json's `setfit` object (SetFit's contrastive phase).
    pub setfit: Option<crate::results::SetfitSummary>,
}

/// Which attention projections carry LoRA.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoraTargets {
    /// Query.
    pub query: bool,
    /// Key.
    pub key: bool,
    /// Value.
    pub value: bool,
    /// Attention output.
    pub output: bool,
}

impl LoraTargets {
    /// From config names.
    pub fn of(names: &[String]) -> Self {
        let has = |n: &str| names.iter().any(|x| x == n);
        Self { query: has("query"), key: has("key"), value: has("value"), output: has("output") }
    }
}

/// What a training step updates, in the terms of `speed`'s FLOP model
/// ([`crate::speed::step_products`]; the prefix, if `StepShape::prefix > 0`, is trained in
/// every case): the answer of [`Method::trainable`].
#[derive(Debug, Clone, Copy)]
pub enum Trainable {
    /// Only the prefix (and head): every encoder weight frozen.
    Prefix,
    /// LoRA of rank r on the targets (and the head).
    Lora {
        /// Rank.
        r: i64,
        /// Adapted projections.
        targets: LoraTargets,
    },
    /// Every weight, embeddings included.
    Full,
}

/// The method named `s`.
pub fn parse(s: &str) -> Result<&'static dyn Method> {
    crate::config::by_name(&ALL, |m| m.name(), s)
        .map_err(|names| Error::Input(format!("unknown method \"{s}\" (expected one of: {})", names.join(", "))))
}

/// Two handles name the same method when their names agree.
impl PartialEq for dyn Method {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for dyn Method {}

impl fmt::Debug for dyn Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method is written as its name.
impl Serialize for dyn Method {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for &'static dyn Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_and_full_fine_tuning_train_more_than_a_prefix() {
        let cfg = RunConfig::default();
        for m in ALL {
            match (m.name(), m.trainable(&cfg)) {
                ("lora", Trainable::Lora { r, targets }) => {
                    assert_eq!(r, cfg.lora_r as i64);
                    let named = [targets.query, targets.key, targets.value, targets.output];
                    let names = ["query", "key", "value", "output"];
                    for (on, n) in named.iter().zip(names) {
                        assert_eq!(*on, cfg.lora_targets.iter().any(|t| t == n), "{n}");
                    }
                }
                ("full", Trainable::Full) => {}
                (name, Trainable::Prefix) => assert!(name != "lora" && name != "full"),
                (name, t) => panic!("{name}: {t:?}"),
            }
        }
    }
}
