//! The run configuration: every knob of a training run, with the defaults of docs/method.md. Read from a
//! TOML file, overridden by `--set key=value` and by command-line flags, and written back,
//! fully resolved, into the run directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::method::Method;
use crate::model::Positions;

mod keys;
mod ranges;

use keys::*;
pub use keys::{key_docs, keys_markdown, keys_text, toml_error, KeyDoc};
pub use ranges::{KeyRange, Range, LORA_TARGETS, MAX_SAMPLES, MAX_SEED, RANGES};

/// The number format of the backbone's dense-layer products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in fp32 (default).
    #[default]
    Fp32,
    /// The backbone's dense layers (attention projections, feed-forward) multiply bfloat16
    /// inputs and weights with fp32 accumulation and return fp32; attention scores, softmax,
    /// LayerNorm, the prefix, LoRA's update and the head stay fp32. About twice the matrix
    /// throughput on GPUs and on CPUs with AMX or Zen 4's AVX512-BF16 (slower on some others).
    Bf16,
}

impl Precision {
    const ALL: [Precision; 2] = [Precision::Fp32, Precision::Bf16];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses a precision name (`fp32`, `bf16`), as `--precision` takes it.
    pub fn parse(s: &str) -> Result<Self> {
        by_name(&Self::ALL, Self::name, s)
            .map_err(|names| Error::Input(format!("--precision {s}: expected {}", names.join(" or "))))
    }

    /// The kind the encoder's dense layers multiply in (`None`: fp32, as everything else).
    pub fn product_kind(self) -> Option<tch::Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(tch::Kind::BFloat16),
        }
    }
}

/// The value of `all` whose `name` is `s`; else every name, in order (for the caller's error).
pub fn by_name<T: Copy>(all: &[T], name: fn(T) -> &'static str, s: &str) -> std::result::Result<T, Vec<&'static str>> {
    all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| all.iter().map(|&v| name(v)).collect())
}

/// How many α draws a training batch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One α per example and per layer, and one for the head (default).
    ExampleLayer,
    /// One α per example, shared by all layers and the head.
    Example,
    /// One α per batch.
    Batch,
}

/// How vertices are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Resolved per backbone by [`RunConfig::resolve`]: [`Init::Text`] for a prefix method on a
    /// decoder (an untrained random-token prefix moves a decoder away from its zero-shot
    /// behaviour, docs/models.md), [`Init::Vocab`] otherwise. An unresolved config reads it as
    /// `Vocab`.
    Auto,
    /// The backbone's own keys and values of `prefix_len` random vocabulary tokens
    /// (different tokens for every vertex).
    Vocab,
    /// N(0, init_std²).
    Normal,
    /// The backbone's own keys and values of real text: vertex i starts from the first
    /// `prefix_len` tokens of a different few-shot train example (a decoder: written with the
    /// template and its label word, as an in-context demonstration), so that the untrained
    /// prefix reads as text the model has seen.
    Text,
}

/// Position ids of the real tokens after a prefix, as configured ([`Positions`] once resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionsChoice {
    /// Resolved per backbone by [`RunConfig::resolve`]: `shifted` for a prefix method on a
    /// decoder (the prefix then reads as text before the input, as a cache of demonstrations
    /// does), `unshifted` otherwise. An unresolved config reads it as `unshifted`.
    Auto,
    /// Positions 0..T-1.
    Unshifted,
    /// Positions p..p+T-1 (as Hugging Face models do after `past_key_values`, and PEFT).
    Shifted,
}

impl PositionsChoice {
    /// The positions a model runs with.
    pub fn get(self) -> Positions {
        match self {
            PositionsChoice::Shifted => Positions::Shifted,
            PositionsChoice::Auto | PositionsChoice::Unshifted => Positions::Unshifted,
        }
    }
}

/// Which vertices an imported PEFT adapter initialises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeftStart {
    /// Vertex 0 only.
    One,
    /// Every vertex, perturbed around the adapter.
    All,
}

/// Few-shot sampling protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// LM-BFF: `shots` per class for train and a disjoint `shots` per class for dev.
    PerClass,
    /// `shots` training examples in total (stratified) and a dev set of the same size.
    Total,
}

impl Protocol {
    /// The name used in configs and in results.json.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::PerClass => "per-class",
            Protocol::Total => "total",
        }
    }
}

/// Pooling choice, `auto` = what the model folder declares, else the first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolingChoice {
    /// The model folder's declared pooling, else the first token; the last token on a decoder.
    Auto,
    /// Mean over real tokens.
    Mean,
    /// First token.
    Cls,
    /// Last real token (what a decoder's next-token prediction reads).
    Last,
}

/// What reads the features: a decoder's label words or a trained linear head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// A decoder's label words: the LM's output rows of their first tokens, frozen (the class
    /// score is the LM's logit of the word).
    Words,
    /// A fresh linear head `(C, H)` + bias on the pooled features (an encoder's only head; on a
    /// decoder it reads the last real token's final hidden state).
    Linear,
}

