//! Decoder-only LLMs from Hugging Face model folders (`config.json`, `model.safetensors` or
//! sharded `model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`,
//! `tokenizer.json`): model types `llama`, `mistral`, `qwen2`, `gemma3_text` and `gemma3` (the
//! text model of the multimodal checkpoint). The weights are handed to [`Decoder::from_weights`]
//! under their GGUF names, in the layout the decoder expects (Gemma's norm weights as `1 + w`),
//! read tensor by tensor and converted to fp32.
//!
//! What the numbers must match is transformers (5.x) run on the same folder, so `config.json`
//! is read as transformers reads it, its class defaults included; whatever the decoder cannot
//! compute the way transformers would (a rotary scaling, attention biases of a family without
//! them, a layer pattern it cannot express, ...) is refused with an error naming the file and
//! the key, never run with different numbers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::{Device, Kind, Tensor};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::decoder::{self, Decoder, DecoderConfig, Family};
use super::gguf::GgufTokenizer;
use super::load::json_object;
use super::tokenizer::{special_token, tokenizer_config};
use crate::error::{Error, Result};

/// The `model_type`s of `config.json` this module loads.
pub const MODEL_TYPES: [&str; 5] = ["llama", "mistral", "qwen2", "gemma3_text", "gemma3"];

/// Whether `dir` is a Hugging Face folder of a supported decoder (config.json model_type in
/// [`MODEL_TYPES`]).
pub fn is_hf_decoder(dir: &Path) -> bool {
    json_object(&dir.join("config.json"))
        .is_ok_and(|m| m.get("model_type").and_then(Value::as_str).is_some_and(|t| MODEL_TYPES.contains(&t)))
}

/// The [`DecoderConfig`] of the folder's `config.json`.
pub fn config(dir: &Path) -> Result<DecoderConfig> {
    Ok(parse(dir)?.config)
}

/// Loads the decoder of a Hugging Face folder.
pub fn load(dir: &Path, device: Device) -> Result<Decoder> {
    let mut w = HfWeights::open(dir)?;
    let config = w.config().clone();
    Decoder::from_weights(config, &mut w, device)
}

// ---------------------------------------------------------------------------------------------
// config.json

/// What `config.json` says beyond the [`DecoderConfig`].
#[derive(Debug, Clone)]
struct Parsed {
    config: DecoderConfig,
    model_type: String,
    /// `tie_word_embeddings`.
    tied: bool,
    /// Qwen2: biases on the query, key and value projections.
    qkv_bias: bool,
    config_path: PathBuf,
}

/// One JSON object of config.json (the root, or `text_config`), for typed reads with messages
/// that name the file and the key.
#[derive(Clone, Copy)]
struct Json<'a> {
    file: &'a Path,
    obj: &'a Map<String, Value>,
    /// `""` or `"text_config."`, for messages.
    prefix: &'static str,
}

impl<'a> Json<'a> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn err(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}: key \"{}\" {what}", self.file.display(), self.name(key)))
    }

    /// The value, `None` when missing or null.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.err(key, format!("= {v}: expected an integer"))),
        }
    }

    /// An integer; `default` when missing (transformers' class default), an error when there is none.
    fn int_or(&self, key: &str, default: Option<i64>) -> Result<i64> {
        match (self.int(key)?, default) {
            (Some(v), _) | (None, Some(v)) => Ok(v),
            (None, None) => Err(self.err(key, "is missing")),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.err(key, format!("= {v}: expected a number"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.err(key, format!("= {v}: expected true or false"))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.err(key, format!("= {v}: expected a string"))),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_object().map(Some).ok_or_else(|| self.err(key, format!("= {v}: expected an object"))),
        }
    }

    /// A key that must be absent, null or `ok`.
    fn refuse_unless(&self, key: &str, ok: impl Fn(&Value) -> bool, why: &str) -> Result<()> {
        match self.get(key) {
            Some(v) if !ok(v) => Err(self.err(key, format!("= {v} is not supported: {why}"))),
            _ => Ok(()),
        }
    }
}

/// transformers' class defaults of the keys a config may leave out.
struct Defaults {
    /// `None`: the key is required.
    sizes: Option<SizeDefaults>,
    kv_heads: Option<i64>,
    head_dim: Option<i64>,
    context: i64,
    tied: bool,
}

/// Gemma3TextConfig's defaults for the sizes (the official multimodal Gemma 3 configs leave
/// most of `text_config` to them).
struct SizeDefaults {
    vocab: i64,
    hidden: i64,
    ffn: i64,
    layers: i64,
    heads: i64,
}

