//! A frozen BERT / RoBERTa / MPNet encoder (post-LayerNorm) whose every attention layer
//! accepts a per-example deep prefix: trainable keys and values placed in front of the
//! projected keys and values of the real tokens.
//!
//! The files mirror the checkpoint's module tree (`embeddings`, `encoder.layer.N` with its
//! `attention` and feed-forward parts), each module's loading beside its forward pass; every
//! tensor name comes from one table per family ([`Arch::names`], in `names.rs`). Weights
//! are plain tensors without `requires_grad`: no gradient is ever computed for them unless
//! [`Encoder::make_trainable`] or [`Encoder::add_lora`] asks for trainable parameters.
//!
//! The three families share one layer (the same post-LN math); MPNet differs in its
//! embeddings (no token types, RoBERTa-style positions) and in a bucketed relative-position
//! bias added to the attention scores (see [`Encoder::relative_position_bias`]).

mod attention;
mod config;
mod embeddings;
mod layer;
mod linear;
mod names;
mod pooling;
mod trainable;

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

pub use super::packing::Packing;
pub use attention::{additive, prefixed_additive_mask, SelfAttention};
pub use config::{Arch, Config, MAX_LAYERS};
pub use embeddings::Embeddings;
pub use layer::Layer;
pub use linear::{LayerNorm, Linear, Lora};
pub use names::{LayerNames, Names, MPNET_RELATIVE_BIAS};
pub use pooling::Pooling;

use layer::Dropout;

use crate::error::{Error, Result};
use crate::model::load::Weights;

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
    /// The `config.json` of an encoder folder, or an error saying what `--model` takes.
    pub fn config_path(dir: &Path) -> Result<PathBuf> {
        let path = dir.join("config.json");
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Input(format!(
                "{}: model folder has no config.json (expected a .gguf file, or a Hugging Face model folder with config.json and model.safetensors)",
                dir.display()
            )))
        }
    }

    /// Loads `config.json` and `model.safetensors` from a Hugging Face model folder.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Self::load_with(dir, Config::from_file(&Self::config_path(dir)?)?, device)
    }

    /// [`Encoder::load`] with the folder's `config.json` already read.
    pub fn load_with(dir: &Path, config: Config, device: Device) -> Result<Self> {
        let st_path = dir.join(crate::model::load::MODEL_WEIGHTS);
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
        let embeddings = Embeddings::load(w, &config, arch, device)?;
        let names = arch.names();
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(w, &config, &names.layer, &names.layer_prefix(i)))
            .collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = match names.relative_attention_bias {
            Some(n) => Some(w.take(n, &[config.relative_attention_num_buckets, config.num_attention_heads])?),
            None => None,
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
        let first = self.arch.first_position(self.config.pad_token_id);
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
        let names = self.arch.names();
        let mut out = self.embeddings.named_tensors(names);
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(l.named_tensors(&names.layer, &names.layer_prefix(i)));
        }
        if let (Some(n), Some(t)) = (names.relative_attention_bias, &self.relative_attention_bias) {
            out.push((n.into(), t));
        }
        out
    }

    /// Embeds a batch behind a soft prompt `(q, H)` in the word-embedding space (prompt
    /// tuning): positions run over prompt and tokens together. Returns the embeddings
    /// `(B, q+T, H)` and the extended `(B, q+T)` attention mask.
    pub fn embed_prompted(&self, batch: &Batch, prompt: &Tensor, dropout: bool) -> (Tensor, Tensor) {
        self.embeddings.forward_prompted(batch, prompt, dropout)
    }

    /// Embeds a batch: `(B, T, H)`.
    pub fn embed(&self, batch: &Batch, position_offset: i64, dropout: bool) -> Tensor {
        self.embeddings.forward(batch, position_offset, dropout)
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
        Some(attention::relative_position_bias(table, t, self.device))
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
