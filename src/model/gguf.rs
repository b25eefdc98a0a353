//! GGUF files (llama.cpp's format): metadata, tensors dequantised to float32 `tch` tensors,
//! and the tokenizer a file describes.
//!
//! The `candle-core` crate does the format work: [`gguf_file::Content::read`] parses the
//! header, the metadata and the tensor table, and [`QTensor::dequantize`] turns a tensor of
//! any type candle knows (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K … Q8_K)
//! into float32 values. This module checks the table against the file's length, names the
//! file in every error, and copies values into CPU `tch` tensors in PyTorch (row-major)
//! order: GGUF lists dimensions innermost first, so `token_embd.weight` is `[vocab, hidden]`
//! here. Tensors come in the file's own order; in particular llama.cpp's row permutation of
//! `attn_q` / `attn_k` in llama-architecture files is left for the model code to undo.
//!
//! [`Gguf::tokenizer`] rebuilds the tokenizer from the `tokenizer.ggml.*` metadata the way
//! Hugging Face transformers does for `AutoTokenizer.from_pretrained(dir, gguf_file=…)`
//! (`transformers/integrations/gguf/gguf_tokenizer_mapping.py`), with the `tokenizers` crate:
//!
//! - `gpt2`: byte-level BPE from `tokens` + `merges` (tokens outside the byte alphabet are
//!   respelled in it), the split regex named by `tokenizer.ggml.pre` when transformers knows
//!   one (else byte-level's own);
//! - `llama`: SentencePiece-style BPE with byte fallback and `▁` for spaces; merges from the
//!   file, or recovered from the vocabulary ranked by `scores`. Gemma files (architectures
//!   `gemma`, `gemma2`, `gemma3`) get transformers' Gemma treatment: spaces replaced by `▁`
//!   (no prefix space), whitespace-only tokens respelled with `▁`, merges ranked by their
//!   position in the file. Other architectures get `LlamaTokenizer`'s Metaspace (a `▁` before
//!   the first word); `phi3` its normalizer;
//! - `gemma4`: Gemma's normalizer and pre-tokenizer, merges from the file or ranked by
//!   scores, never adding BOS.
//!
//! Unigram vocabularies (`t5`) are not supported.
//! Tokens typed CONTROL become special added tokens, USER_DEFINED ones plain added tokens.
//! BOS is prepended when `tokenizer.ggml.add_bos_token` says so; without that key,
//! transformers adds it to `llama` vocabularies and not to `gpt2` ones (EOS likewise with
//! `add_eos_token`, default off).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, DType, Device, Storage};
use tch::Tensor;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// An opened GGUF file: its parsed header (metadata and tensor table) and a reader for the
/// tensor data.
pub struct Gguf {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("metadata", &self.content.metadata.len())
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

/// The first line of a candle error (its message can carry a backtrace on further lines).
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "malformed data".into())
}

/// llama.cpp's name of a tensor type (`Q4_K`, not candle's `Q4K`).
fn type_name(t: GgmlDType) -> &'static str {
    match t {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// An integer metadata value of any width.
fn integer(v: &Value) -> Option<i128> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => x.into(),
        Value::I64(x) => x.into(),
        _ => return None,
    })
}

