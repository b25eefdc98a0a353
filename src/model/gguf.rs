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

use std::fs::File;
use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, DType, Device, Storage};
use tch::Tensor;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

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

pub use super::gguf_tokenizer::GgufTokenizer;
use super::gguf_tokenizer::{build, template, Flavour, VocabSpec, TOKEN_CONTROL, TOKEN_USER_DEFINED};
