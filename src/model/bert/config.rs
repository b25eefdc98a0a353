//! The encoder's configuration: the subset of a Hugging Face `config.json` it reads, and the
//! architecture family it names.

use std::path::Path;

use serde::Deserialize;

use super::attention::MPNET_BUCKETS;
use super::embeddings::Embeddings;
use super::layer::{Activation, Layer};
use super::names::{LayerNames, Names, BERT, MPNET, ROBERTA};
use crate::error::{Error, Result};

/// Which family a checkpoint belongs to: decides position ids and tensor names.
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

/// MPNet's padding index for position ids (hard-coded to 1 in Hugging Face).
const MPNET_PADDING_IDX: i64 = 1;
/// The most layers a `config.json` may declare (the largest released encoders have 48).
pub const MAX_LAYERS: i64 = 1000;

impl Arch {
    /// The checkpoint names of the family's tensors (its one table of names).
    pub fn names(self) -> &'static Names {
        match self {
            Arch::Bert => &BERT,
            Arch::Roberta => &ROBERTA,
            Arch::Mpnet => &MPNET,
        }
    }

    /// The name prefix a task-model checkpoint puts before the encoder's tensors.
    pub fn checkpoint_prefix(self) -> &'static str {
        self.names().checkpoint_prefix
    }

    /// The checkpoint names of a layer's sub-modules.
    pub fn layer_names(self) -> LayerNames {
        self.names().layer
    }

    /// The padding index position ids are offset from: `None` for BERT (positions 0..T-1);
    /// RoBERTa's `pad_token_id`; 1 for MPNet whatever the config says, as Hugging Face
    /// hard-codes it.
    pub(super) fn padding_idx(self, pad_token_id: i64) -> Option<i64> {
        match self {
            Arch::Bert => None,
            Arch::Roberta => Some(pad_token_id),
            Arch::Mpnet => Some(MPNET_PADDING_IDX),
        }
    }

    /// The position id of the first real token of an input whose positions are not shifted:
    /// 0 for BERT; for RoBERTa and MPNet the one after the padding index.
    pub(super) fn first_position(self, pad_token_id: i64) -> i64 {
        self.padding_idx(pad_token_id).map_or(0, |p| p + 1)
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
        self.parameter_shapes(Arch::Bert)
    }

    /// The names and shapes of an `arch` encoder's tensors under this config, in the order of
    /// [`super::Encoder::named_tensors`].
    pub fn parameter_shapes(&self, arch: Arch) -> Vec<(String, Vec<i64>)> {
        let names = arch.names();
        let mut shapes = Embeddings::shapes(self, names);
        for l in 0..self.num_hidden_layers {
            shapes.extend(Layer::shapes(self, &names.layer, &names.layer_prefix(l)));
        }
        if let Some(n) = names.relative_attention_bias {
            shapes.push((n.into(), vec![self.relative_attention_num_buckets, self.num_attention_heads]));
        }
        shapes
    }

    /// Reads and validates `config.json` (see [`Config::validate`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // The architecture first: another model's config.json (a Phi-3 or GPT-2 folder, say)
        // lacks the keys below, and "missing field" would hide what is wrong with it.
        #[derive(Deserialize)]
        struct ModelType {
            model_type: Option<String>,
        }
        if let Ok(ModelType { model_type: Some(t) }) = serde_json::from_str(&text) {
            arch(&t).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        }
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
        let first = arch.first_position(self.pad_token_id);
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
        arch(&self.model_type)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
}

/// The encoder architecture family of a `config.json` `model_type`; anything else is refused
/// with what the tool loads (the decoder types load from their own folder test, before this).
fn arch(model_type: &str) -> std::result::Result<Arch, String> {
    match model_type {
        "bert" => Ok(Arch::Bert),
        "roberta" | "xlm-roberta" => Ok(Arch::Roberta),
        "mpnet" => Ok(Arch::Mpnet),
        other => Err(format!(
            "unsupported architecture model_type \"{other}\" (encoders: bert, roberta, xlm-roberta, mpnet; decoder LLMs: {}, or a GGUF file of the llama, qwen2 or gemma3 architecture)",
            crate::model::hf_decoder::MODEL_TYPES.join(", ")
        )),
    }
}