impl Gguf {
    /// Opens a GGUF file and reads its header. A file that is not GGUF, is truncated, or holds
    /// a tensor of a type candle cannot read is an [`Error::Input`] naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        // candle checks lengths and counts against the file; the guard turns any panic left
        // on malformed input (say `general.alignment = 0`) into an error as well.
        let content = match catch_unwind(AssertUnwindSafe(|| Content::read(&mut reader))) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let e = one_line(e);
                let hint = if e.contains("dtype") {
                    "a tensor type candle cannot read (IQ, TQ and MXFP4 quantisations are not supported)"
                } else {
                    "is it truncated, or not a GGUF file?"
                };
                return Err(Error::Input(format!("{}: not a readable GGUF file ({e}); {hint}", path.display())));
            }
            Err(p) => {
                return Err(Error::Input(format!(
                    "{}: not a readable GGUF file ({})",
                    path.display(),
                    panic_message(p.as_ref())
                )))
            }
        };
        let g = Self { path: path.to_path_buf(), content, reader };
        g.check_tensor_table(file_len)?;
        Ok(g)
    }

    /// Every tensor's data lies inside the file and fills whole blocks of its type.
    fn check_tensor_table(&self, file_len: u64) -> Result<()> {
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let info = &self.content.tensor_infos[name];
            let t = info.ggml_dtype;
            let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let Some(elems) = elems else {
                return Err(self.bad(format!("tensor {name} has dimensions {:?}, too large", info.shape.dims())));
            };
            if elems % t.block_size() != 0 {
                return Err(self.bad(format!(
                    "tensor {name} has {elems} values, not a multiple of the {}-value blocks of {}",
                    t.block_size(),
                    type_name(t)
                )));
            }
            let bytes = (elems / t.block_size()) as u128 * t.type_size() as u128;
            let end = u128::from(self.content.tensor_data_offset) + u128::from(info.offset) + bytes;
            if end > u128::from(file_len) {
                return Err(self.bad(format!(
                    "truncated: tensor {name} ({} {:?}) ends at byte {end}, the file has {file_len} bytes",
                    type_name(t),
                    info.shape.dims()
                )));
            }
        }
        Ok(())
    }

    /// An input error about this file.
    fn bad(&self, what: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}: {what}", self.path.display()))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata value of `key`, or an error naming the key and the file.
    fn value(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).ok_or_else(|| self.bad(format!("metadata key {key} is missing")))
    }

    fn wrong_type(&self, key: &str, v: &Value, expected: &str) -> Error {
        self.bad(format!("metadata {key} is of type {:?}, expected {expected}", v.value_type()))
    }

    /// Whether the metadata has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.content.metadata.contains_key(key)
    }

    /// All metadata keys, sorted.
    pub fn metadata_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.content.metadata.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// `general.architecture` (`llama`, `gemma3`, …).
    pub fn architecture(&self) -> Result<String> {
        self.string("general.architecture")
    }

    /// An integer of any stored width that fits in `u32`.
    pub fn u32(&self, key: &str) -> Result<u32> {
        let v = self.value(key)?;
        let i = integer(v).ok_or_else(|| self.wrong_type(key, v, "an integer"))?;
        u32::try_from(i)
            .map_err(|_| self.bad(format!("metadata {key} = {i} does not fit in an unsigned 32-bit integer")))
    }

    /// A float (stored as f32, or as f64 and rounded).
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.value(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            v => Err(self.wrong_type(key, v, "a float")),
        }
    }

    /// A string.
    pub fn string(&self, key: &str) -> Result<String> {
        match self.value(key)? {
            Value::String(s) => Ok(s.clone()),
            v => Err(self.wrong_type(key, v, "a string")),
        }
    }

    /// A boolean.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.value(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(self.wrong_type(key, v, "a boolean")),
        }
    }

    /// The elements of an array, `None` when the key is absent.
    fn array(&self, key: &str) -> Result<Option<&Vec<Value>>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, v, "an array")),
        }
    }

    /// An array of strings.
    fn strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.wrong_type(key, v, "an array of strings")),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// An array of integers.
    fn integers(&self, key: &str) -> Result<Option<Vec<i128>>> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| integer(v).ok_or_else(|| self.wrong_type(key, v, "an array of integers")))
            .collect::<Result<_>>()
            .map(Some)
    }

    /// An array of floats.
    fn floats(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| match v {
                Value::F32(x) => Ok(f64::from(*x)),
                Value::F64(x) => Ok(*x),
                v => Err(self.wrong_type(key, v, "an array of floats")),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// The names of all tensors, sorted.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        names
    }

    fn info(&self, name: &str) -> Result<&gguf_file::TensorInfo> {
        self.content.tensor_infos.get(name).ok_or_else(|| {
            self.bad(format!("no tensor named {name} (the file has {} tensors)", self.content.tensor_infos.len()))
        })
    }

    /// A tensor's shape in PyTorch order (the GGUF dimensions reversed).
    pub fn tensor_shape(&self, name: &str) -> Result<Vec<i64>> {
        // candle already reverses GGUF's innermost-first dimensions.
        self.info(name)?
            .shape
            .dims()
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| self.bad(format!("tensor {name} has a dimension of {d}"))))
            .collect()
    }

    /// A tensor's storage type, as llama.cpp names it (`F32`, `Q4_1`, `Q6_K`, …).
    pub fn tensor_type(&self, name: &str) -> Result<String> {
        Ok(type_name(self.info(name)?.ggml_dtype).to_string())
    }

    /// A tensor's values, dequantised to float32, on the CPU, in PyTorch order.
    pub fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let shape = self.tensor_shape(name)?;
        let Self { path, content, reader } = self;
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::Input(format!("{}: no tensor named {name}", path.display())))?;
        let (offset, dtype) = (content.tensor_data_offset, info.ggml_dtype);
        let fail = |e: String| Error::Input(format!("{}: cannot read tensor {name}: {e}", path.display()));
        let read = catch_unwind(AssertUnwindSafe(|| -> candle_core::Result<candle_core::Tensor> {
            let q: QTensor = info.read(reader, offset, &Device::Cpu)?;
            q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)
        }));
        let values = match read {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(fail(format!("{} ({})", one_line(e), type_name(dtype)))),
            Err(p) => return Err(fail(panic_message(p.as_ref()))),
        };
        let (storage, layout) = values.storage_and_layout();
        let data: &[f32] = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) if end <= v.len() => &v[start..end],
            _ => return Err(fail("candle returned no contiguous float32 values".into())),
        };
        let t = Tensor::f_from_slice(data)?.f_view(shape.as_slice())?;
        Ok(t)
    }

    /// The tokenizer the file's `tokenizer.ggml.*` metadata describes, built as transformers
    /// builds it (see the module documentation). Gemma 3's 262,144 tokens take well under a
    /// second (the merges are recovered from the vocabulary).
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let arch = self.architecture()?;
        let model = self.string("tokenizer.ggml.model")?;
        let flavour = match (model.as_str(), arch.as_str()) {
            ("gpt2", _) => Flavour::ByteLevel,
            ("llama", "gemma" | "gemma2" | "gemma3") => Flavour::Gemma,
            ("llama", "phi3") => Flavour::Phi3,
            ("llama", _) => Flavour::Llama,
            ("gemma4", _) => Flavour::Gemma4,
            (other, _) => {
                return Err(self.bad(format!(
                    "tokenizer.ggml.model = \"{other}\" is not supported (expected gpt2, llama or gemma4)"
                )))
            }
        };
        let tokens = self
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| self.bad("metadata key tokenizer.ggml.tokens is missing"))?;
        let spec = VocabSpec {
            tokens,
            types: self.integers("tokenizer.ggml.token_type")?.unwrap_or_default(),
            scores: self.floats("tokenizer.ggml.scores")?,
            merges: self.strings("tokenizer.ggml.merges")?,
        };
        if let Some(s) = &spec.scores {
            if s.len() != spec.tokens.len() {
                return Err(self.bad(format!(
                    "tokenizer.ggml.scores has {} entries for {} tokens",
                    s.len(),
                    spec.tokens.len()
                )));
            }
        }
        // The special tokens, by the text of the token the file's id points at. An id outside
        // the vocabulary (some converters write -1 for "none") counts as no such token.
        let special = |key: &str| -> Result<Option<String>> {
            let Some(v) = self.content.metadata.get(key) else { return Ok(None) };
            let id = integer(v).ok_or_else(|| self.wrong_type(key, v, "an integer"))?;
            Ok(usize::try_from(id).ok().and_then(|i| spec.tokens.get(i)).map(|t| t.to_string()))
        };
        let bos = special("tokenizer.ggml.bos_token_id")?;
        let eos = special("tokenizer.ggml.eos_token_id")?;
        let unk = special("tokenizer.ggml.unknown_token_id")?;
        let pad = special("tokenizer.ggml.padding_token_id")?;
        let flag = |key: &str, default: bool| -> Result<bool> {
            if self.has(key) {
                self.bool(key)
            } else {
                Ok(default)
            }
        };
        let add_bos = match flavour {
            Flavour::Gemma4 => false,
            Flavour::ByteLevel => flag("tokenizer.ggml.add_bos_token", false)?,
            _ => flag("tokenizer.ggml.add_bos_token", true)?,
        };
        let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;
        let pre = if self.has("tokenizer.ggml.pre") { Some(self.string("tokenizer.ggml.pre")?) } else { None };

        let mut tokenizer =
            build(flavour, &spec, pre.as_deref()).map_err(|e| self.bad(format!("cannot build its tokenizer: {e}")))?;
        let err = |e: tokenizers::Error| self.bad(format!("cannot build its tokenizer: {e}"));
        // As transformers: the special tokens of the class the vocabulary is handed to, the
        // file's CONTROL and USER_DEFINED tokens, then the file's BOS / EOS / UNK / PAD.
        let special_token = |t: &str| AddedToken::from(t.to_string(), true).normalized(false);
        tokenizer.add_special_tokens(flavour.class_specials().iter().map(|t| special_token(t))).map_err(err)?;
        let typed = |kind: i128| spec.tokens.iter().zip(&spec.types).filter(move |(_, &k)| k == kind).map(|(t, _)| *t);
        let alphabet = ByteLevel::alphabet();
        let control: Vec<AddedToken> = typed(TOKEN_CONTROL)
            .filter(|t| flavour != Flavour::ByteLevel || t.chars().all(|c| alphabet.contains(&c)))
            .map(special_token)
            .collect();
        tokenizer.add_special_tokens(control).map_err(err)?;
        let known = tokenizer.get_vocab(true);
        let user: Vec<AddedToken> = typed(TOKEN_USER_DEFINED)
            .filter(|t| known.contains_key(*t))
            .map(|t| AddedToken::from(t.to_string(), false).normalized(false))
            .collect();
        tokenizer.add_tokens(user).map_err(err)?;
        let named: Vec<&String> = [&bos, &eos, &unk, &pad].into_iter().flatten().collect();
        tokenizer.add_special_tokens(named.iter().map(|t| special_token(t.as_str()))).map_err(err)?;

        let bos_id = bos.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let eos_id = eos.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let pad_id = pad.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let add_bos = add_bos && bos_id.is_some();
        let add_eos = add_eos && eos_id.is_some();
        let template =
            template(bos.as_deref().zip(bos_id).filter(|_| add_bos), eos.as_deref().zip(eos_id).filter(|_| add_eos))
                .map_err(|e| self.bad(format!("cannot build its tokenizer: {e}")))?;
        tokenizer.with_post_processor(Some(template));
        Ok(GgufTokenizer { tokenizer, bos_id, eos_id, pad_id, add_bos, add_eos })
    }
}