impl HeadKind {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Words => "words",
            HeadKind::Linear => "linear",
        }
    }
}

/// How dev examples are scored for checkpoint selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DevAt {
    /// `dev_samples` models sampled from the simplex per example (the paper's augmented metric).
    Samples,
    /// The centroid only (ordinary selection; use with `dev_samples = 1`).
    Centroid,
}

/// Every setting of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    // --- data ---
    /// A GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), `polarity`, or `user`.
    pub task: String,
    /// Folder with the GLUE task folders (default: $GLUE_DIR).
    pub data_dir: Option<PathBuf>,
    /// Allow sampling from a partial train file (`train.subset.tsv`).
    pub allow_partial_train: bool,
    /// Few-shot protocol.
    pub protocol: Protocol,
    /// K: examples per class (per-class) or in total (total).
    pub shots: usize,
    /// Seed of the few-shot sample (which examples), distinct from `seed`.
    pub split_seed: u64,
    /// User task: the training pool file (.tsv, .csv or .jsonl).
    pub train_file: Option<PathBuf>,
    /// User task: the test file (default: a held-out fifth of `train_file`).
    pub test_file: Option<PathBuf>,
    /// User task: the first text column.
    pub text_a: String,
    /// User task: the second text column of pair tasks.
    pub text_b: Option<String>,
    /// User task: the label column.
    pub label_column: String,
    /// User task: labels are real numbers (regression).
    pub regression: bool,
    /// User task: its name in results.json, tables and bench cell ids (default: `user`).
    pub task_name: Option<String>,

    // --- model ---
    /// Hugging Face model folder, GGUF file, or installed model name (default: the installed
    /// all-MiniLM-L6-v2).
    pub model: Option<PathBuf>,
    /// Decoders: the prompt template (`{s}`, or `{s1}` and `{s2}`; default: the task's).
    pub template: Option<String>,
    /// Decoders: one label word per class, in class order (default: the task's).
    pub label_words: Option<Vec<String>>,
    /// In-context learning: demonstrations per class from the few-shot train set (0 = chosen
    /// on the dev split).
    pub icl_shots: usize,
    /// Zero-shot and in-context learning: contextual calibration (divide the label words'
    /// probabilities by those of the content-free input `N/A`).
    pub calibrate: bool,
    /// Truncation length in tokens.
    pub max_len: usize,
    /// Pooling for the head.
    pub pooling: PoolingChoice,
    /// Position ids of the real tokens (`unshifted` 0..T-1, or `shifted` p..p+T-1 as PEFT;
    /// `auto` per backbone, see [`PositionsChoice::Auto`]).
    pub positions: PositionsChoice,
    /// Apply the backbone's own dropout while training (as Hugging Face's train mode does).
    pub backbone_dropout: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `fp32` or `bf16` products in the encoder's dense layers (see [`Precision`]).
    pub precision: Precision,
    /// Intra-op threads (0 = libtorch's default).
    pub threads: usize,

    // --- method ---
    /// What is trained (one of [`crate::method::ALL`], by name in a config).
    pub method: &'static dyn Method,
    /// Number of vertices n of the simplex.
    pub vertices: usize,
    /// Prefix length p.
    pub prefix_len: usize,
    /// α sampling granularity.
    pub granularity: Granularity,
    /// Give every vertex its own head and mix heads with α (false: one shared head).
    pub head_simplex: bool,
    /// The head: a decoder's label words (frozen) or a linear head (unset: label words on a
    /// decoder that has them, except for `head` and `probe`; linear otherwise).
    pub head: Option<HeadKind>,
    /// Weight β of the cos² regulariser between a random pair of vertices.
    pub beta: f64,
    /// Dropout on the (mixed) prefix while training.
    pub prefix_dropout: f64,
    /// Dropout before the head while training.
    pub head_dropout: f64,
    /// MLP reparameterisation width r (0 = off): embedding → Linear(H→r) → tanh → Linear(r→2LH).
    pub reparam: usize,
    /// Vertex initialisation (`auto` per backbone, see [`Init::Auto`]).
    pub init: Init,
    /// Standard deviation for `init = "normal"`.
    pub init_std: f64,
    /// A PEFT prefix-tuning adapter folder to start from (see `init_peft_vertices`).
    pub init_peft: Option<PathBuf>,
    /// `one`: vertex 0 starts at the adapter, the others as `init` says; `all`: every vertex
    /// starts at the adapter plus Gaussian noise of `init_peft_noise` × the adapter's std.
    pub init_peft_vertices: PeftStart,
    /// Relative noise around the adapter for `init_peft_vertices = "all"` (must be > 0 with
    /// several vertices: identical vertices would get identical updates).
    pub init_peft_noise: f64,

    // --- training ---
    /// Training seed (initialisation, dropout, α draws, data order).
    pub seed: u64,
    /// Peak learning rate of the method's parameters (AdamW; 0 = the method's default:
    /// 5e-3 prefix/subspace/head/prompt, 5e-4 LoRA, 1e-3 BitFit, 2e-5 full fine-tuning).
    pub lr: f64,
    /// Peak learning rate of the classification head(s).
    pub head_lr: f64,
    /// LoRA rank.
    pub lora_r: usize,
    /// LoRA alpha (scale = alpha / r).
    pub lora_alpha: f64,
    /// LoRA targets among query, key, value, output.
    pub lora_targets: Vec<String>,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Fraction of the steps used for linear warm-up.
    pub warmup_ratio: f64,
    /// Gradient-norm clipping (0 = off).
    pub clip: f64,
    /// Training batch size.
    pub batch_size: usize,
    /// Number of epochs (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimizer steps in total (0 = use `epochs`).
    pub max_steps: usize,
    /// Evaluate on dev every this many steps (0 = once per epoch).
    pub eval_every: usize,
    /// Stop after this many evaluations without dev improvement (0 = never).
    pub patience: usize,
    /// Save the resumable training state every this many steps (0 = after each evaluation).
    pub checkpoint_every: usize,
    /// Version of the training numerics (random streams, optimizer): runs of another version
    /// cannot be reproduced by this build. Version 1 (run directories whose config.toml has
    /// no `numerics` key) seeded libtorch once per run and used libtorch's AdamW.
    pub numerics: u32,

    // --- selection and evaluation ---
    /// m: models sampled per dev example for the dev metric.
    pub dev_samples: usize,
    /// Dev scoring: sampled models or the centroid.
    pub dev_at: DevAt,
    /// Samples in the final test ensemble.
    pub ensemble_samples: usize,
    /// Also score every vertex on the test set (n more passes; `eval --at all` always does).
    /// Changes no other number.
    pub test_vertices: bool,
    /// Evaluation batch size (examples × samples per forward).
    pub eval_batch_size: usize,
    /// Evaluate only the first N examples of each test set (0 = all; for smoke tests: the
    /// results then say so).
    pub test_limit: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            task: "sst2".into(),
            data_dir: None,
            allow_partial_train: false,
            protocol: Protocol::PerClass,
            shots: 16,
            split_seed: 13,
            train_file: None,
            test_file: None,
            text_a: "text".into(),
            text_b: None,
            label_column: "label".into(),
            regression: false,
            task_name: None,
            model: None,
            template: None,
            label_words: None,
            icl_shots: 0,
            calibrate: false,
            max_len: 128,
            pooling: PoolingChoice::Auto,
            positions: PositionsChoice::Auto,
            backbone_dropout: true,
            device: "cpu".into(),
            precision: Precision::Fp32,
            threads: 0,
            method: &crate::method::subspace::PrefixSubspace,
            vertices: 3,
            prefix_len: 16,
            granularity: Granularity::ExampleLayer,
            head_simplex: true,
            head: None,
            beta: 1.0,
            prefix_dropout: 0.1,
            head_dropout: 0.1,
            reparam: 0,
            init: Init::Auto,
            init_std: 0.02,
            init_peft: None,
            init_peft_vertices: PeftStart::One,
            init_peft_noise: 0.1,
            seed: 1,
            lr: 0.0,
            head_lr: 5e-3,
            lora_r: 8,
            lora_alpha: 16.0,
            lora_targets: vec!["query".into(), "value".into()],
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            clip: 1.0,
            batch_size: 8,
            epochs: 30,
            max_steps: 0,
            eval_every: 0,
            patience: 10,
            checkpoint_every: 0,
            numerics: NUMERICS,
            dev_samples: 8,
            dev_at: DevAt::Samples,
            ensemble_samples: 8,
            test_vertices: true,
            eval_batch_size: 64,
            test_limit: 0,
        }
    }
}