fn parse(dir: &Path) -> Result<Parsed> {
    let path = dir.join("config.json");
    let root_obj = json_object(&path)?;
    let top = Json { file: &path, obj: &root_obj, prefix: "" };
    let model_type = top.string("model_type")?.ok_or_else(|| top.err("model_type", "is missing"))?.to_string();
    if !MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(top.err(
            "model_type",
            format!("= \"{model_type}\" is not supported (expected one of {})", MODEL_TYPES.join(", ")),
        ));
    }
    top.refuse_unless(
        "quantization_config",
        |_| false,
        "quantized checkpoints cannot be loaded; use the fp32/fp16/bf16 weights",
    )?;
    let j = if model_type == "gemma3" {
        let text_cfg = top.object("text_config")?.ok_or_else(|| top.err("text_config", "is missing"))?;
        Json { file: &path, obj: text_cfg, prefix: "text_config." }
    } else {
        top
    };
    let family = if model_type.starts_with("gemma3") { Family::Gemma3 } else { Family::Llama };
    let d = match model_type.as_str() {
        "llama" => Defaults { sizes: None, kv_heads: None, head_dim: None, context: 2048, tied: false },
        "mistral" => Defaults { sizes: None, kv_heads: Some(8), head_dim: None, context: 131_072, tied: false },
        "qwen2" => Defaults { sizes: None, kv_heads: Some(32), head_dim: None, context: 32_768, tied: false },
        "gemma3_text" => Defaults { sizes: None, kv_heads: Some(4), head_dim: Some(256), context: 131_072, tied: true },
        _ => Defaults {
            sizes: Some(SizeDefaults { vocab: 262_208, hidden: 2304, ffn: 9216, layers: 26, heads: 8 }),
            kv_heads: Some(4),
            head_dim: Some(256),
            context: 131_072,
            tied: true,
        },
    };
    let sd = d.sizes.as_ref();
    let hidden = j.int_or("hidden_size", sd.map(|s| s.hidden))?;
    let layers = j.int_or("num_hidden_layers", sd.map(|s| s.layers))?;
    let heads = j.int_or("num_attention_heads", sd.map(|s| s.heads))?;
    let ffn = j.int_or("intermediate_size", sd.map(|s| s.ffn))?;
    let vocab = j.int_or("vocab_size", sd.map(|s| s.vocab))?;
    for (k, v) in [
        ("hidden_size", hidden),
        ("num_hidden_layers", layers),
        ("num_attention_heads", heads),
        ("intermediate_size", ffn),
        ("vocab_size", vocab),
    ] {
        if !(1..=1 << 20).contains(&v) {
            return Err(j.err(k, format!("= {v}: expected a size in [1, 1048576]")));
        }
    }
    let kv_heads = match j.int("num_key_value_heads")? {
        Some(v) => v,
        None => d.kv_heads.unwrap_or(heads),
    };
    if !(1..=heads).contains(&kv_heads) || heads % kv_heads != 0 {
        return Err(j.err(
            "num_key_value_heads",
            format!("= {kv_heads}: num_attention_heads = {heads} must be a positive multiple of it"),
        ));
    }
    let head_dim = match (j.int("head_dim")?, d.head_dim) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            if hidden % heads != 0 {
                return Err(j.err(
                    "head_dim",
                    format!("is missing and hidden_size = {hidden} is not a multiple of num_attention_heads = {heads}"),
                ));
            }
            hidden / heads
        }
    };
    if !(2..=1 << 16).contains(&head_dim) || head_dim % 2 != 0 {
        return Err(j.err("head_dim", format!("= {head_dim}: expected an even size (rotary embeddings rotate pairs)")));
    }
    let eps = j.float("rms_norm_eps")?.unwrap_or(1e-6);
    if !(eps > 0.0 && eps < 1.0) {
        return Err(j.err("rms_norm_eps", format!("= {eps}: expected a number in (0, 1)")));
    }
    let context = j.int_or("max_position_embeddings", Some(d.context))?;
    if context < 1 {
        return Err(j.err("max_position_embeddings", format!("= {context}: expected a positive length")));
    }
    let tied = if model_type == "gemma3" {
        top.boolean("tie_word_embeddings")?.unwrap_or(true)
    } else {
        j.boolean("tie_word_embeddings")?.unwrap_or(d.tied)
    };

    // What the model code computes, and what it does not.
    let no = |v: &Value| v.as_bool() == Some(false);
    match family {
        Family::Llama => {
            let act = j.string("hidden_act")?.unwrap_or("silu");
            if act != "silu" {
                return Err(j.err("hidden_act", format!("= \"{act}\" is not supported (the model code computes silu)")));
            }
            if model_type == "llama" {
                j.refuse_unless("attention_bias", no, "Llama-family blocks here have no attention biases")?;
                j.refuse_unless("mlp_bias", no, "Llama-family blocks here have no MLP biases")?;
            }
        }
        Family::Gemma3 => {
            let act = j.string("hidden_activation")?.unwrap_or("gelu_pytorch_tanh");
            if act != "gelu_pytorch_tanh" {
                return Err(j.err(
                    "hidden_activation",
                    format!("= \"{act}\" is not supported (the model code computes gelu_pytorch_tanh)"),
                ));
            }
            j.refuse_unless("attention_bias", no, "Gemma 3 blocks here have no attention biases")?;
            j.refuse_unless("attn_logit_softcapping", |_| false, "attention logit soft-capping is not implemented")?;
            j.refuse_unless("final_logit_softcapping", |_| false, "final logit soft-capping is not implemented")?;
            j.refuse_unless("use_bidirectional_attention", no, "the model code is causal")?;
            let scalar = j.float("query_pre_attn_scalar")?.unwrap_or(256.0);
            if scalar != head_dim as f64 {
                return Err(j.err(
                    "query_pre_attn_scalar",
                    format!("= {scalar} is not supported: the model code scales attention scores by 1/√head_dim (head_dim = {head_dim})"),
                ));
            }
        }
    }
    let (rope_base, rope_local_base) = match family {
        Family::Llama => {
            let b = rope_llama(&j)?;
            (b, b)
        }
        Family::Gemma3 => rope_gemma3(&j)?,
    };
    let (sliding_window, global_every) = attention_pattern(&j, &model_type, layers)?;
    let config = DecoderConfig {
        family,
        layers,
        hidden,
        ffn,
        heads,
        kv_heads,
        head_dim,
        rope_base,
        rope_local_base,
        sliding_window,
        global_every,
        eps,
        vocab,
        context,
        permuted_qk: false,
    };
    config.validate().map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    Ok(Parsed { config, qkv_bias: model_type == "qwen2", model_type, tied, config_path: path.clone() })
}

