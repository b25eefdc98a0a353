//! Tokenisation with the `tokenizers` crate: from `tokenizer.json`, or `vocab.txt`
//! (WordPiece, BERT), or `vocab.json` + `merges.txt` (byte-level BPE, RoBERTa). Single
//! sentences and pairs, truncation to a maximum length, dynamic padding per batch.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::{Device, Tensor};
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{EncodeInput, Tokenizer, TruncationParams, TruncationStrategy};

use super::bert::{Batch, Config};
use super::load::json_object;
use crate::error::{Error, Result};
use crate::prompt::Prompt;

/// A tokenizer with the model's special tokens, truncation, and our own padding.
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: i64,
    max_len: usize,
    /// The file the vocabulary came from (tokenizer.json, vocab.txt or vocab.json).
    source: PathBuf,
    /// A decoder's prompt: inputs are written into its template (see [`TextTokenizer::from_gguf`]).
    prompt: Option<Prompted>,
}

/// How a decoder's inputs are encoded.
#[derive(Debug, Clone)]
struct Prompted {
    prompt: Prompt,
    /// The BOS token, when the model's tokenizer starts every input with it.
    bos: Option<i64>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("pad_id", &self.pad_id)
            .field("prompt", &self.prompt)
            .field("max_len", &self.max_len)
            .field("source", &self.source)
            .finish()
    }
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: cannot build a tokenizer: {e}", path.display()))
}

