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

/// Whether the decoder at `path` (its GGUF file opened as `gguf`, `None` for a Hugging Face
/// folder) is instruction-tuned, which picks the instruction sentiment template: its path or
/// GGUF `general.name` says "instruct", or it carries a chat template (GGUF
/// `tokenizer.chat_template`; a folder's `tokenizer_config.json` `chat_template`, or its
/// `chat_template.jinja` / `chat_template.json`). A name is not always telling: an Ollama blob
/// is `sha256-…`, SmolLM2's `general.name` is "Smollm2 135M 8k Lc100K Mix1 Ep2". Gemma 3 270M's
/// base GGUF has no template, so it keeps the plain one.
pub fn instruction_tuned(path: &std::path::Path, gguf: Option<&gguf::Gguf>) -> bool {
    says_instruct(&path.to_string_lossy())
        || match gguf {
            Some(g) => gguf_instruction_tuned(g),
            None => folder_has_chat_template(path),
        }
}

fn says_instruct(name: &str) -> bool {
    name.to_lowercase().contains("instruct")
}

/// A GGUF file's `general.name` says "instruct", or it has a `tokenizer.chat_template`.
fn gguf_instruction_tuned(g: &gguf::Gguf) -> bool {
    says_instruct(&g.string("general.name").unwrap_or_default())
        || g.string("tokenizer.chat_template").is_ok_and(|t| !t.trim().is_empty())
}

/// A Hugging Face folder has `chat_template.jinja` / `.json`, or a non-empty `chat_template`
/// (a string, or a list of named templates) in `tokenizer_config.json`.
fn folder_has_chat_template(dir: &std::path::Path) -> bool {
    let filled = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => !s.trim().is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    ["chat_template.jinja", "chat_template.json"].iter().any(|f| dir.join(f).is_file())
        || tokenizer::tokenizer_config(dir).is_ok_and(|c| c.get("chat_template").is_some_and(filled))
}

#[cfg(test)]
mod tests {
    use super::instruction_tuned;

    #[test]
    fn a_folder_with_a_chat_template_is_instruction_tuned_whatever_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("smollm2-135m");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        assert!(!instruction_tuned(&dir, None), "no template, no telling name");
        assert!(instruction_tuned(&tmp.path().join("SmolLM2-135M-Instruct"), None), "the name says so");
        let config = |v: &str| std::fs::write(dir.join("tokenizer_config.json"), v).unwrap();
        for (json, instruct) in [
            (r#"{"bos_token": "<s>"}"#, false),
            (r#"{"chat_template": ""}"#, false),
            (r#"{"chat_template": null}"#, false),
            (r#"{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}"#, true),
            (r#"{"chat_template": [{"name": "default", "template": "{{ x }}"}]}"#, true),
            ("not json", false),
        ] {
            config(json);
            assert_eq!(instruction_tuned(&dir, None), instruct, "{json}");
        }
        config(r#"{"bos_token": "<s>"}"#);
        for file in ["chat_template.jinja", "chat_template.json"] {
            std::fs::write(dir.join(file), "{{ messages }}").unwrap();
            assert!(instruction_tuned(&dir, None), "{file}");
            std::fs::remove_file(dir.join(file)).unwrap();
        }
    }
}
