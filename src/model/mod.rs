//! The frozen backbones (BERT-like encoders, decoder-only LLMs), their checkpoint loaders
//! and tokenizers.

pub mod backbone;
pub mod bert;
pub mod decoder;
pub mod dropout;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod hf_decoder;
pub mod load;
pub mod packing;
pub mod tokenizer;

pub use backbone::Backbone;
pub use bert::{
    additive, prefixed_additive_mask, Arch, Batch, Config, Encoder, Forward, LayerNames, Packing, Pooling, Positions,
};
pub use decoder::Decoder;
pub use tokenizer::{check_vocab, TextTokenizer};
