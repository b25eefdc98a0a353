//! The frozen encoder, its checkpoint loader and its tokenizer.

pub mod bert;
pub mod dropout;
pub mod load;
pub mod tokenizer;

pub use bert::{
    additive, prefixed_additive_mask, Arch, Batch, Config, Encoder, Forward, LayerNames, Packing, Pooling, Positions,
};
pub use tokenizer::{check_vocab, TextTokenizer};