impl RunConfig {
    /// Reads a TOML file (missing keys take their defaults; unknown keys are an error).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
    }

    /// Parses a config from TOML text (as [`RunConfig::from_file`] without the file).
    pub fn from_toml_text(text: &str) -> std::result::Result<Self, String> {
        Self::from_toml(text)
    }

    fn from_toml(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| with_key_hint(&plain_types(&toml_error(&e, text))))
    }

    /// Applies `key=value` overrides (the value is parsed as TOML, else taken as a string).
    /// A value of the wrong type or range is an error naming its `--set`, in the words of the
    /// key's type ("--set max_steps=-1: invalid value: integer `-1`, expected a non-negative
    /// integer"), not a line of the TOML the overrides were merged into.
    pub fn apply_overrides(&self, sets: &[String]) -> Result<Self> {
        let base = toml::Value::try_from(self).map_err(|e| Error::Input(e.to_string()))?;
        let mut table = base.clone();
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("--set {s}: expected key=value (e.g. --set beta=0)")))?;
            let (k, v) = (k.trim(), v.trim());
            let value = toml::from_str::<toml::Table>(&format!("x = {v}"))
                .ok()
                .and_then(|t| t.get("x").cloned())
                .unwrap_or_else(|| toml::Value::String(v.to_string()));
            let t = table.as_table_mut().expect("config is a table");
            if !t.contains_key(k) && !OPTIONAL_KEYS.contains(&k) {
                return Err(Error::Input(format!("--set {s}: {}", unknown_key(k))));
            }
            t.insert(k.to_string(), value);
        }
        // serde's message alone (no line of this merged TOML, which the user never saw).
        let parse = |t: &toml::Value| {
            toml::to_string(t)
                .map_err(|e| e.to_string())
                .and_then(|text| toml::from_str::<Self>(&text).map_err(|e| e.message().to_string()))
                .map_err(|m| plain_types(&one_line(&m)))
        };
        parse(&table).map_err(|e| {
            // Name the first override that fails on its own.
            let failing = sets.iter().find_map(|s| {
                let k = s.split_once('=').map_or(s.as_str(), |(k, _)| k).trim();
                let mut one = base.clone();
                one.as_table_mut().expect("config is a table").insert(k.to_string(), table[k].clone());
                parse(&one).err().map(|e| format!("--set {s}: {e}"))
            });
            Error::Input(failing.unwrap_or_else(|| format!("--set: {e}")))
        })
    }

    /// Checks value ranges and normalises method-implied settings (prefix ⇒ one vertex).
    pub fn resolve(mut self) -> Result<Self> {
        self.vertices = self.method.vertices(self.vertices);
        if self.init == Init::Auto || self.positions == PositionsChoice::Auto {
            // A decoder's prefix starts as text read after position p; anything else as before.
            let text = self.method.uses_prefix() && crate::model::is_decoder(&self.model_dir())?;
            if self.init == Init::Auto {
                self.init = if text { Init::Text } else { Init::Vocab };
            }
            if self.positions == PositionsChoice::Auto {
                self.positions = if text { PositionsChoice::Shifted } else { PositionsChoice::Unshifted };
            }
        }
        if self.lr == 0.0 {
            self.lr = self.method.default_lr();
        }
        let bad = |m: String| Err(Error::Input(m));
        if self.numerics != NUMERICS {
            return bad(format!(
                "numerics = {}: this build trains with numerics = {NUMERICS} only (set numerics = {NUMERICS}; runs of \
                 version {} are not reproducible with it)",
                self.numerics, self.numerics
            ));
        }
        if self.init_peft.is_some() {
            if !self.method.uses_prefix() || self.reparam > 0 {
                return bad(
                    "init_peft needs method subspace or prefix without reparam (it imports a deep prefix)".into()
                );
            }
            if self.init_peft_vertices == PeftStart::All && self.vertices > 1 && self.init_peft_noise <= 0.0 {
                return bad(
                    "init_peft_vertices = \"all\" needs init_peft_noise > 0 (identical vertices never separate)".into(),
                );
            }
        }
        self.check_ranges()?;
        if self.epochs == 0 && self.max_steps == 0 {
            return bad("epochs = 0 and max_steps = 0: set epochs or max_steps to at least 1".into());
        }
        if self.lora_targets.is_empty() {
            return bad(format!("lora_targets = []: expected one or more of {}", LORA_TARGETS.join(", ")));
        }
        for t in &self.lora_targets {
            if !LORA_TARGETS.contains(&t.as_str()) {
                return bad(format!(
                    "lora_targets: \"{t}\" is not a target (expected one or more of {})",
                    LORA_TARGETS.join(", ")
                ));
            }
        }
        if self.task.is_empty() {
            return bad("task = \"\": expected a task name (a GLUE task, polarity or user)".into());
        }
        if let Some(name) = &self.task_name {
            if !self.task.eq_ignore_ascii_case("user") {
                return bad(format!(
                    "task_name = {name:?}: only a user task takes a name (task = {:?} is named by itself)",
                    self.task
                ));
            }
            if !is_task_name(name) {
                return bad(format!("task_name = {name:?}: expected {TASK_NAME_RULE}"));
            }
        }
        Ok(self)
    }

    /// Checks every number-valued key against its declared range ([`RANGES`]), naming the key,
    /// the value and the range. Keys hold numbers in serde's JSON form, where NaN and ±∞ are
    /// `null`: those are refused as not finite.
    pub fn check_ranges(&self) -> Result<()> {
        let v = serde_json::to_value(self).map_err(|e| Error::Input(format!("config: {e}")))?;
        for spec in RANGES {
            let value = &v[spec.key];
            let ok = match spec.range {
                Range::Int(lo, hi) => value.as_u64().is_some_and(|x| (lo..=hi).contains(&x)),
                Range::Float { .. } => value.as_f64().is_some_and(|x| spec.range.contains(x)),
            };
            if !ok {
                let shown = if value.is_null() { "not a finite number".to_string() } else { value.to_string() };
                return Err(Error::Input(format!("{} = {shown}: expected {}", spec.key, spec.range.describe())));
            }
        }
        Ok(())
    }

    /// The settings that change a run's numbers: everything but the thread count, the device,
    /// how often the resumable state is saved, and the opt-in to partial train files (which
    /// only decides whether a run can start).
    pub fn comparable(&self) -> RunConfig {
        RunConfig {
            threads: 0,
            device: "cpu".into(),
            allow_partial_train: false,
            checkpoint_every: 0,
            test_vertices: true,
            ..self.clone()
        }
    }

    /// Sets `template` and `label_words` to a run's recorded prompt where the config leaves
    /// them to the task's default, so that the run is read back with the prompt it was
    /// trained with even where this build's default differs.
    pub fn keep_prompt(&mut self, p: &crate::prompt::Prompt) {
        self.template.get_or_insert_with(|| p.template.clone());
        if !p.words.is_empty() {
            self.label_words.get_or_insert_with(|| p.words.clone());
        }
    }

    /// The keys whose values differ between `self` and `other` (as their TOML forms).
    pub fn differing_keys(&self, other: &RunConfig) -> Vec<String> {
        let table =
            |c: &RunConfig| toml::Value::try_from(c).ok().and_then(|v| v.as_table().cloned()).unwrap_or_default();
        let (a, b) = (table(self), table(other));
        let mut keys: Vec<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The task's name in results.json, tables and bench cell ids: `task_name` for a user task
    /// that has one, else `task`.
    pub fn task_label(&self) -> &str {
        match &self.task_name {
            Some(name) if self.task.eq_ignore_ascii_case("user") => name,
            _ => &self.task,
        }
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// The GLUE data folder: `data_dir`, else `$GLUE_DIR`.
    pub fn glue_dir(&self) -> Result<PathBuf> {
        self.data_dir
            .clone()
            .or_else(|| std::env::var_os("GLUE_DIR").map(PathBuf::from))
            .ok_or_else(|| {
                Error::Input(format!(
                    "task {}: no GLUE data folder: pass --data-dir DIR (the folder holding SST-2/, RTE/, ...) or set GLUE_DIR",
                    self.task
                ))
            })
    }

    /// The model folder: `model` (a path, or the name of a model installed in the cache), else
    /// the installed default model.
    pub fn model_dir(&self) -> PathBuf {
        self.model.as_deref().map(crate::paths::model).unwrap_or_else(crate::paths::default_model)
    }
}

/// The training numerics this build implements: every step, evaluation and data order
/// reseeded from (seed, step), and the crate's own AdamW (see `optim`), so that a run can be
/// resumed bit-identically.
pub const NUMERICS: u32 = 2;
/// Keys that are absent from a serialised config when unset (`None`).
const OPTIONAL_KEYS: [&str; 10] = [
    "data_dir",
    "train_file",
    "test_file",
    "text_b",
    "task_name",
    "model",
    "template",
    "label_words",
    "head",
    "init_peft",
];

/// What `task_name` may be, in words (for messages and the key list).
const TASK_NAME_RULE: &str = "letters, digits, '.' and '_' (at most 100 characters, not starting with '.'), and not the name of a GLUE task or polarity";

/// Whether `name` may name a user task: one plain path component (it names bench cell folders,
/// as [`crate::paths::is_safe_name`] checks), without '-' (bench cell ids
/// `<task>-<K>-split<S>-<variant>` are split at '-'), and not a built-in task's name (whose
/// rows it would join in the tables).
fn is_task_name(name: &str) -> bool {
    crate::paths::is_safe_name(name)
        && !name.contains('-')
        && crate::data::glue::task(name).is_err()
        && !name.eq_ignore_ascii_case("polarity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = RunConfig::default();
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn overrides_parse_values_and_reject_unknown_keys() {
        let c = RunConfig::default()
            .apply_overrides(&["beta=0".into(), "granularity=example".into(), "model=/tmp/m".into(), "lr=1e-2".into()])
            .unwrap();
        assert_eq!(c.beta, 0.0);
        assert_eq!(c.granularity, Granularity::Example);
        assert_eq!(RunConfig::default().precision, Precision::Fp32);
        let bf16 = RunConfig::default().apply_overrides(&["precision=bf16".into()]).unwrap();
        assert_eq!(bf16.precision, Precision::Bf16);
        assert!(RunConfig::default().apply_overrides(&["precision=fp8".into()]).is_err());
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
            // The command-line name is the config file's.
            let cfg = RunConfig::default().apply_overrides(&[format!("precision={}", p.name())]).unwrap();
            assert_eq!(cfg.precision, p);
        }
        assert!(Precision::parse("fp8").unwrap_err().to_string().contains("expected fp32 or bf16"));
        assert_eq!(c.model, Some(PathBuf::from("/tmp/m")));
        assert_eq!(c.lr, 1e-2);
        let e = RunConfig::default().apply_overrides(&["betta=1".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown key \"betta\""), "{e}");
        let e = RunConfig::default().apply_overrides(&["granularity=sideways".into()]).unwrap_err().to_string();
        assert!(e.contains("granularity") || e.contains("sideways"), "{e}");
        // A value of the wrong type names its --set, not a line of the merged TOML.
        let sets = ["beta=0".to_string(), "max_steps=-1".into(), "lr=abc".into()];
        let e = RunConfig::default().apply_overrides(&sets).unwrap_err().to_string();
        assert_eq!(e, "--set max_steps=-1: invalid value: integer `-1`, expected a non-negative integer");
        let e = RunConfig::default().apply_overrides(&sets[2..]).unwrap_err().to_string();
        assert_eq!(e, "--set lr=abc: invalid type: string \"abc\", expected a number");
    }

    #[test]
    fn protocol_names_are_the_config_names() {
        for p in PROTOCOLS {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        assert_eq!(Protocol::PerClass.name(), "per-class");
    }

    #[test]
    fn prefix_method_means_one_vertex() {
        let c = RunConfig { method: &crate::method::prefix::PrefixTuning, ..Default::default() }.resolve().unwrap();
        assert_eq!(c.vertices, 1);
    }

    #[test]
    fn auto_start_is_text_for_a_decoder_prefix_and_vocab_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let gguf = tmp.path().join("tiny.gguf");
        std::fs::write(&gguf, b"").unwrap(); // the name decides that it is a decoder
        let encoder = Some(tmp.path().join("no-such-encoder"));
        let resolved = |model: &Option<PathBuf>, method: &'static dyn Method, sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let c = RunConfig { model: model.clone(), method, ..Default::default() }.apply_overrides(&sets).unwrap();
            let c = c.resolve().unwrap();
            assert_eq!(c.clone().resolve().unwrap(), c, "resolving twice changes nothing");
            (c.init, c.positions)
        };
        use crate::method::{lora::Lora, prefix::PrefixTuning, subspace::PrefixSubspace};
        let (text, vocab) = ((Init::Text, PositionsChoice::Shifted), (Init::Vocab, PositionsChoice::Unshifted));
        let decoder = Some(gguf);
        assert_eq!(resolved(&decoder, &PrefixSubspace, &[]), text);
        assert_eq!(resolved(&decoder, &PrefixTuning, &[]), text);
        assert_eq!(resolved(&decoder, &Lora, &[]), vocab);
        assert_eq!(resolved(&encoder, &PrefixSubspace, &[]), vocab);
        // A value the user sets is kept, each key on its own.
        assert_eq!(resolved(&decoder, &PrefixSubspace, &["init=vocab"]), (Init::Vocab, PositionsChoice::Shifted));
        assert_eq!(
            resolved(&decoder, &PrefixTuning, &["positions=unshifted"]),
            (Init::Text, PositionsChoice::Unshifted)
        );
        assert_eq!(resolved(&encoder, &PrefixSubspace, &["init=text", "positions=shifted"]), text);
        // Unresolved, `auto` reads as the encoder default.
        assert_eq!(PositionsChoice::Auto.get(), Positions::Unshifted);
    }

    /// Every key of a serialised config (those absent when unset included).
    fn all_keys() -> Vec<String> {
        let keys = config_keys();
        assert!(keys.len() > OPTIONAL_KEYS.len(), "the default config serialises");
        keys
    }

    #[test]
    fn every_number_valued_key_has_a_declared_range_that_the_defaults_meet() {
        let json = serde_json::to_value(RunConfig::default()).unwrap();
        let numeric: Vec<&String> =
            json.as_object().unwrap().iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k).collect();
        for k in &numeric {
            assert!(RANGES.iter().any(|r| r.key == k.as_str()), "{k} has no declared range");
        }
        for r in RANGES {
            assert!(json.get(r.key).is_some_and(|v| v.is_number()), "{}: not a number-valued key", r.key);
        }
        RunConfig::default().resolve().unwrap();
        // Each range's bounds: inside accepted, just outside refused with the key in the message.
        let e = RunConfig { prefix_dropout: 1.0, ..Default::default() }.resolve().unwrap_err().to_string();
        assert_eq!(e, "prefix_dropout = 1.0: expected a number in [0, 1)");
        let e = RunConfig { beta: f64::NAN, ..Default::default() }.resolve().unwrap_err().to_string();
        assert_eq!(e, "beta = not a finite number: expected a number in [0, 1000000]");
        let e = RunConfig { seed: MAX_SEED + 1, ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(e.starts_with("seed = 9223372036854775808: expected an integer in [0, 9223372036854775807]"), "{e}");
        RunConfig { seed: MAX_SEED, ..Default::default() }.resolve().unwrap();
        let e = RunConfig { lora_targets: vec!["qkv".into()], ..Default::default() }.resolve().unwrap_err();
        assert!(e.to_string().contains("\"qkv\""), "{e}");
    }

    /// A small fuzz run over every key (the cargo-fuzz target `config_keys` does the same with
    /// coverage guidance): random values of every TOML type, resolved and written back, never panic.
    #[test]
    fn random_values_for_every_key_never_panic() {
        use rand::{Rng, SeedableRng};
        let keys = all_keys();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let atoms = [
            "nan",
            "inf",
            "-inf",
            "0",
            "-1",
            "1",
            "0.5",
            "1e300",
            "-1e-300",
            "9223372036854775807",
            "18446744073709551615",
            "\"\"",
            "\"x/../y\"",
            "true",
            "[]",
            "[\"query\"]",
            "{}",
            "\"cuda:99\"",
            "\"subspace\"",
            "\"shifted\"",
            "1.0e-9",
            "3",
        ];
        for _ in 0..20_000 {
            let sets: Vec<String> = (0..rng.gen_range(1..4))
                .map(|_| format!("{}={}", keys[rng.gen_range(0..keys.len())], atoms[rng.gen_range(0..atoms.len())]))
                .collect();
            if let Ok(c) = RunConfig::default().apply_overrides(&sets) {
                if let Ok(r) = c.resolve() {
                    let back = RunConfig::from_toml(&r.to_toml()).unwrap();
                    assert_eq!(back.resolve().unwrap(), r, "{sets:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_keys_in_a_file_are_an_error() {
        let e = RunConfig::from_toml("vertices = 3\nvertexes = 2\n").unwrap_err();
        assert!(e.contains("vertexes"), "{e}");
        assert!(e.contains("unknown key \"vertexes\" (did you mean \"vertices\"?"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // Other errors are left as they are.
        let e = RunConfig::from_toml("vertices = \"three\"\n").unwrap_err();
        assert!(!e.contains("prefix-subspace keys"), "{e}");
        // Each names its line and column and shows the line (the toml crate's caret drawing
        // does not survive one line).
        let e = RunConfig::from_toml("seed = 2\nlr = \"a\"\n").unwrap_err();
        assert_eq!(e, "line 2, column 6: invalid type: string \"a\", expected a number (`lr = \"a\"`)");
        let e = RunConfig::from_toml("seed = 2\n[x\n").unwrap_err();
        assert!(e.starts_with("line 2, column 3: ") && e.ends_with("(`[x`)") && !e.contains('|'), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_closest_key_and_the_keys_command() {
        let e = RunConfig::default().apply_overrides(&["betta=1".into()]).unwrap_err().to_string();
        assert_eq!(
            e,
            "--set betta=1: unknown key \"betta\" (did you mean \"beta\"? run `prefix-subspace keys` for every key)"
        );
        let e = RunConfig::default().apply_overrides(&["split-seed=2".into()]).unwrap_err().to_string();
        assert!(e.contains("did you mean \"split_seed\"?"), "{e}");
        let e = RunConfig::default().apply_overrides(&["lable_column=y".into()]).unwrap_err().to_string();
        assert!(e.contains("did you mean \"label_column\"?"), "{e}");
        // Nothing close: no guess.
        let e = RunConfig::default().apply_overrides(&["colour=red".into()]).unwrap_err().to_string();
        assert_eq!(e, "--set colour=red: unknown key \"colour\" (run `prefix-subspace keys` for every key)");
        assert_eq!(edit_distance("betta", "beta"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn key_docs_cover_exactly_the_config_keys() {
        let docs = key_docs();
        let mut documented: Vec<String> = docs.iter().map(|d| d.key.to_string()).collect();
        documented.sort();
        let before = documented.len();
        documented.dedup();
        assert_eq!(documented.len(), before, "a key is documented twice");
        let mut keys = all_keys();
        keys.sort();
        assert_eq!(documented, keys, "key_docs() must document every config key, and only those");
        let defaults = toml::Value::try_from(RunConfig::default()).unwrap();
        for d in &docs {
            assert!(!d.meaning.is_empty() && !d.values.is_empty(), "{}: empty documentation", d.key);
            match defaults.get(d.key) {
                Some(v) => assert_eq!(d.default, v.to_string(), "{}", d.key),
                None => {
                    assert!(OPTIONAL_KEYS.contains(&d.key), "{}", d.key);
                    assert_eq!(d.default, "unset", "{}", d.key);
                }
            }
        }
        // Groups are contiguous, in the order of the config.
        let mut groups: Vec<&str> = docs.iter().map(|d| d.group).collect();
        groups.dedup();
        assert_eq!(groups, ["data", "user task", "model", "method", "training", "selection and evaluation"]);
        let (text, markdown) = (keys_text(), keys_markdown());
        for d in &docs {
            assert!(text.contains(&format!("\n  {} (default: {}): ", d.key, d.default)), "{}", d.key);
            assert!(markdown.contains(&format!("\n| `{}` |", d.key)), "{}", d.key);
        }
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }

    #[test]
    fn every_number_key_documents_its_declared_range() {
        let docs = key_docs();
        for r in RANGES {
            let d = docs.iter().find(|d| d.key == r.key).unwrap_or_else(|| panic!("{} is not documented", r.key));
            assert_eq!(d.values, r.range.describe(), "{}", r.key);
        }
        for d in &docs {
            if !RANGES.iter().any(|r| r.key == d.key) {
                assert!(!d.values.starts_with("an integer") && !d.values.starts_with("a number"), "{}", d.key);
            }
        }
    }

    #[test]
    fn documented_enum_names_are_every_value_and_are_accepted() {
        // Exhaustive matches: a new variant fails to compile here until its list has it.
        let whole = |ok: bool| assert!(ok);
        for v in GRANULARITIES {
            whole(match v {
                Granularity::ExampleLayer | Granularity::Example | Granularity::Batch => GRANULARITIES.len() == 3,
            });
        }
        for v in INITS {
            whole(match v {
                Init::Auto | Init::Vocab | Init::Normal | Init::Text => INITS.len() == 4,
            });
        }
        for v in PEFT_STARTS {
            whole(match v {
                PeftStart::One | PeftStart::All => PEFT_STARTS.len() == 2,
            });
        }
        for v in PROTOCOLS {
            whole(match v {
                Protocol::PerClass | Protocol::Total => PROTOCOLS.len() == 2,
            });
        }
        for v in POOLINGS {
            whole(match v {
                PoolingChoice::Auto | PoolingChoice::Mean | PoolingChoice::Cls | PoolingChoice::Last => {
                    POOLINGS.len() == 4
                }
            });
        }
        for v in POSITIONS {
            whole(match v {
                PositionsChoice::Auto | PositionsChoice::Unshifted | PositionsChoice::Shifted => POSITIONS.len() == 3,
            });
        }
        for v in DEV_ATS {
            whole(match v {
                DevAt::Samples | DevAt::Centroid => DEV_ATS.len() == 2,
            });
        }
        for v in HEADS {
            whole(match v {
                HeadKind::Words | HeadKind::Linear => HEADS.len() == 2,
            });
        }
        assert_eq!(names(&HEADS), HEADS.map(|h| h.name().to_string()));
        assert_eq!(names(&crate::method::ALL), crate::method::ALL.map(|m| m.name().to_string()));
        assert_eq!(names(&Precision::ALL), Precision::ALL.map(|p| p.name().to_string()));
        // Each enum key lists exactly its names, and accepts each of them.
        let docs = key_docs();
        let enums = [
            ("protocol", names(&PROTOCOLS)),
            ("pooling", names(&POOLINGS)),
            ("positions", names(&POSITIONS)),
            ("precision", names(&Precision::ALL)),
            ("method", names(&crate::method::ALL)),
            ("granularity", names(&GRANULARITIES)),
            ("init", names(&INITS)),
            ("init_peft_vertices", names(&PEFT_STARTS)),
            ("dev_at", names(&DEV_ATS)),
            ("head", names(&HEADS)),
        ];
        for (key, listed) in &enums {
            let d = docs.iter().find(|d| d.key == *key).unwrap();
            assert_eq!(d.values, or_list(listed), "{key}");
            for name in listed {
                let c = RunConfig::default().apply_overrides(&[format!("{key}={name}")]);
                assert!(c.is_ok(), "{key} = {name}: {c:?}");
            }
            assert!(RunConfig::default().apply_overrides(&[format!("{key}=no-such-value")]).is_err(), "{key}");
        }
        // Every enum-valued key is in that list (its default is a string, not a free-form one).
        let free_strings = ["task", "device", "text_a", "label_column"];
        let defaults = serde_json::to_value(RunConfig::default()).unwrap();
        for (key, v) in defaults.as_object().unwrap() {
            if v.is_string() && !free_strings.contains(&key.as_str()) {
                assert!(enums.iter().any(|(k, _)| k == key), "{key}: an enum key without its list of names");
            }
        }
    }

    #[test]
    fn a_user_task_can_carry_a_name() {
        let user = |name: &str| RunConfig {
            task: "user".into(),
            train_file: Some("x.csv".into()),
            task_name: Some(name.into()),
            ..Default::default()
        };
        let c = user("imdb_reviews.v2").resolve().unwrap();
        assert_eq!(c.task_label(), "imdb_reviews.v2");
        assert!(c.to_toml().contains("task_name = \"imdb_reviews.v2\""));
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert_eq!(RunConfig { task: "user".into(), ..Default::default() }.task_label(), "user");
        assert_eq!(RunConfig::default().task_label(), "sst2");
        // Unset, the key is absent: config.toml files written before it existed stay the same.
        assert!(!RunConfig::default().to_toml().contains("task_name"));
        assert_eq!(
            RunConfig::default().apply_overrides(&["task_name=imdb".into()]).unwrap().task_name.as_deref(),
            Some("imdb")
        );
        for bad in ["", "a/b", "../x", ".hidden", "two-words", "sst2", "SST-2", "MNLI", "polarity", &"x".repeat(101)] {
            let e = user(bad).resolve().unwrap_err().to_string();
            assert!(e.starts_with(&format!("task_name = {bad:?}: expected letters")), "{bad}: {e}");
        }
        let e = RunConfig { task_name: Some("mine".into()), ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(e.contains("only a user task takes a name"), "{e}");
    }
}
