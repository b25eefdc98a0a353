//! A frozen BERT / RoBERTa / MPNet encoder (post-LayerNorm) whose every attention layer
//! accepts a per-example deep prefix: trainable keys and values placed in front of the
//! projected keys and values of the real tokens.
//!
//! Structs mirror the checkpoint's tensor names (`embeddings.*`, `encoder.layer.N.*`), so
//! loading is a lookup by name ([`Arch::layer_names`] gives each family's names). Weights
//! are plain tensors without `requires_grad`: no gradient is ever computed for them unless
//! [`Encoder::make_trainable`] or [`Encoder::add_lora`] asks for trainable parameters.
//!
//! The three families share one layer (the same post-LN math); MPNet differs in its
//! embeddings (no token types, RoBERTa-style positions) and in a bucketed relative-position
//! bias added to the attention scores (see [`Encoder::relative_position_bias`]).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::load::Weights;
use crate::error::{Error, Result};

/// Which family a checkpoint belongs to: decides position ids and tensor-name prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Arch {
    /// BERT: positions 0..T-1, token types.
    Bert,
    /// RoBERTa: positions start after the padding index and skip padding.
    Roberta,
    /// MPNet: RoBERTa-style positions (padding index 1), no token types, and a relative-position
    /// bias (32 buckets, max distance 128, one table shared by all layers) on the attention scores.
    Mpnet,
}

/// The checkpoint names of one layer's sub-modules, below `encoder.layer.N.`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNames {
    /// Query projection (`attention.self.query`; MPNet `attention.attn.q`).
    pub query: &'static str,
    /// Key projection.
    pub key: &'static str,
    /// Value projection.
    pub value: &'static str,
    /// Attention output projection (`attention.output.dense`; MPNet `attention.attn.o`).
    pub attention_output: &'static str,
    /// LayerNorm after attention (`attention.output.LayerNorm`; MPNet `attention.LayerNorm`).
    pub attention_norm: &'static str,
    /// Feed-forward up projection.
    pub intermediate: &'static str,
    /// Feed-forward down projection.
    pub output: &'static str,
    /// LayerNorm after the feed-forward block.
    pub output_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

const MPNET_NAMES: LayerNames = LayerNames {
    query: "attention.attn.q",
    key: "attention.attn.k",
    value: "attention.attn.v",
    attention_output: "attention.attn.o",
    attention_norm: "attention.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

/// MPNet's relative-position table (`encoder.relative_attention_bias.weight`, `(buckets, heads)`).
pub const MPNET_RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";
/// Buckets MPNet's relative positions fall into (Hugging Face uses 32 whatever the config says).
const MPNET_BUCKETS: i64 = 32;
/// Distance from which all relative positions share the last bucket.
const MPNET_MAX_DISTANCE: i64 = 128;
/// MPNet's padding index for position ids (hard-coded to 1 in Hugging Face).
const MPNET_PADDING_IDX: i64 = 1;
/// The most layers a `config.json` may declare (the largest released encoders have 48).
pub const MAX_LAYERS: i64 = 1000;

/// The position id of the first real token of an input whose positions are not shifted:
/// 0 for BERT; for RoBERTa and MPNet the one after the padding index (`pad_token_id`, and 1
/// for MPNet whatever the config says, as Hugging Face hard-codes it).
fn first_position(arch: Arch, pad_token_id: i64) -> i64 {
    match arch {
        Arch::Bert => 0,
        Arch::Roberta => pad_token_id + 1,
        Arch::Mpnet => MPNET_PADDING_IDX + 1,
    }
}

impl Arch {
    /// The name prefix a task-model checkpoint puts before the encoder's tensors.
    pub fn checkpoint_prefix(self) -> &'static str {
        match self {
            Arch::Bert => "bert.",
            Arch::Roberta => "roberta.",
            Arch::Mpnet => "mpnet.",
        }
    }

    /// The checkpoint names of a layer's sub-modules.
    pub fn layer_names(self) -> LayerNames {
        match self {
            Arch::Bert | Arch::Roberta => BERT_NAMES,
            Arch::Mpnet => MPNET_NAMES,
        }
    }
}

/// The subset of a Hugging Face `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `bert`, `roberta`, `mpnet` (anything else is rejected).
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Hidden size H (= heads × head dim).
    pub hidden_size: i64,
    /// Number of transformer layers L.
    pub num_hidden_layers: i64,
    /// Number of attention heads.
    pub num_attention_heads: i64,
    /// Feed-forward inner size.
    pub intermediate_size: i64,
    /// Activation of the feed-forward block (`gelu`, `gelu_new`, `relu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Number of learned absolute positions.
    pub max_position_embeddings: i64,
    /// Number of token types (1 for RoBERTa; MPNet has none and ignores it).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa positions are offset from it).
    #[serde(default)]
    pub pad_token_id: i64,
    /// Dropout on hidden states (used only when training with backbone dropout on).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (likewise).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Only `absolute` is supported.
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
    /// MPNet: rows of the relative-position table (at least 32; only the first 32 are used).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: i64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_pos_type() -> String {
    "absolute".into()
}
fn default_buckets() -> i64 {
    MPNET_BUCKETS
}

