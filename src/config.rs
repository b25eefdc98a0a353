//! The run configuration: every knob of a training run, with the defaults of docs/method.md. Read from a
//! TOML file, overridden by `--set key=value` and by command-line flags, and written back,
//! fully resolved, into the run directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::method::Method;
use crate::model::Positions;

/// The number format of the encoder's dense-layer products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in fp32 (default).
    #[default]
    Fp32,
    /// The encoder's dense layers (attention projections, feed-forward) multiply bfloat16
    /// inputs and weights with fp32 accumulation and return fp32; attention scores, softmax,
    /// LayerNorm, the prefix, LoRA's update and the head stay fp32. About twice the matrix
    /// throughput on CPUs with AVX512-BF16 or AMX, and on GPUs.
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
    /// Position ids of the real tokens (`unshifted` 0..T-1, or `shifted` p..p+T-1 as PEFT).
    pub positions: Positions,
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
    /// Vertex initialisation.
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
            positions: Positions::Unshifted,
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
            init: Init::Vocab,
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
        toml::from_str(text).map_err(|e| with_key_hint(&one_line(&e.to_string())))
    }

    /// Applies `key=value` overrides (the value is parsed as TOML, else taken as a string).
    pub fn apply_overrides(&self, sets: &[String]) -> Result<Self> {
        let mut table = toml::Value::try_from(self).map_err(|e| Error::Input(e.to_string()))?;
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
        let text = toml::to_string(&table).map_err(|e| Error::Input(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| Error::Input(format!("--set: {e}")))
    }

    /// Checks value ranges and normalises method-implied settings (prefix ⇒ one vertex).
    pub fn resolve(mut self) -> Result<Self> {
        self.vertices = self.method.vertices(self.vertices);
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

/// The valid range of a number-valued config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// An integer in `[lo, hi]`.
    Int(u64, u64),
    /// A finite number between `lo` and `hi`, each bound included or not.
    Float {
        /// Lower bound.
        lo: f64,
        /// Whether `lo` itself is allowed.
        lo_incl: bool,
        /// Upper bound.
        hi: f64,
        /// Whether `hi` itself is allowed.
        hi_incl: bool,
    },
}

impl Range {
    const fn closed(lo: f64, hi: f64) -> Self {
        Range::Float { lo, lo_incl: true, hi, hi_incl: true }
    }

    /// Whether the finite number `x` lies in the range.
    pub fn contains(&self, x: f64) -> bool {
        match *self {
            Range::Int(lo, hi) => x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64,
            Range::Float { lo, lo_incl, hi, hi_incl } => {
                x.is_finite() && (x > lo || (lo_incl && x == lo)) && (x < hi || (hi_incl && x == hi))
            }
        }
    }

    /// The range in words, e.g. "an integer in [1, 64]", "a number in [0, 1)".
    pub fn describe(&self) -> String {
        match *self {
            Range::Int(lo, hi) => format!("an integer in [{lo}, {hi}]"),
            Range::Float { lo, lo_incl, hi, hi_incl } => {
                format!("a number in {}{lo}, {hi}{}", if lo_incl { "[" } else { "(" }, if hi_incl { "]" } else { ")" })
            }
        }
    }
}

/// A config key and its valid range.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange {
    /// The key.
    pub key: &'static str,
    /// Its valid values.
    pub range: Range,
}

const fn int(key: &'static str, lo: u64, hi: u64) -> KeyRange {
    KeyRange { key, range: Range::Int(lo, hi) }
}
const fn num(key: &'static str, range: Range) -> KeyRange {
    KeyRange { key, range }
}

/// The largest seed: seeds are stored as TOML integers, which are signed 64-bit.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// The most models one evaluation may sample per example (`dev_samples`, `ensemble_samples`,
/// `--at ensemble:M`).
pub const MAX_SAMPLES: u64 = 1024;