/// The rotary type of one set of rotary parameters: only transformers' `default` is computed.
fn check_rope_type(j: &Json, key: &str, params: &Map<String, Value>) -> Result<()> {
    let t = params.get("rope_type").or_else(|| params.get("type")).filter(|v| !v.is_null());
    if let Some(t) = t {
        if t.as_str() != Some("default") {
            return Err(j.err(
                key,
                format!("has rope_type {t}, which is not supported (only the default rotary embedding, no scaling)"),
            ));
        }
    }
    if let Some(f) = params.get("partial_rotary_factor").filter(|v| !v.is_null()) {
        if f.as_f64() != Some(1.0) {
            return Err(j.err(key, format!("has partial_rotary_factor {f}, which is not supported")));
        }
    }
    Ok(())
}

/// A `rope_theta` of a parameter set, if there.
fn theta_of(j: &Json, key: &str, params: Option<&Map<String, Value>>) -> Result<Option<f64>> {
    match params.and_then(|p| p.get("rope_theta")).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| j.err(key, format!("has rope_theta {v}: expected a number"))),
    }
}

fn check_base(j: &Json, key: &str, b: f64) -> Result<f64> {
    if b > 1.0 && b.is_finite() {
        Ok(b)
    } else {
        Err(j.err(key, format!("gives a rotary base {b}: expected a finite number > 1")))
    }
}

/// Llama, Mistral, Qwen2: `rope_scaling` (old configs; it wins) or `rope_parameters`, and
/// `rope_theta` (default 10000).
fn rope_llama(j: &Json) -> Result<f64> {
    j.refuse_unless("partial_rotary_factor", |v| v.as_f64() == Some(1.0), "the model code rotates whole heads")?;
    let (key, params) = match j.object("rope_scaling")? {
        Some(p) => ("rope_scaling", Some(p)),
        None => ("rope_parameters", j.object("rope_parameters")?),
    };
    if let Some(p) = params {
        if p.contains_key("full_attention") || p.contains_key("sliding_attention") {
            return Err(j.err(key, "has per-layer-type rotary parameters, which this model type does not use"));
        }
        check_rope_type(j, key, p)?;
    }
    let base = match theta_of(j, key, params)? {
        Some(b) => b,
        None => j.float("rope_theta")?.unwrap_or(10_000.0),
    };
    check_base(j, key, base)
}