impl Config {
    /// The names and shapes of a BERT encoder's tensors under this config (Hugging Face's
    /// `BertModel` without its pooler): embeddings, then each layer's attention, feed-forward
    /// and LayerNorm weights and biases. Used to build random checkpoints (speed figures, tests).
    pub fn bert_parameter_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let (v, h, f) = (self.vocab_size, self.hidden_size, self.intermediate_size);
        let mut shapes: Vec<(String, Vec<i64>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![v, h]),
            ("embeddings.position_embeddings.weight".into(), vec![self.max_position_embeddings, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![self.type_vocab_size, h]),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..self.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (n, o, i) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", f, h),
                ("output.dense", h, f),
            ] {
                shapes.push((format!("{p}.{n}.weight"), vec![o, i]));
                shapes.push((format!("{p}.{n}.bias"), vec![o]));
            }
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                shapes.push((format!("{p}.{n}.weight"), vec![h]));
                shapes.push((format!("{p}.{n}.bias"), vec![h]));
            }
        }
        shapes
    }

    /// Reads and validates `config.json` (see [`Config::validate`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Config =
            serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}:{}: {}", path.display(), e.line(), e)))?;
        cfg.validate().map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Checks that the values make an encoder that can run: counts and sizes at least 1
    /// (at most [`MAX_LAYERS`] layers), the hidden size a multiple of the heads, a finite
    /// positive LayerNorm epsilon, dropout probabilities in [0, 1), `pad_token_id` a token of
    /// the vocabulary, at least one position for a token (RoBERTa and MPNet start positions
    /// after the padding index), and the supported architecture, activation, position type
    /// and (MPNet) relative buckets. The message names the key, its value and what was
    /// expected, without the file (the caller adds it).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let arch = self.arch()?;
        let at_least_one = [
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in at_least_one {
            if v < 1 {
                return Err(format!("{key} is {v}, expected at least 1"));
            }
        }
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(format!("num_hidden_layers is {}, expected at most {MAX_LAYERS}", self.num_hidden_layers));
        }
        if arch != Arch::Mpnet && self.type_vocab_size < 1 {
            return Err(format!("type_vocab_size is {}, expected at least 1", self.type_vocab_size));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!("layer_norm_eps is {}, expected a finite number above 0", self.layer_norm_eps));
        }
        for (key, v) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{key} is {v}, expected a probability in [0, 1)"));
            }
        }
        if !(0..self.vocab_size).contains(&self.pad_token_id) {
            return Err(format!(
                "pad_token_id is {}, expected a token id in [0, {}) (vocab_size {})",
                self.pad_token_id, self.vocab_size, self.vocab_size
            ));
        }
        let first = first_position(arch, self.pad_token_id);
        if self.max_position_embeddings <= first {
            return Err(format!(
                "max_position_embeddings is {}, expected more than {first}: {} positions start at {first} (after the padding index)",
                self.max_position_embeddings, self.model_type
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type \"{}\" is not supported (expected \"absolute\")",
                self.position_embedding_type
            ));
        }
        Activation::parse(&self.hidden_act)?;
        if arch == Arch::Mpnet && self.relative_attention_num_buckets < MPNET_BUCKETS {
            return Err(format!(
                "relative_attention_num_buckets {} is below the {MPNET_BUCKETS} buckets MPNet uses",
                self.relative_attention_num_buckets
            ));
        }
        Ok(())
    }

    /// The architecture family, from `model_type`.
    pub fn arch(&self) -> std::result::Result<Arch, String> {
        match self.model_type.as_str() {
            "bert" => Ok(Arch::Bert),
            "roberta" | "xlm-roberta" => Ok(Arch::Roberta),
            "mpnet" => Ok(Arch::Mpnet),
            other => Err(format!("unsupported architecture model_type \"{other}\" (supported: bert, roberta, mpnet)")),
        }
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Gelu,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(format!("hidden_act \"{other}\" is not supported (expected gelu, gelu_new or relu)")),
        }
    }

    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::Gelu => x.gelu("none"),
            Self::GeluTanh => x.gelu("tanh"),
            Self::Relu => x.relu(),
        }
    }
}

/// Where the real tokens' position ids start when a prefix is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// Positions 0..T-1: the prefix is not text (the default).
    #[default]
    Unshifted,
    /// Positions p..p+T-1, as Hugging Face BERT does with `past_key_values` (what PEFT runs).
    Shifted,
}

/// A dense layer `y = x Wᵀ + b` with the checkpoint's `(out, in)` weight, and an optional
/// low-rank update (LoRA).
#[derive(Debug)]
pub struct Linear {
    /// `(out, in)`.
    pub weight: Tensor,
    /// `(out,)`.
    pub bias: Tensor,
    /// LoRA: `y += scale · (x Aᵀ) Bᵀ`.
    pub lora: Option<Lora>,
    /// Multiply in this lower precision (bf16) instead of fp32, with `weight` rounded once
    /// when it is frozen (`Some`) or at every call when it is trained (`None`).
    low: Option<(Kind, Option<Tensor>)>,
}

/// A trainable low-rank update of a frozen linear layer (Hu et al. 2021), kept unmerged.
#[derive(Debug)]
pub struct Lora {
    /// `(r, in)`, Kaiming-uniform initialised.
    pub a: Tensor,
    /// `(out, r)`, zero initialised (the update starts at 0).
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

impl Linear {
    fn load(w: &mut Weights, name: &str, out_dim: i64, in_dim: i64) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{name}.weight"), &[out_dim, in_dim])?,
            bias: w.take(&format!("{name}.bias"), &[out_dim])?,
            lora: None,
            low: None,
        })
    }

    /// Multiply in `kind` (e.g. bf16) from now on, or in fp32 again (`None`).
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        self.low = kind.map(|k| (k, (!self.weight.requires_grad()).then(|| self.weight.to_kind(k))));
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = match &self.low {
            None => x.linear(&self.weight, Some(&self.bias)),
            Some((k, frozen)) => {
                let w = frozen.as_ref().map_or_else(|| self.weight.to_kind(*k), |w| w.shallow_clone());
                x.to_kind(*k).linear::<Tensor>(&w, None).to_kind(x.kind()) + &self.bias
            }
        };
        match &self.lora {
            Some(l) => y + x.linear::<Tensor>(&l.a, None).linear::<Tensor>(&l.b, None) * l.scale,
            None => y,
        }
    }
}

/// LayerNorm with the checkpoint's `weight` / `bias` (older `gamma` / `beta` accepted).
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &mut Weights, name: &str, dim: i64, eps: f64) -> Result<Self> {
        let weight = w.take_any(&[&format!("{name}.weight"), &format!("{name}.gamma")], &[dim])?;
        let bias = w.take_any(&[&format!("{name}.bias"), &format!("{name}.beta")], &[dim])?;
        Ok(Self { weight, bias, eps })
    }

    /// Applies the normalisation over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().expect("tensor has a last dimension");
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Word + position (+ token-type) embeddings, then LayerNorm.
#[derive(Debug)]
pub struct Embeddings {
    /// `(vocab, H)`.
    pub word_embeddings: Tensor,
    /// `(max_positions, H)`.
    pub position_embeddings: Tensor,
    /// `(type_vocab, H)`; `None` for MPNet, which has no token types.
    pub token_type_embeddings: Option<Tensor>,
    /// Final LayerNorm.
    pub layer_norm: LayerNorm,
}