/// The valid range of every number-valued key, checked once when a config is resolved (the
/// model-dependent limits on `max_len` and `prefix_len` are checked when the model is loaded).
pub const RANGES: &[KeyRange] = &[
    int("shots", 1, 100_000),
    int("split_seed", 0, MAX_SEED),
    int("max_len", 8, 8192),
    int("threads", 0, 256),
    int("vertices", 1, 64),
    int("prefix_len", 1, 1024),
    num("beta", Range::closed(0.0, 1e6)),
    num("prefix_dropout", Range::Float { lo: 0.0, lo_incl: true, hi: 1.0, hi_incl: false }),
    num("head_dropout", Range::Float { lo: 0.0, lo_incl: true, hi: 1.0, hi_incl: false }),
    int("reparam", 0, 4096),
    num("init_std", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    num("init_peft_noise", Range::closed(0.0, 10.0)),
    int("seed", 0, MAX_SEED),
    num("lr", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    num("head_lr", Range::Float { lo: 0.0, lo_incl: false, hi: 10.0, hi_incl: true }),
    int("lora_r", 1, 1024),
    num("lora_alpha", Range::Float { lo: 0.0, lo_incl: false, hi: 1e6, hi_incl: true }),
    num("weight_decay", Range::closed(0.0, 100.0)),
    num("warmup_ratio", Range::closed(0.0, 1.0)),
    num("clip", Range::closed(0.0, 1e6)),
    int("batch_size", 1, 4096),
    int("epochs", 0, 100_000),
    int("max_steps", 0, 100_000_000),
    int("eval_every", 0, 100_000_000),
    int("patience", 0, 1_000_000),
    int("checkpoint_every", 0, 100_000_000),
    int("numerics", NUMERICS as u64, NUMERICS as u64),
    int("dev_samples", 1, MAX_SAMPLES),
    int("ensemble_samples", 1, MAX_SAMPLES),
    int("eval_batch_size", 1, 65_536),
    int("icl_shots", 0, MAX_SAMPLES),
    int("test_limit", 0, 1_000_000_000),
];

/// The LoRA targets `lora_targets` may name.
pub const LORA_TARGETS: [&str; 4] = ["query", "key", "value", "output"];

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

/// Every key of a config: those of the serialised default, and those absent when unset.
fn config_keys() -> Vec<String> {
    let mut keys: Vec<String> = toml::Value::try_from(RunConfig::default())
        .ok()
        .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect()))
        .unwrap_or_default();
    keys.extend(OPTIONAL_KEYS.iter().map(|k| k.to_string()));
    keys
}

/// The error text for an unknown key `k`: the closest key when one is close, and where to find
/// every key.
fn unknown_key(k: &str) -> String {
    let hint = match closest_key(k) {
        Some(near) => format!("did you mean \"{near}\"? run `prefix-subspace keys` for every key"),
        None => "run `prefix-subspace keys` for every key".to_string(),
    };
    format!("unknown key \"{k}\" ({hint})")
}

/// The config key nearest to `k` by edit distance, when it is close: at most one edit per three
/// characters of `k` (at least one).
fn closest_key(k: &str) -> Option<String> {
    let most = (k.chars().count() / 3).max(1);
    config_keys()
        .into_iter()
        .map(|key| (edit_distance(k, &key), key))
        .filter(|(d, _)| *d <= most)
        .min()
        .map(|(_, key)| key)
}

/// Levenshtein distance (insertions, deletions, substitutions of one character).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A TOML error about an unknown field (serde's "unknown field `k`, expected one of ...") with
/// the list of fields replaced by [`unknown_key`]'s hint; other errors unchanged.
fn with_key_hint(message: &str) -> String {
    const UNKNOWN: &str = "unknown field `";
    let Some(at) = message.find(UNKNOWN) else { return message.to_string() };
    let rest = &message[at + UNKNOWN.len()..];
    let Some(end) = rest.find('`') else { return message.to_string() };
    format!("{}{}", &message[..at], unknown_key(&rest[..end]))
}

/// One config key, documented: what `prefix-subspace keys` prints and the key table of docs/keys.md
/// show (both generated from [`key_docs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// The group it is listed under (data, user task, model, method, training, selection and
    /// evaluation).
    pub group: &'static str,
    /// The key.
    pub key: &'static str,
    /// Its valid values: the declared range of a number ([`RANGES`]), the names of an enum,
    /// else what the string or path means.
    pub values: String,
    /// Its default as TOML writes it, or `unset` for a key absent when unset.
    pub default: String,
    /// What it does.
    pub meaning: String,
}