/// Gemma 3: `rope_parameters.{full_attention, sliding_attention}` (transformers 5), or the
/// older `rope_theta` (default 1e6), `rope_local_base_freq` (default 1e4) and `rope_scaling`
/// (which applies to the full-attention layers).
fn rope_gemma3(j: &Json) -> Result<(f64, f64)> {
    j.refuse_unless("partial_rotary_factor", |v| v.as_f64() == Some(1.0), "the model code rotates whole heads")?;
    let params = j.object("rope_parameters")?;
    let mut full = None;
    let mut sliding = None;
    if let Some(p) = params {
        for (k, v) in p {
            let slot = match k.as_str() {
                "full_attention" => &mut full,
                "sliding_attention" => &mut sliding,
                other => {
                    return Err(j.err(
                        "rope_parameters",
                        format!(
                        "has key \"{other}\": expected parameters per layer type (full_attention, sliding_attention)"
                    ),
                    ))
                }
            };
            if !v.is_null() {
                *slot = Some(
                    v.as_object()
                        .ok_or_else(|| j.err("rope_parameters", format!("has {k} = {v}: expected an object")))?,
                );
            }
        }
    }
    if let Some(p) = full {
        check_rope_type(j, "rope_parameters.full_attention", p)?;
    }
    if let Some(p) = sliding {
        check_rope_type(j, "rope_parameters.sliding_attention", p)?;
    }
    if let Some(s) = j.object("rope_scaling")? {
        check_rope_type(j, "rope_scaling", s)?;
    }
    let global = match theta_of(j, "rope_parameters.full_attention", full)? {
        Some(b) => b,
        None => j.float("rope_theta")?.unwrap_or(1_000_000.0),
    };
    let local = match theta_of(j, "rope_parameters.sliding_attention", sliding)? {
        Some(b) => b,
        None => j.float("rope_local_base_freq")?.unwrap_or(10_000.0),
    };
    Ok((
        check_base(j, "rope_parameters.full_attention", global)?,
        check_base(j, "rope_parameters.sliding_attention", local)?,
    ))
}

/// The sliding window and the layers that use it, as transformers derives them, expressed as
/// [`DecoderConfig::sliding_window`] and [`DecoderConfig::global_every`] (layer i, from 0, is
/// local iff (i + 1) % global_every ≠ 0); a pattern that cannot be expressed so is refused.
fn attention_pattern(j: &Json, model_type: &str, layers: i64) -> Result<(Option<i64>, i64)> {
    // The window: transformers' default 4096 when the key is missing, none when null.
    let window = |j: &Json| -> Result<Option<i64>> {
        if j.obj.contains_key("sliding_window") {
            j.int("sliding_window")
        } else {
            Ok(Some(4096))
        }
    };
    let n = usize::try_from(layers).unwrap_or(0);
    let (window, local, key): (Option<i64>, Vec<bool>, &str) = match model_type {
        "llama" => (None, vec![false; n], "sliding_window"),
        "mistral" => {
            let w = window(j)?;
            (w, vec![w.is_some(); n], "sliding_window")
        }
        "qwen2" => {
            let w = if j.boolean("use_sliding_window")?.unwrap_or(false) { window(j)? } else { None };
            let local = match layer_types(j, n)? {
                Some(t) => t,
                None => {
                    let first_full = j.int("max_window_layers")?.unwrap_or(28);
                    (0..layers).map(|i| w.is_some() && i >= first_full).collect()
                }
            };
            (w, local, "layer_types")
        }
        _ => {
            let w = window(j)?;
            let local = match layer_types(j, n)? {
                Some(t) => t,
                None => {
                    let every = j.int("sliding_window_pattern")?.unwrap_or(6);
                    if every < 1 {
                        return Err(j.err("sliding_window_pattern", format!("= {every}: expected a positive integer")));
                    }
                    (0..layers).map(|i| (i + 1) % every != 0).collect()
                }
            };
            (w, local, "layer_types")
        }
    };
    if !local.iter().any(|&l| l) {
        return Ok((None, 6));
    }
    let Some(w) = window else {
        return Err(j.err(key, "has sliding-attention layers but sliding_window is null"));
    };
    if w < 1 {
        return Err(j.err("sliding_window", format!("= {w}: expected a positive number of tokens")));
    }
    let every = (2..=layers + 1).find(|k| local.iter().enumerate().all(|(i, &l)| l == ((i as i64 + 1) % k != 0)));
    match every {
        Some(k) => Ok((Some(w), k)),
        None => Err(j.err(
            key,
            "gives a pattern of sliding and full attention layers the model code cannot run (it needs every k-th layer full, the others sliding)",
        )),
    }
}

/// `layer_types` as "is sliding" flags, when the config lists them.
fn layer_types(j: &Json, n: usize) -> Result<Option<Vec<bool>>> {
    let Some(v) = j.get("layer_types") else { return Ok(None) };
    let a = v.as_array().ok_or_else(|| j.err("layer_types", format!("= {v}: expected a list")))?;
    if a.len() != n {
        return Err(j.err("layer_types", format!("has {} entries for num_hidden_layers = {n}", a.len())));
    }
    a.iter()
        .map(|t| match t.as_str() {
            Some("full_attention") => Ok(false),
            Some("sliding_attention") => Ok(true),
            _ => Err(j.err(
                "layer_types",
                format!("has entry {t}, which is not supported (expected full_attention or sliding_attention)"),
            )),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

// ---------------------------------------------------------------------------------------------
// safetensors

/// Where a tensor lies in a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    dtype: String,
    shape: Vec<i64>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The bytes per element of a safetensors dtype.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        _ => return None,
    })
}