impl Embeddings {
    fn load(w: &mut Weights, cfg: &Config, arch: Arch) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: w.take("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position_embeddings: w.take("embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?,
            token_type_embeddings: match arch {
                Arch::Mpnet => None,
                _ => Some(w.take("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?),
            },
            layer_norm: LayerNorm::load(w, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
        })
    }

    /// Adds the token-type embeddings of `types` to `x` (nothing for MPNet).
    fn add_types(&self, x: Tensor, types: &Tensor) -> Tensor {
        match &self.token_type_embeddings {
            Some(t) => x + Tensor::embedding(t, types, -1, false, false),
            None => x,
        }
    }
}

/// Self-attention with an optional per-example prefix in front of the keys and values.
#[derive(Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    heads: i64,
    head_dim: i64,
}

impl SelfAttention {
    /// `x: (B, T, H)`, or `(N, H)` packed real-token rows when `pack` is given; `mask:
    /// (B, 1 or heads, 1 or T, p+T)` additive (mask and any position bias together), `prefix:
    /// Some((k, v))` each `(B, p, H)`. Returns the context in the layout of `x`.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<(&Tensor, &Tensor)>,
        dropout: f64,
        pack: Option<&Packing>,
    ) -> Tensor {
        let (b, t, h) = match pack {
            Some(p) => (p.b, p.t, x.size()[1]),
            None => x.size3().expect("hidden states are (B, T, H)"),
        };
        let padded = |y: Tensor| match pack {
            Some(p) => p.unpack(&y),
            None => y,
        };
        let split = |y: Tensor| y.view([b, -1, self.heads, self.head_dim]).transpose(1, 2);
        let q = split(padded(self.query.forward(x)));
        let mut k = padded(self.key.forward(x));
        let mut v = padded(self.value.forward(x));
        if let Some((pk, pv)) = prefix {
            k = Tensor::cat(&[pk, &k], 1);
            v = Tensor::cat(&[pv, &v], 1);
        }
        let (k, v) = (split(k), split(v));
        let ctx = if dropout > 0.0 {
            // SDPA's math path, with the probabilities' dropout mask drawn on all threads.
            let scores = q.matmul(&k.transpose(-2, -1)) * (1.0 / (self.head_dim as f64).sqrt()) + mask;
            super::dropout::dropout(&scores.softmax(-1, Kind::Float), dropout).matmul(&v)
        } else {
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false)
        };
        let ctx = ctx.transpose(1, 2).reshape([b, t, h]);
        match pack {
            Some(p) => p.pack(&ctx),
            None => ctx,
        }
    }
}

/// The real-token rows of a padded `(B, T)` batch. With it, every part of a layer that works
/// token by token (the six linear maps, dropout, GELU, LayerNorm, the residuals) runs on the
/// `N` real tokens only, `(N, H)`, and only attention sees the padded `(B, T, H)` layout: the
/// padding's rows are never computed (on short, unevenly long few-shot batches they are
/// half of the work). Attention gets zero keys and values at padded positions, which its
/// mask gives a probability of exactly 0, as it does to the keys of padding tokens without
/// packing; the final hidden states have zeros in padded rows.
#[derive(Debug)]
pub struct Packing {
    /// `(N,)` int64: the flat indices `b · T + t` of the real tokens.
    rows: Tensor,
    /// The same indices in host memory (for drawing dropout masks of these rows only).
    host_rows: Vec<i64>,
    b: i64,
    t: i64,
}

impl Packing {
    /// From a `(B, T)` 0/1 attention mask; `None` when nothing is padding (packing would only
    /// copy).
    pub fn new(attention_mask: &Tensor) -> Option<Self> {
        let (b, t) = attention_mask.size2().expect("attention mask is (B, T)");
        let mask = Vec::<i64>::try_from(attention_mask.reshape([-1]).to_kind(Kind::Int64).to_device(Device::Cpu))
            .expect("an attention mask converts to integers");
        let host_rows: Vec<i64> = (0..b * t).filter(|&i| mask[i as usize] != 0).collect();
        let rows = Tensor::from_slice(&host_rows).to_device(attention_mask.device());
        (host_rows.len() < mask.len()).then_some(Self { rows, host_rows, b, t })
    }

    /// `(B, T, H)` → `(N, H)`: the real tokens' rows.
    pub fn pack(&self, x: &Tensor) -> Tensor {
        let h = *x.size().last().expect("hidden states have a last dimension");
        x.reshape([self.b * self.t, h]).index_select(0, &self.rows)
    }

    /// `(N, H)` → `(B, T, H)`, zeros in padded rows.
    pub fn unpack(&self, x: &Tensor) -> Tensor {
        let h = x.size()[1];
        Tensor::zeros([self.b * self.t, h], (x.kind(), x.device()))
            .index_copy(0, &self.rows, x)
            .view([self.b, self.t, h])
    }
}

/// A layer's six linear maps and two LayerNorms, each with its checkpoint name.
type Parts<L, N> = ([(&'static str, L); 6], [(&'static str, N); 2]);

/// One post-LN transformer layer (field names are BERT's; [`LayerNames`] maps them to each
/// family's checkpoint names).
#[derive(Debug)]
pub struct Layer {
    /// `attention.self` (MPNet `attention.attn.{q,k,v}`).
    pub attention: SelfAttention,
    /// `attention.output.dense` (MPNet `attention.attn.o`).
    pub attention_output: Linear,
    /// `attention.output.LayerNorm` (MPNet `attention.LayerNorm`).
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: Linear,
    /// `output.dense`.
    pub output: Linear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    act: Activation,
}

