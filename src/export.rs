//! Interop with Hugging Face PEFT: export of a trained prefix (at the centroid or a vertex)
//! as a prefix-tuning adapter, with the classification head saved alongside (the import is
//! [`crate::import`]).
//!
//! PEFT's layout: `prompt_embeddings` is `(p, 2·L·H)`; for virtual token t, entry
//! `(2l + kv)·H + h` is the key (kv = 0) or value (kv = 1) of layer l, dimension h (heads
//! × head_dim, in the attention's own head order). On a decoder H is the key/value width
//! (key/value heads × head_dim: PEFT sizes a prefix by the key/value heads of a model with
//! grouped-query attention), and the adapter is a `CAUSAL_LM` one: PEFT puts it in the cache
//! in front of the input, whose real tokens then start at position p (`positions = shifted`).

use std::path::{Path, PathBuf};

use serde_json::json;
use tch::Device;

use crate::atomic::{write_atomic, write_tensors_atomic as save};
use crate::error::{Error, Result};
use crate::method::subspace::{At, Subspace};
use crate::model::{Arch, Positions};
use crate::session::Session;

/// The files [`peft`] writes into its folder.
pub const PEFT_FILES: [&str; 4] =
    ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "head_config.json"];

/// An output folder for [`peft`], checked by [`check_out`].
#[derive(Debug)]
pub struct OutDir(PathBuf);

impl OutDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Checks `--out` before anything runs: a folder (or nothing yet) holding none of
/// [`PEFT_FILES`], unless `overwrite`. Other files in it are never touched.
pub fn check_out(out: &Path, overwrite: bool) -> Result<OutDir> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Input(format!("--out {}: a file; expected a folder for the adapter", out.display())));
    }
    let there: Vec<&str> = PEFT_FILES.iter().copied().filter(|f| out.join(f).exists()).collect();
    if !overwrite && !there.is_empty() {
        return Err(Error::Input(format!(
            "--out {}: already holds {}, left as they are; pass --overwrite to replace them, or name another folder",
            out.display(),
            there.join(", ")
        )));
    }
    Ok(OutDir(out.to_path_buf()))
}

/// Writes [`PEFT_FILES`] into `out`, the folder [`check_out`] accepted. Returns a warning to
/// print, if any. The four files are written into a staging folder inside `out` and moved
/// into place only once all are written: an export that fails leaves none of them (and no
/// `out` it created).
pub fn peft(session: &Session, subspace: &Subspace, at: &At, out: &OutDir) -> Result<Option<String>> {
    let out = out.path();
    let created = !out.exists();
    let staging = out.join(format!(".export-{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(out)
        .map_err(|e| Error::io(out, e))
        .and_then(|()| std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e)))
        .and_then(|()| {
            let files = write_peft(session, subspace, at, &staging).and_then(|warning| {
                for f in PEFT_FILES {
                    std::fs::rename(staging.join(f), out.join(f)).map_err(|e| Error::io(&out.join(f), e))?;
                }
                Ok(warning)
            });
            let _ = std::fs::remove_dir_all(&staging);
            files
        });
    if written.is_err() && created {
        let _ = std::fs::remove_dir(out);
    }
    written
}

/// [`peft`]'s files, written into `out`.
fn write_peft(session: &Session, subspace: &Subspace, at: &At, out: &Path) -> Result<Option<String>> {
    if subspace.prefix_len() == 0 {
        return Err(Error::Input(format!(
            "export --format peft needs a run with a deep prefix (method subspace or prefix); this run's method is {}",
            session.cfg.method.name()
        )));
    }
    if session.backbone.as_decoder().is_some() {
        return peft_causal_lm(session, subspace, at, out);
    }
    if session.encoder()?.arch == Arch::Mpnet {
        return Err(Error::Input(
            "export --format peft is not possible for an MPNet model: transformers' MPNetModel takes no \
             past_key_values, which PEFT prefix tuning needs"
                .into(),
        ));
    }
    let enc = session.encoder()?;
    let (l, h, p) = (enc.num_layers(), enc.hidden_size(), subspace.prefix_len());
    write_weights(session, subspace, at, out)?;
    let config = json!({
        "peft_type": "PREFIX_TUNING",
        "task_type": "SEQ_CLS",
        "num_virtual_tokens": p,
        "token_dim": h,
        "num_transformer_submodules": 1,
        "num_attention_heads": enc.config.num_attention_heads,
        "num_layers": l,
        "encoder_hidden_size": h,
        "prefix_projection": false,
        "inference_mode": true,
        "base_model_name_or_path": session.cfg.model_dir(),
        "revision": null,
        "modules_to_save": null,
    });
    write_atomic(&out.join("adapter_config.json"), serde_json::to_string_pretty(&config).expect("json").as_bytes())?;
    let head = json!({
        "what": "the classification head of this adapter: logits = W · pool(last_hidden_state) + b (not part of the PEFT adapter)",
        "pooling": subspace.pooling(),
        "labels": session.task.label_names,
        // A regression task: score = lo + (hi - lo) * softmax(class scores)[1].
        "poles": subspace.poles().map(|(lo, hi)| [lo, hi]),
        "task": session.task.name,
        "at": format!("{at:?}"),
        "positions": session.cfg.positions.get(),
    });
    write_atomic(&out.join("head_config.json"), serde_json::to_string_pretty(&head).expect("json").as_bytes())?;
    Ok((session.cfg.positions.get() == Positions::Unshifted).then(|| {
        "this run was trained with unshifted positions (0..T-1 for the real tokens); Hugging Face BERT with a \
         prefix shifts them to p..p+T-1, so predictions in PEFT will differ from ours (train with \
         --set positions=shifted for an exact match)"
            .to_string()
    }))
}

