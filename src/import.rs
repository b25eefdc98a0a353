//! Import of a Hugging Face PEFT prefix-tuning adapter as a run's starting point (the
//! counterpart of [`crate::export::peft`]; the layout is described there).

use std::path::Path;

use serde_json::json;
use tch::{Device, Tensor};

use crate::config::{PeftStart, RunConfig};
use crate::error::{Error, Result};
use crate::method::subspace::Subspace;
use crate::model::load::Weights;
use crate::model::Encoder;

/// Starts `subspace` from the PEFT prefix-tuning adapter in `dir` (`adapter_config.json` +
/// `adapter_model.safetensors`, as PEFT or [`crate::export::peft`] write them): vertex 0, or every vertex
/// perturbed around it (`init_peft_vertices`). A `head.safetensors` beside it (written by
/// [`crate::export::peft`]) initialises the heads too when its shape fits the task. Returns notes for the
/// run's results.
pub fn import_peft(dir: &Path, subspace: &mut Subspace, cfg: &RunConfig, encoder: &Encoder) -> Result<Vec<String>> {
    let cfg_path = dir.join("adapter_config.json");
    let ac = crate::model::load::json_object(&cfg_path)?;
    let field = |k: &str| ac.get(k).and_then(|v| v.as_i64());
    let bad = |m: String| Err(Error::Input(format!("{}: {m}", cfg_path.display())));
    if ac.get("peft_type").and_then(|v| v.as_str()) != Some("PREFIX_TUNING") {
        return bad(format!(
            "peft_type is {}, expected \"PREFIX_TUNING\"",
            ac.get("peft_type").unwrap_or(&json!(null))
        ));
    }
    let (l, h, p) = (encoder.num_layers(), encoder.hidden_size(), subspace.prefix_len());
    for (key, want) in [
        ("num_layers", l),
        ("token_dim", h),
        ("num_attention_heads", encoder.config.num_attention_heads),
        ("num_virtual_tokens", p),
    ] {
        match field(key) {
            Some(v) if v == want => {}
            Some(v) if key == "num_virtual_tokens" => {
                return bad(format!("{v} virtual tokens, the run has prefix_len {p} (pass --set prefix_len={v})"))
            }
            Some(v) => return bad(format!("{key} is {v}, the model has {want}: the adapter is for another model")),
            None => return bad(format!("no integer \"{key}\"")),
        }
    }
    let weights_path = dir.join("adapter_model.safetensors");
    if !weights_path.is_file() && dir.join("adapter_model.bin").is_file() {
        return Err(Error::Input(format!(
            "{}: only safetensors adapters can be read (save it with safe_serialization=True)",
            dir.join("adapter_model.bin").display()
        )));
    }
    let tensors = Weights::read(&weights_path, Device::Cpu)?.into_map();
    let emb = tensors.get("prompt_embeddings").ok_or_else(|| {
        Error::Input(format!(
            "{}: no tensor \"prompt_embeddings\" (a PEFT prefix adapter has one)",
            weights_path.display()
        ))
    })?;
    if emb.size() != [p, 2 * l * h] {
        return Err(Error::Input(format!(
            "{}: \"prompt_embeddings\" has shape {:?}, expected [{p}, {}] (virtual tokens, 2 · layers · hidden)",
            weights_path.display(),
            emb.size(),
            2 * l * h
        )));
    }
    // (p, 2LH) → (p, L, 2, H) → (L, 2, p, H): the inverse of the export's layout.
    let prefix = emb.view([p, l, 2, h]).permute([1, 2, 0, 3]).contiguous();
    let set = |s: &mut Subspace, i: usize, t: &Tensor| {
        s.set_vertex_prefix(i, t).map_err(|e| Error::Input(format!("{}: {e}", weights_path.display())))
    };
    let mut notes = vec![format!("started from the PEFT adapter {}", dir.display())];
    match cfg.init_peft_vertices {
        PeftStart::One => set(subspace, 0, &prefix)?,
        PeftStart::All => {
            let std = prefix.std(true).double_value(&[]) * cfg.init_peft_noise;
            for i in 0..subspace.n {
                let noise = if subspace.n > 1 { prefix.randn_like() * std } else { prefix.zeros_like() };
                set(subspace, i, &(&prefix + noise))?;
            }
        }
    }
    let head_path = dir.join("head.safetensors");
    if head_path.is_file() {
        let head = Weights::read(&head_path, Device::Cpu)?.into_map();
        let loaded = match (head.get("weight"), head.get("bias")) {
            (Some(w), Some(b)) => {
                let heads = match cfg.init_peft_vertices {
                    PeftStart::One => 1,
                    PeftStart::All => subspace.n,
                };
                (0..heads).try_for_each(|i| subspace.set_head(i, w, b))
            }
            _ => Err("no \"weight\" and \"bias\" tensors".to_string()),
        };
        notes.push(match loaded {
            Ok(()) => format!("the head started from {}", head_path.display()),
            Err(e) => format!("the head of {} was not used ({e}); it starts at random", head_path.display()),
        });
    }
    Ok(notes)
}