impl Layer {
    fn load(w: &mut Weights, cfg: &Config, names: &LayerNames, i: i64) -> Result<Self> {
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let n = |name: &str| format!("encoder.layer.{i}.{name}");
        Ok(Self {
            attention: SelfAttention {
                query: Linear::load(w, &n(names.query), h, h)?,
                key: Linear::load(w, &n(names.key), h, h)?,
                value: Linear::load(w, &n(names.value), h, h)?,
                heads: cfg.num_attention_heads,
                head_dim: cfg.head_dim(),
            },
            attention_output: Linear::load(w, &n(names.attention_output), h, h)?,
            attention_norm: LayerNorm::load(w, &n(names.attention_norm), h, eps)?,
            intermediate: Linear::load(w, &n(names.intermediate), f, h)?,
            output: Linear::load(w, &n(names.output), h, f)?,
            output_norm: LayerNorm::load(w, &n(names.output_norm), h, eps)?,
            act: Activation::parse(&cfg.hidden_act).map_err(Error::Input)?,
        })
    }

    /// The layer's linear maps and LayerNorms under their checkpoint names.
    fn parts<'a>(&'a self, names: &LayerNames) -> Parts<&'a Linear, &'a LayerNorm> {
        (
            [
                (names.query, &self.attention.query),
                (names.key, &self.attention.key),
                (names.value, &self.attention.value),
                (names.attention_output, &self.attention_output),
                (names.intermediate, &self.intermediate),
                (names.output, &self.output),
            ],
            [(names.attention_norm, &self.attention_norm), (names.output_norm, &self.output_norm)],
        )
    }

    /// Mutable [`Layer::parts`].
    fn parts_mut<'a>(&'a mut self, names: &LayerNames) -> Parts<&'a mut Linear, &'a mut LayerNorm> {
        (
            [
                (names.query, &mut self.attention.query),
                (names.key, &mut self.attention.key),
                (names.value, &mut self.attention.value),
                (names.attention_output, &mut self.attention_output),
                (names.intermediate, &mut self.intermediate),
                (names.output, &mut self.output),
            ],
            [(names.attention_norm, &mut self.attention_norm), (names.output_norm, &mut self.output_norm)],
        )
    }

    /// `x: (B, T, H)`, or `(N, H)` real-token rows with `pack` (see [`Packing`]).
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<(&Tensor, &Tensor)>,
        drop: Dropout,
        pack: Option<&Packing>,
    ) -> Tensor {
        let a = self.attention.forward(x, mask, prefix, drop.attention, pack);
        let a = drop.hidden(&self.attention_output.forward(&a), pack);
        let x = self.attention_norm.forward(&(a + x));
        let f = self.act.apply(&self.intermediate.forward(&x));
        let f = drop.hidden(&self.output.forward(&f), pack);
        self.output_norm.forward(&(f + x))
    }
}

#[derive(Debug, Clone, Copy)]
struct Dropout {
    hidden: f64,
    attention: f64,
}

impl Dropout {
    /// Hidden dropout; on packed rows each real token gets the mask values of its row in the
    /// padded batch (only those are drawn), so that a token's mask does not depend on the
    /// packing.
    fn hidden(&self, x: &Tensor, pack: Option<&Packing>) -> Tensor {
        match pack {
            Some(p) => super::dropout::dropout_rows(x, self.hidden, &p.host_rows),
            None => super::dropout::dropout(x, self.hidden),
        }
    }
}

/// A tokenised, padded batch.
#[derive(Debug)]
pub struct Batch {
    /// `(B, T)` int64 token ids.
    pub input_ids: Tensor,
    /// `(B, T)` int64, 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// `(B, T)` int64 segment ids.
    pub token_type_ids: Tensor,
}

impl Batch {
    /// Moves the batch to a device.
    pub fn to(&self, device: Device) -> Batch {
        Batch {
            input_ids: self.input_ids.to(device),
            attention_mask: self.attention_mask.to(device),
            token_type_ids: self.token_type_ids.to(device),
        }
    }

    /// Number of examples.
    pub fn len(&self) -> i64 {
        self.input_ids.size()[0]
    }

    /// True when the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Options for one forward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward {
    /// Apply the checkpoint's hidden and attention dropout (training mode).
    pub dropout: bool,
    /// Position ids of the real tokens when a prefix is present.
    pub positions: Positions,
}

/// The frozen encoder: embeddings and L layers.
#[derive(Debug)]
pub struct Encoder {
    /// The checkpoint's configuration.
    pub config: Config,
    /// BERT, RoBERTa or MPNet.
    pub arch: Arch,
    /// Input embeddings.
    pub embeddings: Embeddings,
    /// Transformer layers.
    pub layers: Vec<Layer>,
    /// MPNet: the relative-position table `(buckets, heads)` shared by all layers.
    pub relative_attention_bias: Option<Tensor>,
    /// One of the weights made trainable ([`Encoder::make_trainable`], [`Encoder::add_lora`]),
    /// if any: tells whether a forward pass computes weight gradients (see
    /// [`Encoder::packs`]).
    trained: Option<Tensor>,
    device: Device,
}

