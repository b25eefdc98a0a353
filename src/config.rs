//! The run configuration: every knob of a training run, with METHOD.md's defaults. Read from a
//! TOML file, overridden by `--set key=value` and by command-line flags, and written back,
//! fully resolved, into the run directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Positions;

/// Which parameters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A simplex of `vertices` deep prefixes and heads (the paper's method).
    Subspace,
    /// Plain deep prefix tuning (P-tuning v2): the subspace with one vertex.
    Prefix,
    /// LoRA (rank `lora_r`, unmerged) on the attention projections in `lora_targets`, + head.
    Lora,
    /// BitFit: every bias of the encoder, + head.
    Bitfit,
    /// Head only: a linear probe on frozen features (computed once).
    Head,
    /// Prompt tuning: `prefix_len` trainable vectors in front of the input embeddings, + head.
    Prompt,
    /// Full fine-tuning: every encoder weight, + head.
    Full,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 7] =
        [Method::Subspace, Method::Prefix, Method::Lora, Method::Bitfit, Method::Head, Method::Prompt, Method::Full];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Subspace => "subspace",
            Method::Prefix => "prefix",
            Method::Lora => "lora",
            Method::Bitfit => "bitfit",
            Method::Head => "head",
            Method::Prompt => "prompt",
            Method::Full => "full",
        }
    }

    /// Parses a method name.
    pub fn parse(s: &str) -> Result<Self> {
        by_name(&Self::ALL, Self::name, s)
            .map_err(|names| Error::Input(format!("unknown method \"{s}\" (expected one of: {})", names.join(", "))))
    }

    /// The default learning rate of the method's own parameters (METHOD.md's starting points).
    pub fn default_lr(self) -> f64 {
        match self {
            Method::Subspace | Method::Prefix | Method::Head | Method::Prompt => 5e-3,
            Method::Lora => 5e-4,
            Method::Bitfit => 1e-3,
            Method::Full => 2e-5,
        }
    }

    /// True when the method trains deep prefixes (and so can have several vertices).
    pub fn uses_prefix(self) -> bool {
        matches!(self, Method::Subspace | Method::Prefix)
    }
}

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
    /// The model folder's declared pooling, else the first token.
    Auto,
    /// Mean over real tokens.
    Mean,
    /// First token.
    Cls,
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

    // --- model ---
    /// Hugging Face model folder (default: the installed all-MiniLM-L6-v2).
    pub model: Option<PathBuf>,
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
    /// `subspace` or `prefix` (plain prefix tuning = one vertex).
    pub method: Method,
    /// Number of vertices n of the simplex.
    pub vertices: usize,
    /// Prefix length p.
    pub prefix_len: usize,
    /// α sampling granularity.
    pub granularity: Granularity,
    /// Give every vertex its own head and mix heads with α (false: one shared head).
    pub head_simplex: bool,
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
            model: None,
            max_len: 128,
            pooling: PoolingChoice::Auto,
            positions: Positions::Unshifted,
            backbone_dropout: true,
            device: "cpu".into(),
            precision: Precision::Fp32,
            threads: 0,
            method: Method::Subspace,
            vertices: 3,
            prefix_len: 16,
            granularity: Granularity::ExampleLayer,
            head_simplex: true,
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

    fn from_toml(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| one_line(&e.to_string()))
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
                return Err(Error::Input(format!(
                    "--set {s}: unknown key \"{k}\" (see a run's config.toml for the keys)"
                )));
            }
            t.insert(k.to_string(), value);
        }
        let text = toml::to_string(&table).map_err(|e| Error::Input(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| Error::Input(format!("--set: {e}")))
    }

    /// Checks value ranges and normalises method-implied settings (prefix ⇒ one vertex).
    pub fn resolve(mut self) -> Result<Self> {
        if !matches!(self.method, Method::Subspace) {
            self.vertices = 1;
        }
        if self.lr == 0.0 {
            self.lr = self.method.default_lr();
        }
        let bad = |m: String| Err(Error::Input(m));
        if self.vertices == 0 {
            return bad("vertices must be at least 1".into());
        }
        if self.shots == 0 {
            return bad("shots must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if self.dev_samples == 0 || self.ensemble_samples == 0 {
            return bad("dev_samples and ensemble_samples must be at least 1".into());
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return bad("set epochs or max_steps to at least 1".into());
        }
        for (name, p) in [("prefix_dropout", self.prefix_dropout), ("head_dropout", self.head_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        for (name, lr) in [("lr", self.lr), ("head_lr", self.head_lr)] {
            if lr.is_nan() || lr <= 0.0 || !lr.is_finite() {
                return bad(format!("{name} must be a positive number, got {lr}"));
            }
        }
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
        if self.method == Method::Lora && self.lora_r == 0 {
            return bad("lora_r must be at least 1".into());
        }
        Ok(self)
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
const OPTIONAL_KEYS: [&str; 6] = ["data_dir", "train_file", "test_file", "text_b", "model", "init_peft"];

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
        let c = RunConfig { method: Method::Prefix, ..Default::default() }.resolve().unwrap();
        assert_eq!(c.vertices, 1);
    }

    #[test]
    fn unknown_keys_in_a_file_are_an_error() {
        let e = RunConfig::from_toml("vertices = 3\nvertexes = 2\n").unwrap_err();
        assert!(e.contains("vertexes"), "{e}");
    }
}
