//! The frozen backbones (BERT-like encoders, decoder-only LLMs), their checkpoint loaders
//! and tokenizers.

pub mod backbone;
pub mod bert;
pub mod decoder;
pub mod dropout;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod hf_decoder;
pub mod linear;
pub mod load;
pub mod packing;
pub mod tokenizer;

pub use backbone::Backbone;
pub use bert::{
    additive, prefixed_additive_mask, Arch, Batch, Config, Encoder, Forward, LayerNames, Packing, Pooling, Positions,
};
pub use decoder::Decoder;
pub use tokenizer::{check_vocab, TextTokenizer};

/// The decoder LLM checkpoint a `--model` path names: a GGUF file ([`decoder::find_gguf`]: the
/// path itself, or the one `.gguf` file of a folder without `config.json`), else a Hugging
/// Face folder of a supported decoder ([`hf_decoder::is_hf_decoder`]: the folder itself);
/// `None` for anything else (an encoder).
pub fn decoder_source(path: &std::path::Path) -> crate::error::Result<Option<std::path::PathBuf>> {
    if let Some(gguf) = decoder::find_gguf(path)? {
        return Ok(Some(gguf));
    }
    Ok(hf_decoder::is_hf_decoder(path).then(|| path.to_path_buf()))
}

/// Whether `path` names a decoder LLM checkpoint ([`decoder_source`]).
pub fn is_decoder(path: &std::path::Path) -> crate::error::Result<bool> {
    Ok(decoder_source(path)?.is_some())
}