/// [`peft`] for a decoder: a `CAUSAL_LM` prefix-tuning adapter, and the class scores' recipe
/// (template, label words and their ids, the head's bias) in `head_config.json`.
fn peft_causal_lm(session: &Session, subspace: &Subspace, at: &At, out: &Path) -> Result<Option<String>> {
    let dec = session.backbone.as_decoder().expect("a decoder");
    let Some(prompt) = session.tokenizer.prompt() else {
        return Err(Error::Input("export --format peft: this decoder run has no template and label words".into()));
    };
    let Some(ids) = session.label_ids() else {
        return Err(Error::Input("export --format peft: this decoder run has no label words".into()));
    };
    let (l, w, p) = (dec.config.layers, dec.config.kv_heads * dec.config.head_dim, subspace.prefix_len());
    write_weights(session, subspace, at, out)?;
    let model = session.cfg.model_dir();
    let gguf = crate::model::decoder::find_gguf(&model)?;
    let config = json!({
        "peft_type": "PREFIX_TUNING",
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": p,
        "token_dim": w,
        "num_transformer_submodules": 1,
        "num_attention_heads": dec.config.kv_heads,
        "num_layers": l,
        "encoder_hidden_size": w,
        "prefix_projection": false,
        "inference_mode": true,
        "base_model_name_or_path": gguf.as_ref().and_then(|g| g.parent()).unwrap_or(&model),
        "revision": null,
        "modules_to_save": null,
    });
    write_atomic(&out.join("adapter_config.json"), serde_json::to_string_pretty(&config).expect("json").as_bytes())?;
    let head = json!({
        "what": "class scores of this adapter: the causal LM's logits of the label words' first tokens \
                 (label_ids) at the last position of the filled template, + bias (head.safetensors; \
                 weight = those rows of the output projection); not part of the PEFT adapter",
        "head": "label_words",
        "template": prompt.template,
        "label_words": prompt.words,
        "label_ids": ids,
        // Every token of each word: with a word of several tokens, the class scores are the
        // words' summed log-probabilities (teacher-forced), not the first tokens' logits.
        "label_tokens": session.label_tokens,
        "labels": session.task.label_names,
        // A regression task: score = lo + (hi - lo) * softmax(class scores)[1].
        "poles": subspace.poles().map(|(lo, hi)| [lo, hi]),
        "task": session.task.name,
        "gguf_file": gguf.as_ref().and_then(|g| g.file_name()).map(|f| f.to_string_lossy().to_string()),
        "max_len": session.cfg.max_len,
        "at": format!("{at:?}"),
        "positions": session.cfg.positions.get(),
    });
    write_atomic(&out.join("head_config.json"), serde_json::to_string_pretty(&head).expect("json").as_bytes())?;
    Ok((session.cfg.positions.get() == Positions::Unshifted).then(|| {
        "this run was trained with unshifted positions (0..T-1 for the real tokens); PEFT puts the prefix \
         in the cache, so the real tokens start at p there, and predictions in PEFT will differ from ours \
         (train with --set positions=shifted for an exact match)"
            .to_string()
    }))
}

/// Creates `out` and writes the prefix at `at` as PEFT's `prompt_embeddings` `(p, 2·L·W)`
/// (W = the backbone's prefix width: hidden size on an encoder, key/value width on a decoder)
/// and the head at `at` as `head.safetensors`.
fn write_weights(session: &Session, subspace: &Subspace, at: &At, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let b = &*session.backbone;
    let (l, w, p) = (b.num_layers(), b.prefix_width(), subspace.prefix_len());
    let prefix = tch::no_grad(|| subspace.mixed_prefix(&subspace.fixed_alphas(at, b.device())));
    // (L, 2, 1, p, W) → (p, L, 2, W) → (p, 2LW)
    let emb = prefix.squeeze_dim(2).permute([2, 0, 1, 3]).reshape([p, 2 * l * w]).to(Device::Cpu).contiguous();
    let (hw, hb) = subspace.head_at(at);
    save(&[("prompt_embeddings", &emb)], &out.join("adapter_model.safetensors"))?;
    save(
        &[("weight", &hw.to(Device::Cpu).contiguous()), ("bias", &hb.to(Device::Cpu).contiguous())],
        &out.join("head.safetensors"),
    )
}