impl Encoder {
    /// Loads `config.json` and `model.safetensors` from a Hugging Face model folder.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(Error::Input(format!(
                "{}: model folder has no config.json (expected a Hugging Face model folder with config.json and model.safetensors)",
                dir.display()
            )));
        }
        let config = Config::from_file(&cfg_path)?;
        let st_path = dir.join(super::load::MODEL_WEIGHTS);
        if !st_path.is_file() {
            return Err(Error::Input(format!(
                "{}: model folder has no model.safetensors (only safetensors weights are read; convert pytorch_model.bin first)",
                dir.display()
            )));
        }
        let mut weights = Weights::read(&st_path, device)?;
        Self::from_weights(config, &mut weights, device)
    }

    /// Builds the encoder from already-read weights (checked against the config).
    ///
    /// The config is validated as [`Config::from_file`] does (the message names the weights'
    /// file, for configs built in memory).
    pub fn from_weights(config: Config, w: &mut Weights, device: Device) -> Result<Self> {
        config.validate().map_err(|e| Error::Input(format!("config for {}: {e}", w.path().display())))?;
        let arch = config.arch().map_err(Error::Input)?;
        w.strip_prefix(arch.checkpoint_prefix());
        let embeddings = Embeddings::load(w, &config, arch)?;
        let names = arch.layer_names();
        let layers =
            (0..config.num_hidden_layers).map(|i| Layer::load(w, &config, &names, i)).collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = match arch {
            Arch::Mpnet => {
                Some(w.take(MPNET_RELATIVE_BIAS, &[config.relative_attention_num_buckets, config.num_attention_heads])?)
            }
            _ => None,
        };
        Ok(Self { config, arch, embeddings, layers, relative_attention_bias, trained: None, device })
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Number of layers L.
    pub fn num_layers(&self) -> i64 {
        self.config.num_hidden_layers
    }

    /// Hidden size H.
    pub fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }

    /// The most real tokens (special tokens included) one input may have when the real
    /// tokens' positions start `shift` places later than in a plain input; 0 when not even
    /// one fits. A longer input would look up a position past the table of
    /// `max_position_embeddings` learned positions.
    ///
    /// `shift` is 0 for a plain input and for a prefix with [`Positions::Unshifted`]; the
    /// prefix length p with [`Positions::Shifted`] (the real tokens take positions after the
    /// prefix, see [`Encoder::forward`]); the prompt length q for prompt tuning
    /// ([`Encoder::embed_prompted`]: positions run over prompt and tokens together).
    ///
    /// - BERT: token t (from 0) has position `t + shift`, so the last of T tokens needs
    ///   `T - 1 + shift < max_position_embeddings`: **max_position_embeddings − shift**. Padding
    ///   takes positions too, but a batch is padded to its longest input only.
    /// - RoBERTa and MPNet: positions count real tokens from the one after the padding index
    ///   (`pad_token_id` for RoBERTa, 1 for MPNet), as Hugging Face's
    ///   `create_position_ids_from_input_ids`; the T-th real token has position
    ///   `padding_idx + T + shift`: **max_position_embeddings − (padding_idx + 1) − shift**
    ///   (514 − 2 = 512 for roberta-base and all-mpnet-base-v2). Padding sits at the padding
    ///   index itself, and a real token whose id is the padding id is counted as padding, so
    ///   the bound is the worst case. MPNet's relative-position bias has no limit of its own
    ///   (distances past 128 share the last bucket).
    ///
    /// See [`Encoder::max_vocab_prefix_len`] for the prefix length `init = vocab` allows.
    pub fn max_tokens(&self, shift: i64) -> i64 {
        let first = first_position(self.arch, self.config.pad_token_id);
        (self.config.max_position_embeddings - first).saturating_sub(shift).max(0)
    }

    /// The longest prefix whose vertices can be initialised from the vocabulary (`init =
    /// vocab`): the p random tokens go through the encoder as one plain input of p tokens,
    /// without special tokens (see [`Encoder::keys_values`] and `init_vertices` in
    /// `subspace.rs`), at positions as if unshifted whatever `positions` says, so
    /// p ≤ [`Encoder::max_tokens`]`(0)`. A run with [`Positions::Shifted`] must moreover keep
    /// its inputs within `max_tokens(p)`.
    pub fn max_vocab_prefix_len(&self) -> i64 {
        self.max_tokens(0)
    }

    /// All weight tensors, with their checkpoint names (unprefixed; each family's own names,
    /// e.g. `encoder.layer.N.attention.attn.q.weight` for MPNet).
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let e = &self.embeddings;
        let mut out: Vec<(String, &Tensor)> = vec![
            ("embeddings.word_embeddings.weight".into(), &e.word_embeddings),
            ("embeddings.position_embeddings.weight".into(), &e.position_embeddings),
        ];
        if let Some(t) = &e.token_type_embeddings {
            out.push(("embeddings.token_type_embeddings.weight".into(), t));
        }
        out.push(("embeddings.LayerNorm.weight".into(), &e.layer_norm.weight));
        out.push(("embeddings.LayerNorm.bias".into(), &e.layer_norm.bias));
        let names = self.arch.layer_names();
        for (i, l) in self.layers.iter().enumerate() {
            let (lins, norms) = l.parts(&names);
            for (n, lin) in lins {
                out.push((format!("encoder.layer.{i}.{n}.weight"), &lin.weight));
                out.push((format!("encoder.layer.{i}.{n}.bias"), &lin.bias));
            }
            for (n, ln) in norms {
                out.push((format!("encoder.layer.{i}.{n}.weight"), &ln.weight));
                out.push((format!("encoder.layer.{i}.{n}.bias"), &ln.bias));
            }
        }
        if let Some(t) = &self.relative_attention_bias {
            out.push((MPNET_RELATIVE_BIAS.into(), t));
        }
        out
    }

    /// Mutable access to every weight tensor, with its checkpoint name (as [`Encoder::named_tensors`]).
    fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let e = &mut self.embeddings;
        let mut out: Vec<(String, &mut Tensor)> = vec![
            ("embeddings.word_embeddings.weight".into(), &mut e.word_embeddings),
            ("embeddings.position_embeddings.weight".into(), &mut e.position_embeddings),
        ];
        if let Some(t) = &mut e.token_type_embeddings {
            out.push(("embeddings.token_type_embeddings.weight".into(), t));
        }
        out.push(("embeddings.LayerNorm.weight".into(), &mut e.layer_norm.weight));
        out.push(("embeddings.LayerNorm.bias".into(), &mut e.layer_norm.bias));
        let names = self.arch.layer_names();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let (lins, norms) = l.parts_mut(&names);
            for (n, lin) in lins {
                out.push((format!("encoder.layer.{i}.{n}.weight"), &mut lin.weight));
                out.push((format!("encoder.layer.{i}.{n}.bias"), &mut lin.bias));
            }
            for (n, ln) in norms {
                out.push((format!("encoder.layer.{i}.{n}.weight"), &mut ln.weight));
                out.push((format!("encoder.layer.{i}.{n}.bias"), &mut ln.bias));
            }
        }
        if let Some(t) = &mut self.relative_attention_bias {
            out.push((MPNET_RELATIVE_BIAS.into(), t));
        }
        out
    }

    /// Runs every dense layer's product in `kind` (bf16), or in fp32 again (`None`). Call it
    /// after choosing what is trained: frozen weights are rounded once, here.
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        for l in &mut self.layers {
            for lin in [
                &mut l.attention.query,
                &mut l.attention.key,
                &mut l.attention.value,
                &mut l.attention_output,
                &mut l.intermediate,
                &mut l.output,
            ] {
                lin.set_product_kind(kind);
            }
        }
    }

    /// Makes the weights whose checkpoint name passes `select` trainable: each becomes a
    /// variable of `path` under its checkpoint name (BitFit: the biases; full fine-tuning:
    /// everything). Returns how many tensors were made trainable.
    pub fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize {
        let (mut count, mut first) = (0, None);
        for (name, t) in self.named_tensors_mut() {
            if select(&name) {
                *t = nested(path, &name).var_copy(name.rsplit('.').next().expect("name"), t);
                first.get_or_insert_with(|| t.shallow_clone());
                count += 1;
            }
        }
        self.trained = self.trained.take().or(first);
        count
    }

    /// Adds LoRA updates of rank `r` (scale `alpha / r`) to the attention projections named
    /// in `targets` (`query`, `key`, `value`, `output`: the roles, whatever the family; for
    /// MPNet they are `attention.attn.{q,k,v,o}`) of every layer, as variables of `path`
    /// under the checkpoint name of the projection + `.lora`.
    pub fn add_lora(
        &mut self,
        path: &tch::nn::Path,
        r: i64,
        alpha: f64,
        targets: &[String],
    ) -> crate::error::Result<()> {
        for t in targets {
            if !["query", "key", "value", "output"].contains(&t.as_str()) {
                return Err(Error::Input(format!(
                    "lora target \"{t}\" is not known (expected query, key, value or output)"
                )));
            }
        }
        let h = self.hidden_size();
        let names = self.arch.layer_names();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for t in targets {
                let (lin, name) = match t.as_str() {
                    "query" => (&mut layer.attention.query, names.query),
                    "key" => (&mut layer.attention.key, names.key),
                    "value" => (&mut layer.attention.value, names.value),
                    _ => (&mut layer.attention_output, names.attention_output),
                };
                let p = nested(path, &format!("encoder.layer.{i}.{name}.lora"));
                let bound = 1.0 / (h as f64).sqrt();
                let lora = Lora {
                    a: p.var("A", &[r, h], tch::nn::Init::Uniform { lo: -bound, up: bound }),
                    b: p.zeros("B", &[h, r]),
                    scale: alpha / r as f64,
                };
                self.trained.get_or_insert_with(|| lora.a.shallow_clone());
                lin.lora = Some(lora);
            }
        }
        Ok(())
    }

    /// Embeds a batch behind a soft prompt `(q, H)` in the word-embedding space (prompt
    /// tuning): positions run over prompt and tokens together. Returns the embeddings
    /// `(B, q+T, H)` and the extended `(B, q+T)` attention mask.
    pub fn embed_prompted(&self, batch: &Batch, prompt: &Tensor, dropout: bool) -> (Tensor, Tensor) {
        let e = &self.embeddings;
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        let q = prompt.size()[0];
        let words = Tensor::embedding(&e.word_embeddings, &batch.input_ids, -1, false, false);
        let words = Tensor::cat(&[prompt.unsqueeze(0).expand([b, q, -1], false), words], 1);
        let mask =
            Tensor::cat(&[Tensor::ones([b, q], (Kind::Int64, self.device)), batch.attention_mask.shallow_clone()], 1);
        let types =
            Tensor::cat(&[Tensor::zeros([b, q], (Kind::Int64, self.device)), batch.token_type_ids.shallow_clone()], 1);
        let pos = match self.arch {
            Arch::Bert => Tensor::arange(q + t, (Kind::Int64, self.device)).unsqueeze(0).expand([b, q + t], true),
            Arch::Roberta | Arch::Mpnet => mask.cumsum(1, Kind::Int64) * &mask + self.padding_idx(),
        };
        let x = e.add_types(words + Tensor::embedding(&e.position_embeddings, &pos, -1, false, false), &types);
        let x = e.layer_norm.forward(&x);
        let x = if dropout && self.config.hidden_dropout_prob > 0.0 {
            super::dropout::dropout(&x, self.config.hidden_dropout_prob)
        } else {
            x
        };
        (x, mask)
    }

    /// The padding index position ids are offset from (RoBERTa: `pad_token_id`; MPNet: 1,
    /// as Hugging Face hard-codes it).
    fn padding_idx(&self) -> i64 {
        match self.arch {
            Arch::Mpnet => MPNET_PADDING_IDX,
            _ => self.config.pad_token_id,
        }
    }

    /// Position ids `(B, T)` for the real tokens, `offset` = prefix length when shifted.
    fn position_ids(&self, batch: &Batch, offset: i64) -> Tensor {
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        match self.arch {
            Arch::Bert => (Tensor::arange(t, (Kind::Int64, self.device)) + offset).unsqueeze(0).expand([b, t], true),
            Arch::Roberta | Arch::Mpnet => {
                // As HF `create_position_ids_from_input_ids`: count real tokens after padding_idx.
                let pad = self.padding_idx();
                let m = batch.input_ids.ne(pad).to_kind(Kind::Int64);
                (m.cumsum(1, Kind::Int64) + offset) * &m + pad
            }
        }
    }

    /// Embeds a batch: `(B, T, H)`.
    pub fn embed(&self, batch: &Batch, position_offset: i64, dropout: bool) -> Tensor {
        let e = &self.embeddings;
        let pos = self.position_ids(batch, position_offset);
        let x = Tensor::embedding(&e.word_embeddings, &batch.input_ids, -1, false, false)
            + Tensor::embedding(&e.position_embeddings, &pos, -1, false, false);
        let x = e.layer_norm.forward(&e.add_types(x, &batch.token_type_ids));
        if dropout && self.config.hidden_dropout_prob > 0.0 {
            super::dropout::dropout(&x, self.config.hidden_dropout_prob)
        } else {
            x
        }
    }

    /// Runs the encoder and returns the final hidden states `(B, T, H)`.
    ///
    /// `prefix`, when given, is `(L, 2, B, p, H)` (or `(L, 2, 1, p, H)`, broadcast over the
    /// batch): for layer l, `prefix[l][0]` are the keys and `prefix[l][1]` the values put in
    /// front of the projected keys and values of that layer. A length-0 prefix is the same
    /// as none. For MPNet the relative-position bias covers the real tokens only: the prefix
    /// columns of the attention scores get no bias (see [`Encoder::run_layers`]).
    pub fn forward(&self, batch: &Batch, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        self.forward_embedded(
            &self.embed(batch, self.offset(prefix, opts), opts.dropout),
            &batch.attention_mask,
            prefix,
            opts,
        )
    }

    fn offset(&self, prefix: Option<&Tensor>, opts: Forward) -> i64 {
        match (prefix, opts.positions) {
            (Some(p), Positions::Shifted) => p.size()[3],
            _ => 0,
        }
    }

    /// Whether [`Encoder::forward`] runs the token-wise work on real tokens only ([`Packing`]):
    /// always, except in a pass that computes gradients for trained encoder weights (full
    /// fine-tuning, BitFit, LoRA). Their gradients sum over token rows, and a sum over fewer
    /// rows, even when the rows left out are exactly zero, is blocked differently by the
    /// matrix-product kernels and rounds differently; those passes keep the padded layout so
    /// that training numbers stay what they were. Every other pass (inference; training a
    /// prefix, a subspace, a prompt or a head) gives the same numbers packed or not, bit for
    /// bit where the product kernel computes each output row the same way whatever the
    /// number of rows (MKL on an AMD Zen 4), and up to rounding (a few 1e-6) where it does
    /// not (MKL on an Intel Xeon with AMX).
    pub fn packs(&self) -> bool {
        // A product with a trained weight requires a gradient only where gradients are on.
        !self.trained.as_ref().is_some_and(|w| (w.reshape([-1]).narrow(0, 0, 1) * 1.0).requires_grad())
    }

    /// Runs the layers on already-embedded inputs `x: (B, T, H)` (used by prompt tuning,
    /// which puts trainable vectors in front of the input embeddings).
    pub fn forward_embedded(
        &self,
        x: &Tensor,
        attention_mask: &Tensor,
        prefix: Option<&Tensor>,
        opts: Forward,
    ) -> Tensor {
        let (b, _t, _h) = x.size3().expect("embeddings are (B, T, H)");
        let p = prefix.map(|p| p.size()[3]).unwrap_or(0);
        if let Some(pr) = prefix {
            let s = pr.size();
            assert!(
                s.len() == 5
                    && s[0] == self.num_layers()
                    && s[1] == 2
                    && (s[2] == b || s[2] == 1)
                    && s[4] == self.hidden_size(),
                "prefix must be (L={}, 2, B={b} or 1, p, H={}), got {s:?}",
                self.num_layers(),
                self.hidden_size()
            );
        }
        let pack = if self.packs() { Packing::new(attention_mask) } else { None };
        self.run_layers_packed(x, &prefixed_additive_mask(attention_mask, p), prefix, opts, pack.as_ref())
    }

    /// Runs the layers on embedded inputs `x: (B, T, H)` with an explicit additive mask
    /// `(B, 1, 1 or T, p+T)` (0 = attend, very negative = masked) and an optional prefix
    /// `(L, 2, B or 1, p, H)`. [`Encoder::forward`] is the usual entry point; this one lets
    /// callers use any attention pattern.
    ///
    /// MPNet: the relative-position bias of the T real tokens (positions 0..T-1 among
    /// themselves, as Hugging Face computes it, whatever the padding) is added to the
    /// real-token columns of the scores; the p prefix columns get no bias (a prefix has no
    /// position), in both `positions` modes. The bias and the mask travel together as one
    /// additive float mask `(B, heads, T, p+T)` into scaled-dot-product attention.
    pub fn run_layers(&self, x: &Tensor, additive: &Tensor, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        self.run_layers_packed(x, additive, prefix, opts, None)
    }

    /// [`Encoder::run_layers`], with the token-wise work on the real tokens of `pack` only.
    fn run_layers_packed(
        &self,
        x: &Tensor,
        additive: &Tensor,
        prefix: Option<&Tensor>,
        opts: Forward,
        pack: Option<&Packing>,
    ) -> Tensor {
        let (b, t, _h) = x.size3().expect("embeddings are (B, T, H)");
        let p = prefix.map(|p| p.size()[3]).unwrap_or(0);
        let biased = self.with_position_bias(additive, t, p);
        let additive = biased.as_ref().unwrap_or(additive);
        let drop = Dropout {
            hidden: if opts.dropout { self.config.hidden_dropout_prob } else { 0.0 },
            attention: if opts.dropout { self.config.attention_probs_dropout_prob } else { 0.0 },
        };
        let mut h = match pack {
            Some(p) => p.pack(x),
            None => x.shallow_clone(),
        };
        // One unbind per level instead of a select per layer: a select's backward fills a
        // zero tensor of the whole prefix's size for each layer, unbind's backward stacks once.
        let layer_prefixes: Vec<Option<Tensor>> = match prefix {
            Some(pr) if p > 0 => pr.unbind(0).into_iter().map(Some).collect(),
            _ => self.layers.iter().map(|_| None).collect(),
        };
        for (layer, pl) in self.layers.iter().zip(layer_prefixes) {
            let kv = match pl {
                Some(pl) => {
                    let [pk, pv]: [Tensor; 2] = pl.unbind(0).try_into().expect("a prefix layer holds keys and values");
                    if pk.size()[0] != b {
                        Some((pk.expand([b, p, -1], false), pv.expand([b, p, -1], false)))
                    } else {
                        Some((pk, pv))
                    }
                }
                None => None,
            };
            h = layer.forward(&h, additive, kv.as_ref().map(|(k, v)| (k, v)), drop, pack);
        }
        match pack {
            Some(p) => p.unpack(&h),
            None => h,
        }
    }

    /// Per-layer projected keys and values of `batch` as a prefix `(L, 2, B, T, H)`:
    /// running another input with this prefix is the same as attending to `batch`'s tokens.
    pub fn keys_values(&self, batch: &Batch) -> Tensor {
        let x = self.embed(batch, 0, false);
        let additive = prefixed_additive_mask(&batch.attention_mask, 0);
        let additive = self.with_position_bias(&additive, x.size()[1], 0).unwrap_or(additive);
        let drop = Dropout { hidden: 0.0, attention: 0.0 };
        let mut h = x;
        let mut kvs = Vec::new();
        for layer in &self.layers {
            let k = layer.attention.key.forward(&h);
            let v = layer.attention.value.forward(&h);
            kvs.push(Tensor::stack(&[k, v], 0));
            h = layer.forward(&h, &additive, None, drop, None);
        }
        Tensor::stack(&kvs, 0)
    }

    /// MPNet's relative-position bias `(1, heads, T, T)` for T tokens at positions 0..T-1
    /// (`bias[h, i, j]` = table[bucket(j - i), h]); `None` for BERT and RoBERTa.
    pub fn relative_position_bias(&self, t: i64) -> Option<Tensor> {
        let table = self.relative_attention_bias.as_ref()?;
        let pos = Tensor::arange(t, (Kind::Int64, self.device));
        let relative = pos.unsqueeze(0) - pos.unsqueeze(1); // memory - context
        let buckets = relative_position_bucket(&relative);
        Some(Tensor::embedding(table, &buckets, -1, false, false).permute([2, 0, 1]).unsqueeze(0))
    }

    /// `additive` plus MPNet's relative-position bias on the last T columns (the first p,
    /// a prefix's, get none); `None` when the family has no such bias.
    fn with_position_bias(&self, additive: &Tensor, t: i64, p: i64) -> Option<Tensor> {
        let bias = self.relative_position_bias(t)?;
        let bias = if p > 0 {
            let heads = self.config.num_attention_heads;
            Tensor::cat(&[Tensor::zeros([1, heads, t, p], (bias.kind(), self.device)), bias], 3)
        } else {
            bias
        };
        Some(additive + bias)
    }
}