impl TextTokenizer {
    /// Loads the tokenizer of a model folder, truncating inputs to `max_len` tokens.
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        let vocab_txt = dir.join("vocab.txt");
        let (vocab_json, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let config = tokenizer_config(dir)?;
        let lower = config.get("do_lower_case").and_then(Value::as_bool);
        let source = if tj.is_file() {
            tj.clone()
        } else if vocab_txt.is_file() {
            vocab_txt.clone()
        } else {
            vocab_json.clone()
        };
        let mut inner = if tj.is_file() {
            Tokenizer::from_file(&tj).map_err(|e| tok_err(&tj, e))?
        } else if vocab_txt.is_file() {
            let p = vocab_txt.to_string_lossy().to_string();
            let wp = WordPiece::from_file(&p).unk_token("[UNK]".into()).build().map_err(|e| tok_err(&vocab_txt, e))?;
            let mut t = Tokenizer::new(wp);
            t.with_normalizer(Some(BertNormalizer::new(true, true, None, lower.unwrap_or(true))))
                .map_err(|e| tok_err(&vocab_txt, e))?;
            t.with_pre_tokenizer(Some(BertPreTokenizer));
            let id = |s: &str| {
                t.token_to_id(s)
                    .ok_or_else(|| tok_err(&vocab_txt, format!("special token {s} is not in the vocabulary")))
            };
            let (sep, cls) = (id("[SEP]")?, id("[CLS]")?);
            t.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
            t
        } else if vocab_json.is_file() && merges.is_file() {
            let bpe = BPE::from_file(&vocab_json.to_string_lossy(), &merges.to_string_lossy())
                .build()
                .map_err(|e| tok_err(&vocab_json, e))?;
            let mut t = Tokenizer::new(bpe);
            t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            let id = |s: &str| {
                t.token_to_id(s)
                    .ok_or_else(|| tok_err(&vocab_json, format!("special token {s} is not in the vocabulary")))
            };
            let (sep, cls) = (id("</s>")?, id("<s>")?);
            t.with_post_processor(Some(
                RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls)).trim_offsets(true),
            ));
            t
        } else {
            return Err(Error::Input(format!(
                "{}: no tokenizer found (expected tokenizer.json, or vocab.txt, or vocab.json + merges.txt)",
                dir.display()
            )));
        };
        // Our own truncation; no built-in padding (we pad each batch to its own longest).
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| tok_err(dir, e))?;
        // The padding token: the one tokenizer.json pads with, else the declared pad_token, else
        // [PAD] / <pad> (MPNet's vocabulary has both; its pad token is <pad>).
        let declared = match inner.get_padding() {
            Some(p) => Some(p.pad_id),
            None => declared_pad_token(dir, &config)?.and_then(|t| inner.token_to_id(&t)),
        };
        inner.with_padding(None);
        let pad_id = declared
            .or_else(|| ["[PAD]", "<pad>"].iter().find_map(|t| inner.token_to_id(t)))
            .map(i64::from)
            .unwrap_or(0);
        Ok(Self { inner, pad_id, max_len, source, prompt: None })
    }

    /// The tokenizer stored in a GGUF file, for prompt-based inputs: an input is written into
    /// `prompt`'s template and tokenised as one text (BOS first when the model's tokenizer
    /// adds it); an input longer than `max_len` tokens loses tokens from its start, so that
    /// the answer slot at the end of the template stays.
    pub fn from_gguf(g: &super::gguf::Gguf, max_len: usize, prompt: Prompt) -> Result<Self> {
        Ok(Self::prompted(g.tokenizer()?, g.path().to_path_buf(), max_len, prompt))
    }

    /// The tokenizer of a Hugging Face decoder folder (`tokenizer.json`, see
    /// [`super::hf_decoder::tokenizer`]), for prompt-based inputs exactly as
    /// [`TextTokenizer::from_gguf`].
    pub fn from_hf_decoder(dir: &Path, max_len: usize, prompt: Prompt) -> Result<Self> {
        Ok(Self::prompted(super::hf_decoder::tokenizer(dir)?, dir.join("tokenizer.json"), max_len, prompt))
    }

    /// A decoder's tokenizer (from `source`) writing inputs into `prompt`.
    fn prompted(t: super::gguf::GgufTokenizer, source: PathBuf, max_len: usize, prompt: Prompt) -> Self {
        let pad_id = t.pad_id.or(t.eos_id).map_or(0, i64::from);
        let bos = if t.add_bos { t.bos_id.map(i64::from) } else { None };
        Self { inner: t.tokenizer, pad_id, max_len, source, prompt: Some(Prompted { prompt, bos }) }
    }

    /// The decoder prompt, if this tokenizer writes inputs into one.
    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_ref().map(|p| &p.prompt)
    }

    /// Whether inputs start with a BOS token (a decoder's tokenizer that adds one).
    pub fn bos(&self) -> Option<i64> {
        self.prompt.as_ref().and_then(|p| p.bos)
    }

    /// The ids of a text as it continues another (no BOS, no special tokens).
    pub fn ids(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| {
            Error::Input(format!("cannot tokenise \"{}\": {e}", text.chars().take(60).collect::<String>()))
        })?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The padding token id.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The number of token ids the tokenizer can produce: one more than its largest id
    /// (added and special tokens included), 0 for an empty vocabulary.
    pub fn vocab_size(&self) -> i64 {
        self.inner.get_vocab(true).values().max().map_or(0, |&m| i64::from(m) + 1)
    }

    /// The file the vocabulary was read from (tokenizer.json, vocab.txt or vocab.json).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids and type ids of one input (a sentence, or a pair).
    pub fn encode(&self, a: &str, b: Option<&str>) -> Result<(Vec<i64>, Vec<i64>)> {
        if let Some(p) = &self.prompt {
            let mut ids = self.ids(&p.prompt.fill(a, b))?;
            let room = self.max_len.saturating_sub(usize::from(p.bos.is_some()));
            if ids.len() > room {
                ids.drain(..ids.len() - room);
            }
            if let Some(bos) = p.bos {
                ids.insert(0, bos);
            }
            let types = vec![0; ids.len()];
            return Ok((ids, types));
        }
        let input: EncodeInput = match b {
            Some(b) => (a, b).into(),
            None => a.into(),
        };
        let enc = self.inner.encode(input, true).map_err(|e| {
            Error::Input(format!("cannot tokenise \"{}\": {e}", a.chars().take(60).collect::<String>()))
        })?;
        Ok((
            enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
            enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
        ))
    }

    /// Tokenises and pads a batch of inputs to the longest one.
    pub fn batch(&self, inputs: &[(&str, Option<&str>)], device: Device) -> Result<Batch> {
        let enc = inputs.iter().map(|(a, b)| self.encode(a, *b)).collect::<Result<Vec<_>>>()?;
        Ok(pad_batch(&enc, self.pad_id, device))
    }
}