fn bad_file(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Input(format!(
        "{}: not a valid safetensors file ({why}); the file may be truncated or corrupted: download it again",
        path.display()
    ))
}

/// The tensors a safetensors file holds, from its header (the data stays on disk).
fn read_header(path: &Path) -> Result<Vec<(String, Entry)>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut size = [0u8; 8];
    if len < 8 {
        return Err(bad_file(path, "shorter than its header"));
    }
    f.read_exact(&mut size).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(size);
    if n > len - 8 || n > 1 << 30 {
        return Err(bad_file(path, format!("header size {n} for a file of {len} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let map: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| bad_file(path, format!("header is not a JSON object: {e}")))?;
    let data = 8 + n;
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let bad = |why: &str| bad_file(path, format!("tensor \"{name}\": {why}"));
        let dtype = v.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("no dtype"))?.to_string();
        let shape: Vec<i64> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| i64::try_from(d).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let offsets = v.get("data_offsets").and_then(Value::as_array).ok_or_else(|| bad("no data_offsets"))?;
        let (start, end) = match offsets.as_slice() {
            [a, b] => (a.as_u64(), b.as_u64()),
            _ => (None, None),
        };
        let (Some(start), Some(end)) = (start, end) else { return Err(bad("data_offsets is not [start, end]")) };
        if start > end || end > len - data {
            return Err(bad(&format!("data_offsets [{start}, {end}] outside the file")));
        }
        if let Some(s) = dtype_size(&dtype) {
            let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            if numel.and_then(|k| k.checked_mul(s)) != Some(end - start) {
                return Err(bad(&format!("{} bytes for shape {shape:?} of {dtype}", end - start)));
            }
        }
        out.push((name, Entry { file: path.to_path_buf(), dtype, shape, start: data + start, end: data + end }));
    }
    Ok(out)
}

/// The tensors of a folder: `model.safetensors`, or the shards `model.safetensors.index.json`
/// lists. Returns them by name, and the file to name in messages about a tensor that is missing.
fn read_tensors(dir: &Path) -> Result<(HashMap<String, Entry>, PathBuf)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        return Ok((read_header(&single)?.into_iter().collect(), single));
    }
    if !index.is_file() {
        let bin = ["pytorch_model.bin", "pytorch_model.bin.index.json"].into_iter().find(|f| dir.join(f).is_file());
        let hint = match bin {
            Some(f) => format!(
                " (it holds PyTorch weights, {f}, which are not read: save them as safetensors with save_pretrained)"
            ),
            None => String::new(),
        };
        return Err(Error::Input(format!(
            "{}: no model.safetensors or model.safetensors.index.json{hint}",
            dir.display()
        )));
    }
    let v = json_object(&index)?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Input(format!("{}: key \"weight_map\" is missing or not an object", index.display())))?;
    let mut files = BTreeMap::<String, Vec<&str>>::new();
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| {
            Error::Input(format!("{}: weight_map[\"{name}\"] = {f}: expected a file name", index.display()))
        })?;
        if f.contains('/') || f.contains('\\') || f == ".." {
            return Err(Error::Input(format!(
                "{}: weight_map[\"{name}\"] = \"{f}\": expected a file of the folder",
                index.display()
            )));
        }
        files.entry(f.to_string()).or_default().push(name);
    }
    let mut out = HashMap::new();
    for (f, names) in files {
        let path = dir.join(&f);
        if !path.is_file() {
            return Err(Error::Input(format!(
                "{}: lists {f}, which is missing from the folder (download it again)",
                index.display()
            )));
        }
        let mut held: HashMap<String, Entry> = read_header(&path)?.into_iter().collect();
        for name in names {
            let e = held.remove(name).ok_or_else(|| {
                Error::Input(format!("{}: tensor \"{name}\" is listed in {f}, which does not hold it", index.display()))
            })?;
            out.insert(name.to_string(), e);
        }
    }
    Ok((out, index))
}