/// Hugging Face `MPNetEncoder.relative_position_bucket` (32 buckets, max distance 128), with
/// the same float32 operations so that the bucket boundaries round the same way: half the
/// buckets for keys before the query, half after; distances below 8 get their own bucket,
/// larger ones share log-spaced buckets up to 128.
fn relative_position_bucket(relative: &Tensor) -> Tensor {
    let half = MPNET_BUCKETS / 2;
    let max_exact = half / 2;
    let n = relative.neg();
    let ret = n.lt(0).to_kind(Kind::Int64) * half;
    let n = n.abs();
    let is_small = n.lt(max_exact);
    let large = ((n.to_kind(Kind::Float) / max_exact).log() / (MPNET_MAX_DISTANCE as f64 / max_exact as f64).ln()
        * (half - max_exact))
        .to_kind(Kind::Int64)
        + max_exact;
    let large = large.clamp_max(half - 1);
    ret + n.where_self(&is_small, &large)
}

/// The path `a / b / c` for a dotted name `a.b.c.leaf` (the leaf excluded).
fn nested<'a>(path: &tch::nn::Path<'a>, name: &str) -> tch::nn::Path<'a> {
    let parts: Vec<&str> = name.split('.').collect();
    let mut p = path.sub(parts[0]);
    let upto = if name.ends_with(".weight")
        || name.ends_with(".bias")
        || name.ends_with(".gamma")
        || name.ends_with(".beta")
    {
        parts.len() - 1
    } else {
        parts.len()
    };
    for part in &parts[1..upto] {
        p = p.sub(*part);
    }
    p
}

