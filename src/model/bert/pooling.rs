//! Pooling of the final hidden states into one feature vector per example.

use std::collections::HashMap;
use std::path::Path;

use tch::{Kind, Tensor};

/// Pooling of the final hidden states into one vector per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real (non-padding) tokens.
    Mean,
    /// The first token ([CLS] / `<s>`).
    Cls,
    /// The last real token of a right-padded batch (decoders).
    Last,
}

impl Pooling {
    /// Pools `(B, T, H)` hidden states with the `(B, T)` attention mask into `(B, H)`.
    pub fn pool(self, hidden: &Tensor, attention_mask: &Tensor) -> Tensor {
        match self {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Last => {
                let h = hidden.size()[2];
                let last = (attention_mask.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0);
                hidden.gather(1, &last.view([-1, 1, 1]).expand([-1, 1, h], false), false).squeeze_dim(1)
            }
            Pooling::Mean => {
                let m = attention_mask.to_kind(hidden.kind()).unsqueeze(-1);
                (hidden * &m).sum_dim_intlist(1, false, None) / m.sum_dim_intlist(1, false, None).clamp_min(1.0)
            }
        }
    }

    /// The pooling a model folder declares (sentence-transformers `1_Pooling/config.json`),
    /// if any.
    pub fn declared(dir: &Path) -> Option<Pooling> {
        let modules: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("modules.json")).ok()?).ok()?;
        let pool_dir = modules.as_array()?.iter().find_map(|m| {
            let ty = m.get("type")?.as_str()?;
            ty.ends_with("Pooling").then(|| m.get("path")?.as_str().map(str::to_string))?
        })?;
        let cfg: HashMap<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(pool_dir).join("config.json")).ok()?).ok()?;
        let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if on("pooling_mode_mean_tokens") {
            Some(Pooling::Mean)
        } else if on("pooling_mode_cls_token") {
            Some(Pooling::Cls)
        } else {
            None
        }
    }

    /// `auto` resolution: the declared pooling, else the first token.
    pub fn auto(dir: &Path) -> Pooling {
        Self::declared(dir).unwrap_or(Pooling::Cls)
    }
}
