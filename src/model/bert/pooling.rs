//! Pooling of the final hidden states into one feature vector per example.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::load::{json_file, json_object};

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

    /// The pooling a model folder declares (sentence-transformers `modules.json` naming a
    /// Pooling module, whose `config.json` turns one `pooling_mode_*` on), if any. A file that
    /// cannot be read, or a pooling this tool does not compute (max, mean-sqrt-len, weighted
    /// mean, or several concatenated), is an error naming the file: falling back to another
    /// pooling would give the model features it was not trained for.
    pub fn declared(dir: &Path) -> Result<Option<Pooling>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules = json_file(&modules_path)?;
        let list = modules
            .as_array()
            .ok_or_else(|| Error::Input(format!("{}: expected a JSON list of modules", modules_path.display())))?;
        let Some(pool_dir) = list.iter().find_map(|m| {
            let ty = m.get("type")?.as_str()?;
            ty.ends_with("Pooling").then(|| m.get("path")?.as_str().map(str::to_string))?
        }) else {
            return Ok(None);
        };
        let path = dir.join(pool_dir).join("config.json");
        let cfg = json_object(&path)?;
        let on: Vec<&str> = cfg
            .iter()
            .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect();
        match on[..] {
            [] => Ok(None),
            ["pooling_mode_mean_tokens"] => Ok(Some(Pooling::Mean)),
            ["pooling_mode_cls_token"] => Ok(Some(Pooling::Cls)),
            _ => Err(Error::Input(format!(
                "{}: declares {} = true; this tool pools by the mean or the first token only (choose one yourself, knowing the model was trained otherwise: pooling = \"mean\" or \"cls\" in a run's config, --pool for embed)",
                path.display(),
                on.join(" = true, ")
            ))),
        }
    }

    /// `auto` resolution: the declared pooling, else the first token.
    pub fn auto(dir: &Path) -> Result<Pooling> {
        Ok(Self::declared(dir)?.unwrap_or(Pooling::Cls))
    }
}

#[cfg(test)]
mod tests {
    use super::Pooling;

    /// A folder whose modules.json names a Pooling module in `1_Pooling` with `config`.
    fn folder(modules: &str, config: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("modules.json"), modules).unwrap();
        std::fs::create_dir(tmp.path().join("1_Pooling")).unwrap();
        std::fs::write(tmp.path().join("1_Pooling/config.json"), config).unwrap();
        tmp
    }

    const MODULES: &str = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;

    #[test]
    fn a_declared_pooling_is_used_or_refused_never_replaced() {
        let mode = |m: &str| {
            format!(
                r#"{{"word_embedding_dimension": 8, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false, "{m}": true}}"#
            )
        };
        let d = folder(MODULES, &mode("pooling_mode_mean_tokens"));
        assert_eq!(Pooling::auto(d.path()).unwrap(), Pooling::Mean);
        let d = folder(MODULES, &mode("pooling_mode_cls_token"));
        assert_eq!(Pooling::auto(d.path()).unwrap(), Pooling::Cls);
        assert_eq!(Pooling::auto(tempfile::tempdir().unwrap().path()).unwrap(), Pooling::Cls, "no modules.json");
        let d = folder(r#"[{"path": "", "type": "sentence_transformers.models.Transformer"}]"#, "{}");
        assert_eq!(Pooling::declared(d.path()).unwrap(), None, "no Pooling module");
        for (modules, config, file, says) in [
            (MODULES, mode("pooling_mode_max_tokens"), "1_Pooling/config.json", "pooling_mode_max_tokens = true"),
            (MODULES, mode("pooling_mode_weightedmean_tokens"), "1_Pooling/config.json", "weightedmean"),
            (
                MODULES,
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#.into(),
                "1_Pooling/config.json",
                "pooling_mode_max_tokens = true, pooling_mode_mean_tokens = true",
            ),
            (MODULES, "{".into(), "1_Pooling/config.json", "not valid JSON"),
            ("{", mode("pooling_mode_mean_tokens"), "modules.json", "not valid JSON"),
            ("{}", mode("pooling_mode_mean_tokens"), "modules.json", "a JSON list"),
        ] {
            let d = folder(modules, &config);
            let e = Pooling::auto(d.path()).unwrap_err().to_string();
            assert!(e.contains(file) && e.contains(says), "{modules} / {config}: {e}");
        }
    }
}