/// The raw bytes of a tensor.
fn read_bytes(e: &Entry) -> Result<Vec<u8>> {
    let mut f = File::open(&e.file).map_err(|err| Error::io(&e.file, err))?;
    f.seek(SeekFrom::Start(e.start)).map_err(|err| Error::io(&e.file, err))?;
    let n = usize::try_from(e.end - e.start)
        .map_err(|_| Error::Input(format!("{}: a tensor too large for this machine", e.file.display())))?;
    let mut bytes = vec![0u8; n];
    f.read_exact(&mut bytes).map_err(|err| Error::io(&e.file, err))?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Weights

/// Where a GGUF-named tensor comes from.
#[derive(Debug, Clone)]
struct Source {
    /// The Hugging Face name.
    hf: String,
    /// The shape config.json implies.
    shape: Vec<i64>,
    /// Gemma's RMSNorm multiplies by `1 + w`; the decoder by the stored weight.
    plus_one: bool,
}

/// The weights of a Hugging Face folder behind [`decoder::Weights`]: GGUF names mapped to the
/// folder's tensors, each read from disk when asked for, checked against the shape config.json
/// implies, converted to fp32 (Gemma's norm weights to `1 + w`).
#[derive(Debug)]
pub struct HfWeights {
    parsed: Parsed,
    /// The weights file (or index) for messages; the file of the last tensor read.
    current: PathBuf,
    tensors: HashMap<String, Entry>,
    sources: HashMap<String, Source>,
}

impl HfWeights {
    /// Reads `config.json` and the headers of the weights, and checks that the checkpoint holds
    /// the tensors of the model config.json describes and no others (PyTorch's `inv_freq`
    /// buffers, and the vision tower of a multimodal Gemma 3, aside).
    pub fn open(dir: &Path) -> Result<Self> {
        let parsed = parse(dir)?;
        let (tensors, weights_file) = read_tensors(dir)?;
        let c = &parsed.config;
        let gemma = c.family == Family::Gemma3;
        let candidates: &[&str] = if parsed.model_type == "gemma3" {
            &["model.language_model.", "language_model.model.", "language_model."]
        } else {
            &["model.", ""]
        };
        let heads: &[&str] = if parsed.model_type == "gemma3" {
            &["lm_head.weight", "language_model.lm_head.weight"]
        } else {
            &["lm_head.weight"]
        };
        let lm_head = heads.iter().find(|n| tensors.contains_key(**n)).map(|n| n.to_string());
        let prefix = candidates
            .iter()
            .find(|p| tensors.contains_key(&format!("{p}embed_tokens.weight")))
            .unwrap_or(&candidates[0])
            .to_string();

        let (h, hd, q, kv) = (c.hidden, c.head_dim, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut sources = HashMap::new();
        let mut add = |gguf: String, hf: String, shape: Vec<i64>, plus_one: bool| {
            sources.insert(gguf, Source { hf, shape, plus_one });
        };
        let mut embed = format!("{prefix}embed_tokens.weight");
        if !tensors.contains_key(&embed) && parsed.tied {
            // transformers ties the two either way round: the one the checkpoint has.
            if let Some(head) = &lm_head {
                embed = head.clone();
            }
        }
        add("token_embd.weight".into(), embed.clone(), vec![c.vocab, h], false);
        add("output_norm.weight".into(), format!("{prefix}norm.weight"), vec![h], gemma);
        for i in 0..c.layers {
            let g = |s: &str| format!("blk.{i}.{s}");
            let hf = |s: &str| format!("{prefix}layers.{i}.{s}");
            add(g("attn_q.weight"), hf("self_attn.q_proj.weight"), vec![q, h], false);
            add(g("attn_k.weight"), hf("self_attn.k_proj.weight"), vec![kv, h], false);
            add(g("attn_v.weight"), hf("self_attn.v_proj.weight"), vec![kv, h], false);
            add(g("attn_output.weight"), hf("self_attn.o_proj.weight"), vec![h, q], false);
            if parsed.qkv_bias {
                add(g("attn_q.bias"), hf("self_attn.q_proj.bias"), vec![q], false);
                add(g("attn_k.bias"), hf("self_attn.k_proj.bias"), vec![kv], false);
                add(g("attn_v.bias"), hf("self_attn.v_proj.bias"), vec![kv], false);
            }
            add(g("ffn_gate.weight"), hf("mlp.gate_proj.weight"), vec![c.ffn, h], false);
            add(g("ffn_up.weight"), hf("mlp.up_proj.weight"), vec![c.ffn, h], false);
            add(g("ffn_down.weight"), hf("mlp.down_proj.weight"), vec![h, c.ffn], false);
            add(g("attn_norm.weight"), hf("input_layernorm.weight"), vec![h], gemma);
            if gemma {
                add(g("attn_q_norm.weight"), hf("self_attn.q_norm.weight"), vec![hd], true);
                add(g("attn_k_norm.weight"), hf("self_attn.k_norm.weight"), vec![hd], true);
                add(g("post_attention_norm.weight"), hf("post_attention_layernorm.weight"), vec![h], true);
                add(g("ffn_norm.weight"), hf("pre_feedforward_layernorm.weight"), vec![h], true);
                add(g("post_ffw_norm.weight"), hf("post_feedforward_layernorm.weight"), vec![h], true);
            } else {
                add(g("ffn_norm.weight"), hf("post_attention_layernorm.weight"), vec![h], false);
            }
        }
        if let Some(head) = lm_head.as_ref().filter(|n| **n != embed) {
            // Untied: the output projection. Tied but stored twice: transformers ties them only
            // when both hold the same numbers, and keeps the two otherwise.
            let untie = !parsed.tied || {
                let (a, b) = (tensors.get(head), tensors.get(&embed));
                match (a, b) {
                    (Some(a), Some(b)) => a.dtype != b.dtype || a.shape != b.shape || read_bytes(a)? != read_bytes(b)?,
                    _ => true,
                }
            };
            if untie {
                add("output.weight".into(), head.clone(), vec![c.vocab, h], false);
            }
        } else if !parsed.tied {
            add("output.weight".into(), heads[0].to_string(), vec![c.vocab, h], false);
        }

        // Tensors of the text model that the model code would not use: a checkpoint that is not
        // what config.json describes (attention biases of a family without them, ...).
        let used: BTreeSet<&str> = sources.values().map(|s| s.hf.as_str()).collect();
        let mut unused: Vec<&String> = tensors
            .keys()
            .filter(|n| n.starts_with(&prefix) || heads.contains(&n.as_str()))
            .filter(|n| !used.contains(n.as_str()) && !n.ends_with("rotary_emb.inv_freq"))
            .filter(|n| !(parsed.tied && heads.contains(&n.as_str())))
            .collect();
        unused.sort();
        if let Some(n) = unused.first() {
            let file = tensors.get(*n).map_or(weights_file.clone(), |e| e.file.clone());
            let more = match unused.len() - 1 {
                0 => String::new(),
                k => format!(" (and {k} more)"),
            };
            return Err(Error::Input(format!(
                "{}: tensor \"{n}\"{more} is not part of the {} model {} describes (is this its checkpoint?)",
                file.display(),
                parsed.model_type,
                parsed.config_path.display()
            )));
        }
        Ok(Self { parsed, current: weights_file, tensors, sources })
    }

    /// The configuration read from `config.json`.
    pub fn config(&self) -> &DecoderConfig {
        &self.parsed.config
    }

    /// The Hugging Face name a GGUF-named tensor is read from.
    pub fn hf_name(&self, gguf: &str) -> Option<&str> {
        self.sources.get(gguf).map(|s| s.hf.as_str())
    }
}

impl decoder::Weights for HfWeights {
    fn path(&self) -> &Path {
        &self.current
    }

    fn has(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let src = self.sources.get(name).ok_or_else(|| {
            Error::Input(format!("{}: a {} model has no tensor {name}", self.current.display(), self.parsed.model_type))
        })?;
        let Some(e) = self.tensors.get(&src.hf) else {
            return Err(Error::Input(format!(
                "{}: missing tensor \"{}\"; is this the checkpoint {} describes?",
                self.current.display(),
                src.hf,
                self.parsed.config_path.display()
            )));
        };
        self.current = e.file.clone();
        let kind = match e.dtype.as_str() {
            "F32" => Kind::Float,
            "F16" => Kind::Half,
            "BF16" => Kind::BFloat16,
            "F64" => Kind::Double,
            other => {
                return Err(Error::Input(format!(
                    "{}: tensor \"{}\" has dtype {other} but a weight must be floating point (F32, F16, BF16 or F64); quantized checkpoints are not supported",
                    e.file.display(),
                    src.hf
                )))
            }
        };
        if e.shape != src.shape {
            return Err(Error::Input(format!(
                "{}: tensor \"{}\" has shape {:?} but {} implies {:?}",
                e.file.display(),
                src.hf,
                e.shape,
                self.parsed.config_path.display(),
                src.shape
            )));
        }
        let bytes = read_bytes(e)?;
        let t = Tensor::f_from_data_size(&bytes, &e.shape, kind)?.to_kind(Kind::Float);
        Ok(if src.plus_one { t + 1.0 } else { t })
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

/// The tokenizer of the folder (`tokenizer.json`, with `tokenizer_config.json`'s special
/// tokens and `add_bos_token` / `add_eos_token` applied as transformers applies them), with
/// its special token ids and whether `tokenizer(text)` in transformers starts with BOS or ends
/// with EOS (read off the post-processor).
pub fn tokenizer(dir: &Path) -> Result<GgufTokenizer> {
    let tj = dir.join("tokenizer.json");
    if !tj.is_file() {
        return Err(Error::Input(format!(
            "{}: no tokenizer.json (save the model's fast tokenizer with tokenizer.save_pretrained)",
            dir.display()
        )));
    }
    let bad = |e: &dyn std::fmt::Display| Error::Input(format!("{}: cannot build the tokenizer: {e}", tj.display()));
    let mut tok = Tokenizer::from_file(&tj).map_err(|e| bad(&e))?;
    let json_pad = tok.get_padding().map(|p| p.pad_token.clone());
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| bad(&e))?;

    let cfg = tokenizer_config(dir)?;
    let named = |k: &str| cfg.get(k).and_then(special_token);
    let bos = named("bos_token");
    let eos = named("eos_token");
    let unk = named("unk_token");
    let pad = named("pad_token").or(json_pad);
    // As transformers: the named special tokens, and the extra ones, that the tokenizer does not
    // have as added tokens yet become special added tokens.
    let mut specials: Vec<String> = [&bos, &eos, &unk, &pad].into_iter().flatten().cloned().collect();
    specials.extend(["sep_token", "cls_token", "mask_token"].into_iter().filter_map(named));
    for k in ["additional_special_tokens", "extra_special_tokens"] {
        if let Some(a) = cfg.get(k).and_then(Value::as_array) {
            specials.extend(a.iter().filter_map(special_token));
        }
    }
    let added: BTreeSet<String> = tok.get_added_tokens_decoder().into_values().map(|t| t.content).collect();
    let new: Vec<AddedToken> = specials
        .iter()
        .filter(|t| !added.contains(*t))
        .map(|t| AddedToken::from(t.clone(), true).normalized(false))
        .collect();
    if !new.is_empty() {
        tok.add_special_tokens(new).map_err(|e| bad(&e))?;
    }
    // transformers rebuilds the post-processor when tokenizer_config.json states add_bos_token
    // or add_eos_token, and keeps tokenizer.json's otherwise.
    if cfg.contains_key("add_bos_token") || cfg.contains_key("add_eos_token") {
        let flag = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
        let with_id = |t: &Option<String>| t.as_ref().and_then(|t| tok.token_to_id(t).map(|id| (t.clone(), id)));
        let b = with_id(&bos).filter(|_| flag("add_bos_token"));
        let e = with_id(&eos).filter(|_| flag("add_eos_token"));
        let t = template(b.as_ref(), e.as_ref()).map_err(|e| bad(&e))?;
        tok.with_post_processor(Some(t));
    }
    // What the post-processor adds around a text.
    let probe = "a";
    let with = tok.encode(probe, true).map_err(|e| bad(&e))?.get_ids().to_vec();
    let plain = tok.encode(probe, false).map_err(|e| bad(&e))?.get_ids().to_vec();
    let at = (0..=with.len().saturating_sub(plain.len()))
        .find(|&i| with.len() >= plain.len() && with[i..i + plain.len()] == plain[..]);
    let (pre, post) = match at {
        Some(i) => (&with[..i], &with[i + plain.len()..]),
        None => (&with[..], &[][..]),
    };
    if at.is_none() || pre.len() > 1 || post.len() > 1 {
        return Err(bad(&format!(
            "its post-processor turns the ids {plain:?} of \"{probe}\" into {with:?}; only a BOS token first and an EOS token last are supported"
        )));
    }
    let id = |t: &Option<String>| t.as_deref().and_then(|t| tok.token_to_id(t));
    let bos_id = pre.first().copied().or_else(|| id(&bos));
    let eos_id = post.first().copied().or_else(|| id(&eos));
    let pad_id = id(&pad);
    Ok(GgufTokenizer { tokenizer: tok, bos_id, eos_id, pad_id, add_bos: !pre.is_empty(), add_eos: !post.is_empty() })
}

/// transformers' `update_post_processor`: BOS before and EOS after each sequence, when given.
fn template(
    bos: Option<&(String, u32)>,
    eos: Option<&(String, u32)>,
) -> std::result::Result<TemplateProcessing, String> {
    let piece = |t: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let half = |s: &str, type_id: u32| {
        let mut v = Vec::new();
        v.extend(bos.map(|(t, _)| piece(t, type_id)));
        v.push(serde_json::json!({"Sequence": {"id": s, "type_id": type_id}}));
        v.extend(eos.map(|(t, _)| piece(t, type_id)));
        v
    };
    let pair: Vec<Value> = half("A", 0).into_iter().chain(half("B", 1)).collect();
    let mut special = Map::new();
    for (t, id) in [bos, eos].into_iter().flatten() {
        special.insert(t.clone(), serde_json::json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let json = serde_json::json!({"type": "TemplateProcessing", "single": half("A", 0), "pair": pair, "special_tokens": special});
    serde_json::from_value(json).map_err(|e| format!("post-processor: {e}"))
}
