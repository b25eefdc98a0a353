//! The `embeddings` module: word, position and token-type embeddings, then LayerNorm.

use tch::{Device, Kind, Tensor};

use super::config::{Arch, Config};
use super::linear::LayerNorm;
use super::names::Names;
use super::Batch;
use crate::error::Result;
use crate::model::load::Weights;

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
    /// The padding index position ids are offset from (RoBERTa: `pad_token_id`; MPNet: 1, as
    /// Hugging Face hard-codes it); `None` for BERT, whose positions are 0..T-1.
    padding_idx: Option<i64>,
    /// The checkpoint's hidden dropout (applied only when asked for).
    hidden_dropout: f64,
    device: Device,
}

impl Embeddings {
    /// Takes the embeddings' tensors (named by `arch`'s table) out of `w`.
    pub(super) fn load(w: &mut Weights, cfg: &Config, arch: Arch, device: Device) -> Result<Self> {
        let names = arch.names();
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: w.take(names.word_embeddings, &[cfg.vocab_size, h])?,
            position_embeddings: w.take(names.position_embeddings, &[cfg.max_position_embeddings, h])?,
            token_type_embeddings: match names.token_type_embeddings {
                None => None,
                Some(n) => Some(w.take(n, &[cfg.type_vocab_size, h])?),
            },
            layer_norm: LayerNorm::load(w, names.embeddings_norm, h, cfg.layer_norm_eps)?,
            padding_idx: arch.padding_idx(cfg.pad_token_id),
            hidden_dropout: cfg.hidden_dropout_prob,
            device,
        })
    }

    /// The names and shapes of the embeddings' tensors under `cfg`, in checkpoint order.
    pub(super) fn shapes(cfg: &Config, names: &Names) -> Vec<(String, Vec<i64>)> {
        let h = cfg.hidden_size;
        let mut out: Vec<(String, Vec<i64>)> = vec![
            (names.word_embeddings.into(), vec![cfg.vocab_size, h]),
            (names.position_embeddings.into(), vec![cfg.max_position_embeddings, h]),
        ];
        if let Some(n) = names.token_type_embeddings {
            out.push((n.into(), vec![cfg.type_vocab_size, h]));
        }
        out.push((format!("{}.weight", names.embeddings_norm), vec![h]));
        out.push((format!("{}.bias", names.embeddings_norm), vec![h]));
        out
    }

    /// The embeddings' tensors with their checkpoint names, in checkpoint order.
    pub(super) fn named_tensors(&self, names: &Names) -> Vec<(String, &Tensor)> {
        let mut out: Vec<(String, &Tensor)> = vec![
            (names.word_embeddings.into(), &self.word_embeddings),
            (names.position_embeddings.into(), &self.position_embeddings),
        ];
        if let (Some(n), Some(t)) = (names.token_type_embeddings, &self.token_type_embeddings) {
            out.push((n.into(), t));
        }
        out.push((format!("{}.weight", names.embeddings_norm), &self.layer_norm.weight));
        out.push((format!("{}.bias", names.embeddings_norm), &self.layer_norm.bias));
        out
    }

    /// Mutable [`Embeddings::named_tensors`].
    pub(super) fn named_tensors_mut(&mut self, names: &Names) -> Vec<(String, &mut Tensor)> {
        let mut out: Vec<(String, &mut Tensor)> = vec![
            (names.word_embeddings.into(), &mut self.word_embeddings),
            (names.position_embeddings.into(), &mut self.position_embeddings),
        ];
        if let (Some(n), Some(t)) = (names.token_type_embeddings, &mut self.token_type_embeddings) {
            out.push((n.into(), t));
        }
        out.push((format!("{}.weight", names.embeddings_norm), &mut self.layer_norm.weight));
        out.push((format!("{}.bias", names.embeddings_norm), &mut self.layer_norm.bias));
        out
    }

    /// Adds the token-type embeddings of `types` to `x` (nothing for MPNet).
    fn add_types(&self, x: Tensor, types: &Tensor) -> Tensor {
        match &self.token_type_embeddings {
            Some(t) => x + Tensor::embedding(t, types, -1, false, false),
            None => x,
        }
    }

    /// The hidden dropout, when asked for and the checkpoint has one.
    fn dropout(&self, x: Tensor, dropout: bool) -> Tensor {
        if dropout && self.hidden_dropout > 0.0 {
            crate::model::dropout::dropout(&x, self.hidden_dropout)
        } else {
            x
        }
    }

    /// Position ids `(B, T)` for the real tokens, `offset` = prefix length when shifted.
    fn position_ids(&self, batch: &Batch, offset: i64) -> Tensor {
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        match self.padding_idx {
            None => (Tensor::arange(t, (Kind::Int64, self.device)) + offset).unsqueeze(0).expand([b, t], true),
            Some(pad) => {
                // As HF `create_position_ids_from_input_ids`: count real tokens after padding_idx.
                let m = batch.input_ids.ne(pad).to_kind(Kind::Int64);
                (m.cumsum(1, Kind::Int64) + offset) * &m + pad
            }
        }
    }

    /// Embeds a batch: `(B, T, H)` (see [`super::Encoder::embed`]).
    pub fn forward(&self, batch: &Batch, position_offset: i64, dropout: bool) -> Tensor {
        let pos = self.position_ids(batch, position_offset);
        let x = Tensor::embedding(&self.word_embeddings, &batch.input_ids, -1, false, false)
            + Tensor::embedding(&self.position_embeddings, &pos, -1, false, false);
        let x = self.layer_norm.forward(&self.add_types(x, &batch.token_type_ids));
        self.dropout(x, dropout)
    }

    /// Embeds a batch behind a soft prompt `(q, H)` (see [`super::Encoder::embed_prompted`]):
    /// the embeddings `(B, q+T, H)` and the extended `(B, q+T)` attention mask.
    pub fn forward_prompted(&self, batch: &Batch, prompt: &Tensor, dropout: bool) -> (Tensor, Tensor) {
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        let q = prompt.size()[0];
        let words = Tensor::embedding(&self.word_embeddings, &batch.input_ids, -1, false, false);
        let words = Tensor::cat(&[prompt.unsqueeze(0).expand([b, q, -1], false), words], 1);
        let mask =
            Tensor::cat(&[Tensor::ones([b, q], (Kind::Int64, self.device)), batch.attention_mask.shallow_clone()], 1);
        let types =
            Tensor::cat(&[Tensor::zeros([b, q], (Kind::Int64, self.device)), batch.token_type_ids.shallow_clone()], 1);
        let pos = match self.padding_idx {
            None => Tensor::arange(q + t, (Kind::Int64, self.device)).unsqueeze(0).expand([b, q + t], true),
            Some(pad) => mask.cumsum(1, Kind::Int64) * &mask + pad,
        };
        let x = self.add_types(words + Tensor::embedding(&self.position_embeddings, &pos, -1, false, false), &types);
        let x = self.layer_norm.forward(&x);
        (self.dropout(x, dropout), mask)
    }
}