/// The tokenizer of a GGUF file, with its special token ids.
///
/// `tokenizer.encode(text, true)` gives the ids transformers' `tokenizer(text)["input_ids"]`
/// gives (BOS first when `add_bos`, EOS last when `add_eos`); `encode(text, false)` gives the
/// same ids without them.
pub struct GgufTokenizer {
    /// The tokenizer, its post-processor adding BOS / EOS as transformers does.
    pub tokenizer: Tokenizer,
    /// The id of the BOS token, if the file names one.
    pub bos_id: Option<u32>,
    /// The id of the EOS token, if the file names one.
    pub eos_id: Option<u32>,
    /// The id of the padding token, if the file names one.
    pub pad_id: Option<u32>,
    /// Whether `tokenizer(text)` in transformers starts with BOS.
    pub add_bos: bool,
    /// Whether `tokenizer(text)` in transformers ends with EOS.
    pub add_eos: bool,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: i128 = 3;
const TOKEN_USER_DEFINED: i128 = 4;

/// Which of transformers' tokenizer builders a file gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    /// `gpt2`: `GPT2Tokenizer`.
    ByteLevel,
    /// `llama` (other architectures): `LlamaTokenizer`.
    Llama,
    /// `llama` for `phi3`: `LlamaTokenizer` with a normalizer for the prefix space.
    Phi3,
    /// `llama` for `gemma`, `gemma2`, `gemma3`: `GemmaTokenizer`, respelled, position-ranked.
    Gemma,
    /// `gemma4`: `GemmaTokenizer`.
    Gemma4,
}

