//! The seam between the methods and the frozen model: what a method may ask of a backbone,
//! whatever its family (the BERT-like [`Encoder`], the decoder-only [`Decoder`]).
//!
//! A method adds a prefix (per-layer keys and values), a prompt (vectors in front of the
//! token embeddings) or trainable weights (LoRA, BitFit, full fine-tuning) to the backbone,
//! and reads one feature vector per example from it: the pooled hidden states of an encoder,
//! the last real token's final hidden state of a decoder.

use tch::{Device, Kind, Tensor};

use super::bert::{Batch, Encoder, Forward};
use super::decoder::Decoder;
use crate::error::Result;

/// A frozen pretrained model that methods adapt.
pub trait Backbone {
    /// The device its weights live on.
    fn device(&self) -> Device;
    /// Number of layers L (a deep prefix has one set of keys and values per layer).
    fn num_layers(&self) -> i64;
    /// Hidden size H (the width of the features a head reads).
    fn hidden_size(&self) -> i64;
    /// Width of one prefix position's key (and value) in one layer: H for an encoder,
    /// key/value heads × head dimension for a decoder with grouped-query attention.
    fn prefix_width(&self) -> i64;
    /// Rows of the token embedding table.
    fn vocab_size(&self) -> i64;
    /// The token embedding table `(vocab, H)` (prompt tuning starts from its rows).
    fn word_embeddings(&self) -> &Tensor;
    /// Per-layer keys and values of `batch` `(L, 2, B, T, W)`, as a prefix holds them.
    fn keys_values(&self, batch: &Batch) -> Tensor;
    /// Final hidden states `(B, T, H)` of a batch, with an optional prefix `(L, 2, B or 1, p, W)`.
    fn forward(&self, batch: &Batch, prefix: Option<&Tensor>, opts: Forward) -> Tensor;
    /// Final hidden states `(B, T, H)` of the real tokens of a batch run behind a soft prompt
    /// `(q, H)` (prompt tuning), with an optional prefix.
    fn forward_prompted(&self, batch: &Batch, prompt: &Tensor, prefix: Option<&Tensor>, opts: Forward) -> Tensor;
    /// The language-model output rows `(n, H)` of token ids (label words); `None` for an
    /// encoder, which has no language-model head.
    fn output_rows(&self, ids: &[i64]) -> Option<Tensor>;
    /// The whole language-model output projection `(vocab, H)`; `None` for an encoder.
    fn output_weight(&self) -> Option<&Tensor>;
    /// The most real tokens one input may have when its positions start `shift` places later.
    fn max_tokens(&self, shift: i64) -> i64;
    /// Adds LoRA updates of rank `r` to the attention projections named in `targets`
    /// (`query`, `key`, `value`, `output`), as variables of `path`.
    fn add_lora(&mut self, path: &tch::nn::Path, r: i64, alpha: f64, targets: &[String]) -> Result<()>;
    /// Makes the weights whose checkpoint name passes `select` trainable (variables of
    /// `path`); returns how many.
    fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize;
    /// Runs the dense layers' products in `kind` (bf16), or in fp32 again (`None`); call it
    /// after choosing what is trained.
    fn set_product_kind(&mut self, kind: Option<Kind>);
    /// The encoder, for what only encoders have (PEFT export, the FLOP model).
    fn as_encoder(&self) -> Option<&Encoder> {
        None
    }
    /// The decoder, for what only decoders have.
    fn as_decoder(&self) -> Option<&Decoder> {
        None
    }
}

impl Backbone for Encoder {
    fn device(&self) -> Device {
        Encoder::device(self)
    }
    fn num_layers(&self) -> i64 {
        Encoder::num_layers(self)
    }
    fn hidden_size(&self) -> i64 {
        Encoder::hidden_size(self)
    }
    fn prefix_width(&self) -> i64 {
        Encoder::hidden_size(self)
    }
    fn vocab_size(&self) -> i64 {
        self.config.vocab_size
    }
    fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word_embeddings
    }
    fn keys_values(&self, batch: &Batch) -> Tensor {
        Encoder::keys_values(self, batch)
    }
    fn forward(&self, batch: &Batch, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        Encoder::forward(self, batch, prefix, opts)
    }
    fn forward_prompted(&self, batch: &Batch, prompt: &Tensor, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        let (x, mask) = self.embed_prompted(batch, prompt, opts.dropout);
        let hidden = self.forward_embedded(&x, &mask, prefix, opts);
        let (q, t) = (prompt.size()[0], batch.input_ids.size()[1]);
        hidden.narrow(1, q, t)
    }
    fn output_rows(&self, _ids: &[i64]) -> Option<Tensor> {
        None
    }
    fn output_weight(&self) -> Option<&Tensor> {
        None
    }
    fn max_tokens(&self, shift: i64) -> i64 {
        Encoder::max_tokens(self, shift)
    }
    fn add_lora(&mut self, path: &tch::nn::Path, r: i64, alpha: f64, targets: &[String]) -> Result<()> {
        Encoder::add_lora(self, path, r, alpha, targets)
    }
    fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize {
        Encoder::make_trainable(self, path, select)
    }
    fn set_product_kind(&mut self, kind: Option<Kind>) {
        Encoder::set_product_kind(self, kind)
    }
    fn as_encoder(&self) -> Option<&Encoder> {
        Some(self)
    }
}

impl Backbone for Decoder {
    fn device(&self) -> Device {
        Decoder::device(self)
    }
    fn num_layers(&self) -> i64 {
        self.config.layers
    }
    fn hidden_size(&self) -> i64 {
        self.config.hidden
    }
    fn prefix_width(&self) -> i64 {
        self.kv_width()
    }
    fn vocab_size(&self) -> i64 {
        self.config.vocab
    }
    fn word_embeddings(&self) -> &Tensor {
        &self.embed
    }
    fn keys_values(&self, batch: &Batch) -> Tensor {
        Decoder::keys_values(self, batch)
    }
    fn forward(&self, batch: &Batch, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        Decoder::forward(self, batch, prefix, opts)
    }
    fn forward_prompted(&self, batch: &Batch, prompt: &Tensor, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        let q = prompt.size()[0];
        let x = Tensor::cat(&[prompt.unsqueeze(0).expand([b, q, -1], false), self.embed_ids(&batch.input_ids)], 1);
        let mask =
            Tensor::cat(&[Tensor::ones([b, q], (Kind::Int64, self.device())), batch.attention_mask.shallow_clone()], 1);
        self.forward_embedded(&x, &mask, prefix, opts).narrow(1, q, t)
    }
    fn output_rows(&self, ids: &[i64]) -> Option<Tensor> {
        let idx = Tensor::from_slice(ids).to(self.device());
        Some(self.output_weight().index_select(0, &idx))
    }
    fn output_weight(&self) -> Option<&Tensor> {
        Some(Decoder::output_weight(self))
    }
    fn max_tokens(&self, shift: i64) -> i64 {
        (self.config.context - shift).max(0)
    }
    fn add_lora(&mut self, path: &tch::nn::Path, r: i64, alpha: f64, targets: &[String]) -> Result<()> {
        Decoder::add_lora(self, path, r, alpha, targets)
    }
    fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize {
        Decoder::make_trainable(self, path, select)
    }
    fn set_product_kind(&mut self, kind: Option<Kind>) {
        Decoder::set_product_kind(self, kind)
    }
    fn as_decoder(&self) -> Option<&Decoder> {
        Some(self)
    }
}