/// Pads already-tokenised `(ids, type_ids)` pairs into a batch (dynamic padding).
pub fn pad_batch(enc: &[(Vec<i64>, Vec<i64>)], pad_id: i64, device: Device) -> Batch {
    let b = enc.len();
    let t = enc.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; b * t];
    let mut types = vec![0i64; b * t];
    let mut mask = vec![0i64; b * t];
    for (r, (i, ty)) in enc.iter().enumerate() {
        ids[r * t..r * t + i.len()].copy_from_slice(i);
        types[r * t..r * t + ty.len()].copy_from_slice(ty);
        mask[r * t..r * t + i.len()].iter_mut().for_each(|m| *m = 1);
    }
    let shape = [b as i64, t as i64];
    Batch {
        input_ids: Tensor::from_slice(&ids).view(shape).to(device),
        attention_mask: Tensor::from_slice(&mask).view(shape).to(device),
        token_type_ids: Tensor::from_slice(&types).view(shape).to(device),
    }
}

/// The folder's `tokenizer_config.json` (an empty object when it has none).
pub(crate) fn tokenizer_config(dir: &Path) -> Result<Map<String, Value>> {
    let path = dir.join("tokenizer_config.json");
    if path.is_file() {
        json_object(&path)
    } else {
        Ok(Map::new())
    }
}

/// A special token as `tokenizer_config.json` and `special_tokens_map.json` write it: a string
/// or `{"content": ...}`.
pub(crate) fn special_token(v: &Value) -> Option<String> {
    v.as_str().or_else(|| v.get("content")?.as_str()).map(str::to_string)
}

/// The `pad_token` of `tokenizer_config.json` (`config`), else of `special_tokens_map.json`, if
/// declared.
fn declared_pad_token(dir: &Path, config: &Map<String, Value>) -> Result<Option<String>> {
    if let Some(t) = config.get("pad_token").and_then(special_token) {
        return Ok(Some(t));
    }
    let map = dir.join("special_tokens_map.json");
    Ok(if map.is_file() { json_object(&map)?.get("pad_token").and_then(special_token) } else { None })
}

/// Checks that every id `tokenizer` can produce has a row in the embedding table of the
/// model `config` describes (its `vocab_size`): a larger vocabulary would index past the
/// table in the middle of a forward pass. `model_dir` is the folder of `config.json` (for
/// the message).
pub fn check_vocab(tokenizer: &TextTokenizer, config: &Config, model_dir: &Path) -> Result<()> {
    let n = tokenizer.vocab_size();
    if n > config.vocab_size {
        return Err(Error::Input(format!(
            "{}: the tokenizer has {n} token ids (0..={}) but {} has vocab_size {}: ids from {} on have no embedding (is this the tokenizer of this model?)",
            tokenizer.source().display(),
            n - 1,
            model_dir.join("config.json").display(),
            config.vocab_size,
            config.vocab_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TextTokenizer;

    /// A WordPiece folder whose tokenizer_config.json / special_tokens_map.json says `config`.
    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n<pad>\nhello\n").unwrap();
        for (f, text) in files {
            std::fs::write(tmp.path().join(f), text).unwrap();
        }
        tmp
    }

    #[test]
    fn the_tokenizer_files_json_is_read_or_refused_by_name() {
        let ok = folder(&[("special_tokens_map.json", r#"{"pad_token": {"content": "<pad>"}}"#)]);
        assert_eq!(TextTokenizer::from_dir(ok.path(), 8).unwrap().pad_id(), 4, "special_tokens_map's pad");
        let ok = folder(&[("tokenizer_config.json", r#"{"pad_token": "[UNK]", "do_lower_case": false}"#)]);
        let t = TextTokenizer::from_dir(ok.path(), 8).unwrap();
        assert_eq!(t.pad_id(), 1, "tokenizer_config's pad comes first");
        assert_eq!(t.ids("Hello").unwrap(), vec![1], "do_lower_case false keeps the capital");
        assert_eq!(TextTokenizer::from_dir(folder(&[]).path(), 8).unwrap().pad_id(), 0, "[PAD]");
        for (f, text, says) in [
            ("tokenizer_config.json", "{\"pad_token\": ", "not valid JSON"),
            ("tokenizer_config.json", "[1]", "expected a JSON object"),
            ("special_tokens_map.json", "pad", "not valid JSON"),
        ] {
            let bad = folder(&[(f, text)]);
            let e = TextTokenizer::from_dir(bad.path(), 8).unwrap_err().to_string();
            assert!(e.contains(f) && e.contains(says), "{f} = {text:?}: {e}");
        }
    }
}