/// Additive attention mask from a 0/1 mask of any shape: 0 where attended, the most negative
/// float elsewhere (as Hugging Face does).
pub fn additive(allowed: &Tensor) -> Tensor {
    (allowed.to_kind(Kind::Float).neg() + 1.0) * f64::from(f32::MIN)
}

/// The additive mask `(B, 1, 1, p+T)` that [`Encoder::forward`] gives the layers: the `(B, T)`
/// 0/1 attention mask after `p` prefix columns, which every token attends.
pub fn prefixed_additive_mask(attention_mask: &Tensor, p: i64) -> Tensor {
    let b = attention_mask.size()[0];
    let mask = attention_mask.to_kind(Kind::Float);
    let mask = if p > 0 { Tensor::cat(&[Tensor::ones([b, p], (Kind::Float, mask.device())), mask], 1) } else { mask };
    additive(&mask).view([b, 1, 1, -1])
}

/// Pooling of the final hidden states into one vector per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real (non-padding) tokens.
    Mean,
    /// The first token ([CLS] / `<s>`).
    Cls,
    /// The last real token of a right-padded batch (decoders).
    Last,
}

impl Pooling {
    /// Pools `(B, T, H)` hidden states with the `(B, T)` attention mask into `(B, H)`.
    pub fn pool(self, hidden: &Tensor, attention_mask: &Tensor) -> Tensor {
        match self {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Last => {
                let h = hidden.size()[2];
                let last = (attention_mask.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0);
                hidden.gather(1, &last.view([-1, 1, 1]).expand([-1, 1, h], false), false).squeeze_dim(1)
            }
            Pooling::Mean => {
                let m = attention_mask.to_kind(hidden.kind()).unsqueeze(-1);
                (hidden * &m).sum_dim_intlist(1, false, None) / m.sum_dim_intlist(1, false, None).clamp_min(1.0)
            }
        }
    }

    /// The pooling a model folder declares (sentence-transformers `1_Pooling/config.json`),
    /// if any.
    pub fn declared(dir: &Path) -> Option<Pooling> {
        let modules: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("modules.json")).ok()?).ok()?;
        let pool_dir = modules.as_array()?.iter().find_map(|m| {
            let ty = m.get("type")?.as_str()?;
            ty.ends_with("Pooling").then(|| m.get("path")?.as_str().map(str::to_string))?
        })?;
        let cfg: HashMap<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(pool_dir).join("config.json")).ok()?).ok()?;
        let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if on("pooling_mode_mean_tokens") {
            Some(Pooling::Mean)
        } else if on("pooling_mode_cls_token") {
            Some(Pooling::Cls)
        } else {
            None
        }
    }

    /// `auto` resolution: the declared pooling, else the first token.
    pub fn auto(dir: &Path) -> Pooling {
        Self::declared(dir).unwrap_or(Pooling::Cls)
    }
}