impl Flavour {
    /// The default special tokens of the transformers class the vocabulary is handed to,
    /// which it adds before the file's own.
    fn class_specials(self) -> &'static [&'static str] {
        match self {
            Flavour::ByteLevel => &["<|endoftext|>"],
            Flavour::Llama | Flavour::Phi3 => &["<s>", "</s>", "<unk>"],
            Flavour::Gemma | Flavour::Gemma4 => &["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"],
        }
    }
}

/// The vocabulary part of the metadata.
struct VocabSpec<'a> {
    tokens: Vec<&'a str>,
    types: Vec<i128>,
    scores: Option<Vec<f64>>,
    merges: Option<Vec<&'a str>>,
}

/// The split regexes transformers uses for byte-level vocabularies, by `tokenizer.ggml.pre`.
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "tekken" => TEKKEN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// GPT-2's map from bytes to the printable characters that spell them in a byte-level
/// vocabulary.
fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[usize::from(b)] = if printable {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    out
}

/// Python's `str.isspace` for one character (Rust's `is_whitespace` plus `\x1c`–`\x1f`).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Keys in first-seen order, each with its last value: a Python dict built from pairs.
fn py_dict<'a, V: Copy>(pairs: impl Iterator<Item = (&'a str, V)>) -> Vec<(&'a str, V)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(&str, V)> = Vec::new();
    for (k, v) in pairs {
        match index.get(k) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k, out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
/// tokens of the vocabulary, best score first, then longer left, then longer right part
/// (ties in vocabulary-id order of the parts, as Python's stable sort leaves them).
fn generate_merges(vocab: &Vocab, scored: &[(&str, f64)]) -> Vec<(String, String)> {
    // (left, right, score as a sortable key, characters left, characters right)
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for &(token, score) in scored {
        let key = if score.is_nan() { f64::NEG_INFINITY } else { score + 0.0 };
        let start = merges.len();
        for (n, (i, _)) in token.char_indices().enumerate().skip(1) {
            let (l, r) = token.split_at(i);
            if let (Some(_), Some(_)) = (vocab.get(l), vocab.get(r)) {
                merges.push((l, r, key, n, token[i..].chars().count()));
            }
        }
        merges[start..].sort_by_key(|m| (vocab.get(m.0).copied(), vocab.get(m.1).copied()));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// The merges of the file (`"left right"` each), or those its vocabulary implies.
fn merges_of(
    spec: &VocabSpec,
    vocab: &Vocab,
    scored: Option<Vec<(&str, f64)>>,
) -> std::result::Result<Vec<(String, String)>, String> {
    if let Some(m) = &spec.merges {
        return m
            .iter()
            .map(|line| {
                let mut parts = line.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(l), Some(r), None) => Ok((l.to_string(), r.to_string())),
                    _ => Err(format!("tokenizer.ggml.merges holds \"{line}\", not two tokens separated by a space")),
                }
            })
            .collect();
    }
    let scored = match scored {
        Some(s) => s,
        None => {
            let scores =
                spec.scores.as_ref().ok_or("the file has neither tokenizer.ggml.merges nor tokenizer.ggml.scores")?;
            py_dict(spec.tokens.iter().copied().zip(scores.iter().copied()))
        }
    };
    Ok(generate_merges(vocab, &scored))
}

/// `{token: index}` (the last index of a repeated token).
fn vocab_of<'a>(tokens: impl Iterator<Item = &'a str>) -> std::result::Result<Vocab, String> {
    let mut vocab = Vocab::default();
    for (i, t) in tokens.enumerate() {
        let id = u32::try_from(i).map_err(|_| "more than 2^32 tokens".to_string())?;
        vocab.insert(t.to_string(), id);
    }
    Ok(vocab)
}

/// The model, normalizer, pre-tokenizer and decoder of a flavour (no added tokens yet).
fn build(flavour: Flavour, spec: &VocabSpec, pre: Option<&str>) -> std::result::Result<Tokenizer, String> {
    let e = |e: tokenizers::Error| e.to_string();
    let sentencepiece_decoder = |strip: bool| {
        let mut steps: Vec<DecoderWrapper> =
            vec![Replace::new("▁", " ").map_err(e)?.into(), ByteFallback::new().into(), Fuse::new().into()];
        if strip {
            steps.push(Strip::new(' ', 1, 0).into());
        }
        Ok::<_, String>(DecoderSequence::new(steps))
    };
    let mut tokenizer = match flavour {
        Flavour::ByteLevel => {
            let spelling = byte_chars();
            let alphabet: HashSet<char> = spelling.iter().copied().collect();
            let respelled: Vec<String> = spec
                .tokens
                .iter()
                .map(|t| {
                    if t.chars().all(|c| alphabet.contains(&c)) {
                        t.to_string()
                    } else {
                        t.bytes().map(|b| spelling[usize::from(b)]).collect()
                    }
                })
                .collect();
            let vocab = vocab_of(respelled.iter().map(String::as_str))?;
            // Without merges in the file, transformers recovers them from the raw tokens.
            let merges = if spec.merges.is_some() {
                merges_of(spec, &vocab, None)?
            } else {
                merges_of(spec, &vocab_of(spec.tokens.iter().copied())?, None)?
            };
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .continuing_subword_prefix(String::new())
                .end_of_word_suffix(String::new())
                .fuse_unk(false)
                .build()
                .map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            t.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
            t
        }
        Flavour::Llama | Flavour::Phi3 => {
            let vocab = vocab_of(spec.tokens.iter().copied())?;
            let merges = merges_of(spec, &vocab, None)?;
            let bpe =
                BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true).build().map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            if flavour == Flavour::Phi3 {
                let n = NormalizerSequence::new(vec![
                    Prepend::new("▁".into()).into(),
                    Replace::new(" ", "▁").map_err(e)?.into(),
                ]);
                t.with_normalizer(Some(n)).map_err(e)?;
            } else {
                t.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
            }
            t.with_decoder(Some(sentencepiece_decoder(true)?));
            t
        }
        Flavour::Gemma | Flavour::Gemma4 => {
            // Gemma files store a token of two or more spaces as spaces; the normalizer
            // writes spaces as ▁, so transformers respells those tokens.
            let respelled: Vec<String> = spec
                .tokens
                .iter()
                .map(|t| {
                    if flavour == Flavour::Gemma && t.contains(' ') && t.chars().all(py_isspace) {
                        "▁".repeat(t.chars().count())
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            let vocab = vocab_of(respelled.iter().map(String::as_str))?;
            let merges = if flavour == Flavour::Gemma {
                // Ranked by position in the file, not by score.
                let positions = py_dict(respelled.iter().enumerate().map(|(i, t)| (t.as_str(), -(i as f64))));
                merges_of(spec, &vocab, Some(positions))?
            } else {
                merges_of(spec, &vocab, None)?
            };
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .unk_token("<unk>".into())
                .fuse_unk(true)
                .byte_fallback(true)
                .build()
                .map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            t.with_normalizer(Some(Replace::new(" ", "▁").map_err(e)?)).map_err(e)?;
            t.with_pre_tokenizer(Some(
                Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
                    .map_err(e)?,
            ));
            t.with_decoder(Some(sentencepiece_decoder(false)?));
            t
        }
    };
    if let Some(regex) = pre.and_then(split_regex) {
        let split =
            Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(e)?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
    }
    Ok(tokenizer)
}

/// transformers' post-processor: `[BOS] $A [EOS]` for one text, `[BOS] $A [EOS] [BOS] $B [EOS]`
/// (second half type 1) for a pair, with whichever of BOS / EOS is added.
fn template(bos: Option<(&str, u32)>, eos: Option<(&str, u32)>) -> std::result::Result<TemplateProcessing, String> {
    let piece = |t: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |s: &str, type_id: u32| serde_json::json!({"Sequence": {"id": s, "type_id": type_id}});
    let half = |s: &str, type_id: u32| {
        let mut v = Vec::new();
        v.extend(bos.map(|(t, _)| piece(t, type_id)));
        v.push(sequence(s, type_id));
        v.extend(eos.map(|(t, _)| piece(t, type_id)));
        v
    };
    let single = half("A", 0);
    let pair: Vec<_> = half("A", 0).into_iter().chain(half("B", 1)).collect();
    let mut special = serde_json::Map::new();
    for (t, id) in [bos, eos].into_iter().flatten() {
        special.insert(t.to_string(), serde_json::json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let json =
        serde_json::json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special});
    serde_json::from_value(json).map_err(|e| format!("post-processor: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_merges_matches_transformers() {
        // transformers' generate_merges on the same vocabulary (with a repeated token "b"),
        // ranked by scores and by position.
        let tokens = ["a", "b", "c", "ab", "bc", "abc", "ca", "cab", "b", "abca"];
        let scores = [0.0, -1.0, -2.0, -3.0, -3.0, -1.5, -4.0, -0.5, -7.0, -3.0];
        let vocab = vocab_of(tokens.iter().copied()).unwrap();
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(l, r)| (l.to_string(), r.to_string())).collect::<Vec<_>>();
        let by_score = generate_merges(&vocab, &py_dict(tokens.iter().copied().zip(scores)));
        let want = [("ca", "b"), ("c", "ab"), ("ab", "c"), ("a", "bc"), ("abc", "a"), ("ab", "ca"), ("a", "b")];
        let want: Vec<_> = want.into_iter().chain([("b", "c"), ("c", "a")]).collect();
        assert_eq!(by_score, pairs(&want));
        let by_position = generate_merges(&vocab, &py_dict(tokens.iter().enumerate().map(|(i, t)| (*t, -(i as f64)))));
        let want = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc"), ("c", "a"), ("ca", "b"), ("c", "ab")];
        let want: Vec<_> = want.into_iter().chain([("abc", "a"), ("ab", "ca")]).collect();
        assert_eq!(by_position, pairs(&want));
    }

    #[test]
    fn byte_chars_spell_the_byte_level_alphabet() {
        let chars = byte_chars();
        let set: HashSet<char> = chars.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(set, ByteLevel::alphabet().into_iter().collect::<HashSet<char>>());
        assert_eq!((chars[usize::from(b' ')], chars[usize::from(b'\n')], chars[usize::from(b'A')]), ('Ġ', 'Ċ', 'A'));
    }

    #[test]
    fn every_split_regex_compiles_and_splits() {
        for pre in ["llama-bpe", "tekken", "qwen2", "qwen35", "gpt-4o"] {
            let regex = split_regex(pre).unwrap();
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).unwrap();
            let mut t = Tokenizer::new(BPE::default());
            t.with_pre_tokenizer(Some(split));
            let pieces = t.get_pre_tokenizer().unwrap();
            let mut s = tokenizers::PreTokenizedString::from("Hello world's 12345\n\n  done");
            tokenizers::PreTokenizer::pre_tokenize(pieces, &mut s).unwrap();
            let got: Vec<String> = s
                .get_splits(tokenizers::OffsetReferential::Original, tokenizers::OffsetType::Byte)
                .into_iter()
                .map(|(p, ..)| p.to_string())
                .collect();
            assert_eq!(got.concat(), "Hello world's 12345\n\n  done", "{pre}");
            assert!(got.len() >= 6, "{pre}: {got:?}");
        }
        assert!(split_regex("smollm").is_none());
    }

    #[test]
    fn python_whitespace() {
        assert!(py_isspace(' ') && py_isspace('\u{3000}') && py_isspace('\u{1f}'));
        assert!(!py_isspace('\u{2581}') && !py_isspace('a'));
    }
}