/// The serde names of enum values, as a config writes them.
fn names<T: Serialize>(all: &[T]) -> Vec<String> {
    all.iter().filter_map(|v| serde_json::to_value(v).ok()?.as_str().map(str::to_string)).collect()
}

/// "a, b or c", as a list of valid values reads.
fn or_list(items: &[String]) -> String {
    and_or(items, "or")
}

/// "a, b `word` c".
fn and_or(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// Every value of the enums without a list of their own (the tests check each list is whole).
const GRANULARITIES: [Granularity; 3] = [Granularity::ExampleLayer, Granularity::Example, Granularity::Batch];
const INITS: [Init; 3] = [Init::Vocab, Init::Normal, Init::Text];
const PEFT_STARTS: [PeftStart; 2] = [PeftStart::One, PeftStart::All];
const PROTOCOLS: [Protocol; 2] = [Protocol::PerClass, Protocol::Total];
const POOLINGS: [PoolingChoice; 4] =
    [PoolingChoice::Auto, PoolingChoice::Mean, PoolingChoice::Cls, PoolingChoice::Last];
const POSITIONS: [Positions; 2] = [Positions::Unshifted, Positions::Shifted];
const DEV_ATS: [DevAt; 2] = [DevAt::Samples, DevAt::Centroid];
const HEADS: [HeadKind; 2] = [HeadKind::Words, HeadKind::Linear];

/// Every config key with its default, valid values and meaning, in groups (data, user task,
/// model, method, training, selection and evaluation): the one source of `prefix-subspace
/// keys` ([`keys_text`]) and of the key table of docs/keys.md ([`keys_markdown`]).
pub fn key_docs() -> Vec<KeyDoc> {
    /// How a key's valid values are found.
    enum Values {
        /// Its entry in [`RANGES`].
        Number,
        /// These enum names.
        Names(Vec<String>),
        /// In words.
        Text(String),
    }
    use Values::{Names, Number, Text};
    let text = |s: &str| Text(s.to_string());
    let boolean = || text("true or false");
    let column = || text("a column name (a field name in .jsonl)");
    let glue_tasks = crate::data::glue::TASK_NAMES.join(", ");
    // "5e-3 subspace, prefix, head and prompt; 5e-4 lora; ...": methods grouped by default.
    let mut by_lr: Vec<(f64, Vec<String>)> = Vec::new();
    for m in crate::method::ALL {
        match by_lr.iter_mut().find(|(lr, _)| *lr == m.default_lr()) {
            Some((_, ms)) => ms.push(m.name().to_string()),
            None => by_lr.push((m.default_lr(), vec![m.name().to_string()])),
        }
    }
    let lr_defaults =
        by_lr.iter().map(|(lr, ms)| format!("{lr:e} {}", and_or(ms, "and"))).collect::<Vec<_>>().join("; ");
    let defaults =
        toml::Value::try_from(RunConfig::default()).ok().and_then(|v| v.as_table().cloned()).unwrap_or_default();
    let rows: Vec<(&'static str, &'static str, Values, String)> = vec![
        ("data", "task", Text(format!("{glue_tasks}, polarity or user")),
            "The task: a GLUE task (its TSVs from `data_dir`), `polarity` (the installed demo data) or `user` (your own file: see the user-task keys).".into()),
        ("data", "data_dir", text("a folder (holding SST-2/, RTE/, ...)"),
            "Folder with the GLUE task folders; unset: `$GLUE_DIR`.".into()),
        ("data", "allow_partial_train", boolean(),
            "Allow sampling from a partial GLUE train file (`train.subset.tsv`); `results.json` then says so in `notes`.".into()),
        ("data", "protocol", Names(names(&PROTOCOLS)),
            "Few-shot protocol. `per-class` (LM-BFF): `shots` per class for train and a disjoint `shots` per class for dev; `total`: `shots` training examples in total (stratified) and a dev set of the same size.".into()),
        ("data", "shots", Number, "K: examples per class (`per-class`) or in total (`total`).".into()),
        ("data", "split_seed", Number, "Seed of the few-shot sample (which examples are drawn), distinct from `seed`.".into()),
        ("user task", "train_file", text("a .tsv, .csv or .jsonl file (with a header row for .tsv and .csv)"),
            "The training pool of `task = \"user\"` (required for it): the few-shot train and dev sets are drawn from it.".into()),
        ("user task", "test_file", text("a .tsv, .csv or .jsonl file"),
            "The user task's test set (its labels among `train_file`'s); unset: a fixed held-out fifth of `train_file`.".into()),
        ("user task", "text_a", column(), "The column of the (first) text.".into()),
        ("user task", "text_b", column(), "The column of the second text of a pair task; unset: one text per example.".into()),
        ("user task", "label_column", column(),
            "The label column: the classes are its distinct values, sorted (unless `regression`).".into()),
        ("user task", "regression", boolean(),
            "Labels are real numbers: one output, MSE loss, Pearson and Spearman correlation.".into()),
        ("user task", "task_name", Text(TASK_NAME_RULE.into()),
            "The user task's name in `results.json`, tables and bench cell ids; unset: `user`. Gives runs of different user tasks different names (only with `task = \"user\"`).".into()),
        ("model", "model", text("a model folder, a .gguf file, or the name of a model installed in the cache"),
            "The backbone (frozen except by `lora`, `bitfit` and `full`): a Hugging Face encoder folder, or a decoder LLM in a GGUF file (or a folder holding one), e.g. `smollm2-135m-instruct`; unset: the installed all-MiniLM-L6-v2.".into()),
        ("model", "template", text("a text with {s} (single-sentence tasks) or {s1} and {s2} (pair tasks), answer slot last"),
            "Decoders: the prompt each input is written into; the class score is the LM logit of its label word right after it. Unset: the task's default (docs/method.md).".into()),
        ("model", "label_words", text("a list of words, one per class in class order, each with its leading space"),
            "Decoders: the label words (their first token is scored). Unset: the task's default.".into()),
        ("model", "max_len", Number, "Truncation length in tokens (at most what the model's position table allows).".into()),
        ("model", "pooling", Names(names(&POOLINGS)),
            "What the head reads: `auto` = the pooling the model folder declares (mean for the default model), else the first token; `mean` over real tokens; `cls` the first token.".into()),
        ("model", "positions", Names(names(&POSITIONS)),
            "Position ids of the real tokens after a prefix: `unshifted` 0..T-1; `shifted` p..p+T-1, as Hugging Face BERT and PEFT do (train with it to export to PEFT).".into()),
        ("model", "backbone_dropout", boolean(), "Apply the frozen model's own dropout while training (as Hugging Face's train mode does).".into()),
        ("model", "device", text("cpu, cuda or cuda:N"), "Where the run computes (does not make it another run).".into()),
        ("model", "precision", Names(names(&Precision::ALL)),
            "Number format of the encoder's dense-layer products: `bf16` multiplies bfloat16 inputs and weights with fp32 accumulation (attention, LayerNorm, prefix and head stay fp32); faster on CPUs with AVX512-BF16 or AMX and on GPUs, changes the numbers.".into()),
        ("model", "threads", Number, "Intra-op threads (0 = libtorch's default); does not make it another run.".into()),
        ("method", "method", Names(names(&crate::method::ALL)),
            "What is trained: `subspace` (a simplex of deep prefixes and heads, the paper's method), `prefix` (one deep prefix), `lora`, `bitfit`, `head` (a linear head trained with AdamW on frozen features), `prompt` (a soft prompt) or `full` (every weight); each with a classification head (see `head`). `probe`: logistic regression (ridge for regression) fitted to convergence on frozen, L2-normalised, standardised features, C chosen on dev among 0.01, 0.1, 1, 10, 100, 1000, 10000; no gradient steps. `setfit` (encoders, classification): SetFit, contrastive fine-tuning of every encoder weight on pairs of train examples (20 rounds, batches of 16 pairs, `lr`, warm-up 10%), then `probe`'s logistic regression on the fine-tuned embeddings. Decoders only: `zero-shot` (the template, nothing trained) and `icl` (in-context learning: the train examples as demonstrations, nothing trained).".into()),
        ("method", "vertices", Number, "n: vertices of the simplex, each a per-layer prefix K/V and a head (1 for every method but `subspace`).".into()),
        ("method", "prefix_len", Number, "p: prefix length (`prompt`: soft-prompt vectors).".into()),
        ("method", "granularity", Names(names(&GRANULARITIES)),
            "How many α ~ Dirichlet(1) draws a batch uses: `example-layer` one per example and layer (and one for the head), `example` one per example, `batch` one per batch.".into()),
        ("method", "head", Names(names(&HEADS)),
            "What reads the features: `words` = a decoder's label words (the LM's output rows of their first tokens, frozen; decoders only); `linear` = a fresh trained linear head (on a decoder: on the last real token's final hidden state; `head_simplex` applies to it). Unset: `words` on a decoder with label words, except for methods `head` and `probe`; `linear` otherwise. Encoders accept only `linear`.".into()),
        ("method", "head_simplex", boolean(), "Give every vertex its own linear head, mixed with its own α (false: one shared head; a label-word head is never mixed).".into()),
        ("method", "beta", Number, "Weight β of the cos² regulariser between a random pair of vertices (0 = off).".into()),
        ("method", "prefix_dropout", Number, "Dropout on the (mixed) prefix while training.".into()),
        ("method", "head_dropout", Number, "Dropout before the head while training.".into()),
        ("method", "reparam", Number, "MLP reparameterisation width r (0 = off): embedding → Linear(H→r) → tanh → Linear(r→2LH).".into()),
        ("method", "init", Names(names(&INITS)),
            "Vertex initialisation: `vocab` = the backbone's own keys and values of `prefix_len` random vocabulary tokens (different tokens for every vertex); `text` = the keys and values of the first `prefix_len` tokens of a different few-shot train example per vertex (on a decoder written with the template and its label word, as a demonstration); `normal` = N(0, `init_std`²).".into()),
        ("method", "init_std", Number, "Standard deviation of `init = \"normal\"`.".into()),
        ("method", "init_peft", text("a PEFT prefix-tuning adapter folder"),
            "Start from this adapter (method `subspace` or `prefix`, no `reparam`); see `init_peft_vertices`.".into()),
        ("method", "init_peft_vertices", Names(names(&PEFT_STARTS)),
            "With `init_peft`: `one` = vertex 0 starts at the adapter, the others as `init` says; `all` = every vertex at the adapter plus Gaussian noise of `init_peft_noise` × the adapter's std.".into()),
        ("method", "init_peft_noise", Number, "Relative noise around the adapter for `init_peft_vertices = \"all\"` (> 0 with several vertices: identical vertices never separate).".into()),
        ("method", "lora_r", Number, "LoRA rank r.".into()),
        ("method", "lora_alpha", Number, "LoRA alpha: the update is scaled by alpha / r.".into()),
        ("method", "lora_targets", Text(format!("a list of one or more of {}", LORA_TARGETS.join(", "))),
            "The attention projections LoRA updates (unmerged).".into()),
        ("method", "calibrate", boolean(),
            "`zero-shot` and `icl` only: contextual calibration (Zhao et al. 2021): the label words' probabilities are divided by those the model gives the content-free input `N/A` written into the template (with the demonstrations for `icl`), which removes a constant label bias.".into()),
        ("method", "icl_shots", Number, "In-context learning: demonstrations per class drawn (seeded) from the few-shot train set; 0 = chosen on the dev split among 1, 2, 4, 8, 16, 32 (at most the train set), the fewest among the best.".into()),
        ("training", "seed", Number, "Training seed: initialisation, dropout, α draws, data order.".into()),
        ("training", "lr", Number, format!("Peak learning rate of the method's parameters (AdamW); 0 = the method's default: {lr_defaults}.")),
        ("training", "head_lr", Number, "Peak learning rate of the classification head(s).".into()),
        ("training", "weight_decay", Number, "AdamW weight decay.".into()),
        ("training", "warmup_ratio", Number, "Fraction of the steps of linear warm-up (then linear decay).".into()),
        ("training", "clip", Number, "Gradient-norm clipping (0 = off).".into()),
        ("training", "batch_size", Number, "Training batch size.".into()),
        ("training", "epochs", Number, "Number of epochs (ignored when `max_steps` > 0).".into()),
        ("training", "max_steps", Number, "Optimizer steps in total (0 = use `epochs`).".into()),
        ("training", "eval_every", Number, "Evaluate on dev every this many steps (0 = once per epoch).".into()),
        ("training", "patience", Number, "Stop after this many evaluations without dev improvement (0 = never).".into()),
        ("training", "checkpoint_every", Number, "Save the resumable state every this many steps (0 = at each dev evaluation).".into()),
        ("training", "numerics", Number,
            format!("Version of the training numerics: this build trains version {NUMERICS} only (run directories without the key are version 1).")),
        ("selection and evaluation", "dev_samples", Number, "m: models sampled from the simplex per dev example for the dev metric.".into()),
        ("selection and evaluation", "dev_at", Names(names(&DEV_ATS)),
            "Dev scoring for checkpoint selection: `samples` = `dev_samples` sampled models per example (the augmented metric); `centroid` = the centroid only (with `dev_samples = 1`: ordinary selection).".into()),
        ("selection and evaluation", "ensemble_samples", Number, "Models sampled for the final test ensemble.".into()),
        ("selection and evaluation", "test_vertices", boolean(), "Also score every vertex on the test set (n more test passes; `eval --at all` always does); `bench` cells default to false: its tables report the centroid and the ensemble.".into()),
        ("selection and evaluation", "eval_batch_size", Number, "Evaluation batch size (examples × samples per forward).".into()),
        ("selection and evaluation", "test_limit", Number,
            "Evaluate only a fixed stratified sample of this many examples of each test set (0 = all; for smoke tests, said in `notes`).".into()),
    ];
    rows.into_iter()
        .map(|(group, key, values, meaning)| KeyDoc {
            group,
            key,
            values: match values {
                Number => {
                    RANGES.iter().find(|r| r.key == key).map_or_else(|| "a number".into(), |r| r.range.describe())
                }
                Names(n) => or_list(&n),
                Text(t) => t,
            },
            default: defaults.get(key).map_or_else(|| "unset".to_string(), toml::Value::to_string),
            meaning,
        })
        .collect()
}

/// The first paragraph of [`keys_text`] (README.md and docs/keys.md say the same in their own words).
const KEYS_INTRO: &str = "Every key can be set with `--set key=value` or in a TOML file given to `--config`; command-line flags win over `--set`, which wins over the file. A run writes its resolved config to `config.toml`.";

/// Every config key for a terminal (what `prefix-subspace keys` prints): per group, each key with
/// its default and valid values, then its meaning, indented.
pub fn keys_text() -> String {
    let mut out = wrap(KEYS_INTRO, 100).join("\n") + "\n";
    let mut group = "";
    for d in key_docs() {
        if d.group != group {
            group = d.group;
            out.push_str(&format!("\n{group}:\n"));
        }
        for (i, line) in wrap(&format!("{} (default: {}): {}", d.key, d.default, d.values), 98).iter().enumerate() {
            out.push_str(if i == 0 { "  " } else { "        " });
            out.push_str(line);
            out.push('\n');
        }
        for line in wrap(&d.meaning, 94) {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out
}

/// Every config key as a markdown table (key, default, valid values, meaning), one bold row
/// per group: the key table of docs/keys.md between `<!-- keys:begin -->` and `<!-- keys:end -->`.
pub fn keys_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| key | default | values | meaning |\n|---|---|---|---|\n");
    let mut group = "";
    for d in key_docs() {
        if d.group != group {
            group = d.group;
            out.push_str(&format!("| **{group}** | | | |\n"));
        }
        let default = if d.default == "unset" { "unset".to_string() } else { format!("`{}`", d.default) };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", d.key, cell(&default), cell(&d.values), cell(&d.meaning)));
    }
    out
}

/// `text` broken into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn one_line(s: &str) -> String {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
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
    }

    #[test]
    fn prefix_method_means_one_vertex() {
        let c = RunConfig { method: &crate::method::prefix::PrefixTuning, ..Default::default() }.resolve().unwrap();
        assert_eq!(c.vertices, 1);
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
                Init::Vocab | Init::Normal | Init::Text => INITS.len() == 3,
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
                Positions::Unshifted | Positions::Shifted => POSITIONS.len() == 2,
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
