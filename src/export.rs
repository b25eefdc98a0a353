//! Interop with Hugging Face PEFT: export of a trained prefix (at the centroid or a vertex)
//! as a prefix-tuning adapter, with the classification head saved alongside (the import is
//! [`crate::import`]).
//!
//! PEFT's layout: `prompt_embeddings` is `(p, 2·L·H)`; for virtual token t, entry
//! `(2l + kv)·H + h` is the key (kv = 0) or value (kv = 1) of layer l, dimension h (heads
//! × head_dim, in the attention's own head order).

use std::path::Path;

use serde_json::json;
use tch::Device;

use crate::atomic::{write_atomic, write_tensors_atomic as save};
use crate::error::{Error, Result};
use crate::model::{Arch, Positions};
use crate::session::Session;
use crate::subspace::{At, Subspace};

/// Writes `adapter_config.json`, `adapter_model.safetensors`, `head.safetensors` and
/// `head_config.json` into `out`. Returns a warning to print, if any.
pub fn peft(session: &Session, subspace: &Subspace, at: &At, out: &Path) -> Result<Option<String>> {
    if subspace.prefix_len() == 0 {
        return Err(Error::Input(format!(
            "export --format peft needs a run with a deep prefix (method subspace or prefix); this run's method is {}",
            session.cfg.method.name()
        )));
    }
    if session.encoder()?.arch == Arch::Mpnet {
        return Err(Error::Input(
            "export --format peft is not possible for an MPNet model: transformers' MPNetModel takes no \
             past_key_values, which PEFT prefix tuning needs"
                .into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let enc = session.encoder()?;
    let (l, h, p) = (enc.num_layers(), enc.hidden_size(), subspace.prefix_len());
    let prefix = tch::no_grad(|| subspace.mixed_prefix(&subspace.fixed_alphas(at, enc.device())));
    // (L, 2, 1, p, H) → (p, L, 2, H) → (p, 2LH)
    let emb = prefix.squeeze_dim(2).permute([2, 0, 1, 3]).reshape([p, 2 * l * h]).to(Device::Cpu).contiguous();
    let (w, b) = subspace.head_at(at);
    save(&[("prompt_embeddings", &emb)], &out.join("adapter_model.safetensors"))?;
    save(
        &[("weight", &w.to(Device::Cpu).contiguous()), ("bias", &b.to(Device::Cpu).contiguous())],
        &out.join("head.safetensors"),
    )?;
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
        "task": session.task.name,
        "at": format!("{at:?}"),
        "positions": session.cfg.positions,
    });
    write_atomic(&out.join("head_config.json"), serde_json::to_string_pretty(&head).expect("json").as_bytes())?;
    Ok((session.cfg.positions == Positions::Unshifted).then(|| {
        "this run was trained with unshifted positions (0..T-1 for the real tokens); Hugging Face BERT with a \
         prefix shifts them to p..p+T-1, so predictions in PEFT will differ from ours (train with \
         --set positions=shifted for an exact match)"
            .to_string()
    }))
}
