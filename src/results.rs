//! `results.json`, the record of a finished run: one type that `train` writes and that `report`,
//! `bench`, `plot` and `train`'s own summary read back.
//!
//! Every results.json committed under `bench/results/` loads (`tests/committed_cells.rs`);
//! what older versions did not write is optional. The file is written with its keys in
//! alphabetical order at every level (as serde_json's maps keep them), so the text of a run's
//! results.json does not depend on the order of the fields here.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The test sets a run may have scored, in table order.
pub const TEST_SETS: [&str; 3] = ["test", "test_matched", "test_mismatched"];

/// Scores by metric name (`accuracy`, `f1`, `mcc`, `pearson`, `spearman`). A score that is not
/// a number (NaN, written as `null`) reads back as NaN, and two NaN scores compare equal (as
/// their `null`s did), so that identical cells still merge.
#[derive(Debug, Clone, Default)]
pub struct Scores(pub BTreeMap<String, f64>);

impl PartialEq for Scores {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|((ka, a), (kb, b))| ka == kb && (a == b || (a.is_nan() && b.is_nan())))
    }
}

impl Deref for Scores {
    type Target = BTreeMap<String, f64>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Scores {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, f64>> for Scores {
    fn from(m: BTreeMap<String, f64>) -> Self {
        Self(m)
    }
}

impl Serialize for Scores {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Scores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(Self(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect()))
    }
}

impl Scores {
    /// The main metric of a set of scores: the first of accuracy, mcc, pearson, f1.
    pub fn main_value(&self) -> Option<(&'static str, f64)> {
        ["accuracy", "mcc", "pearson", "f1"].into_iter().find_map(|k| self.get(k).map(|v| (k, *v)))
    }
}

/// One test set's scores by point: `centroid`, `vertex0`, … (with `test_vertices`), `ensemble`.
pub type TestScores = BTreeMap<String, Scores>;

/// A number that may have been written as `null` (NaN or infinite): NaN then.
fn number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `dev_selection`: how the checkpoint was chosen on dev, and its dev score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevSelection {
    /// `centroid`, or `samples` (each dev example scored by `samples` sampled models).
    pub at: String,
    pub samples: u64,
    /// The main metric's score at the chosen checkpoint (one entry, named by the metric).
    #[serde(flatten)]
    pub score: Scores,
}

impl DevSelection {
    /// The main metric the selection names, and its score.
    pub fn main(&self) -> Option<(&str, f64)> {
        self.score.iter().next().map(|(k, v)| (k.as_str(), *v))
    }
}

/// One C of the probe's grid (`probe.per_c`), as logged in metrics.jsonl.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    #[serde(rename = "C")]
    pub c: f64,
    pub converged: bool,
    pub dev: Scores,
    #[serde(deserialize_with = "number")]
    pub gradient_norm: f64,
    pub iterations: u64,
}

/// `probe`: the head fitted by logistic (ridge) regression (methods `probe` and `setfit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// The C chosen on dev.
    #[serde(rename = "C")]
    pub c: f64,
    pub features: String,
    pub objective: String,
    pub per_c: Vec<ProbeRow>,
}

/// `setfit`: SetFit's contrastive phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetfitSummary {
    pub batch_pairs: u64,
    pub head: String,
    pub iterations: u64,
    #[serde(deserialize_with = "number")]
    pub last_loss: f64,
    pub loss: String,
    pub lr: f64,
    pub pairs: u64,
    pub steps: u64,
    pub warmup_steps: u64,
}

/// A run's `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub best_epoch: u64,
    pub best_step: u64,
    pub dev_examples: u64,
    pub dev_selection: DevSelection,
    pub epochs: u64,
    /// Per test set, the share of its most frequent class (classification; runs written
    /// before it was recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub majority: Option<BTreeMap<String, f64>>,
    /// Per test set, the scores of always answering its most frequent class, in the task's
    /// metrics (runs written before it was recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub majority_scores: Option<BTreeMap<String, Scores>>,
    pub method: String,
    /// The model folder (or GGUF file).
    pub model: PathBuf,
    /// The data notes of the run (train pool, caveats).
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSummary>,
    /// A decoder's prompt: the template and label words the run used, defaults resolved
    /// (encoder runs, and decoder runs written before it was recorded, have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<crate::prompt::Prompt>,
    /// The few-shot protocol (`per-class`, `total`).
    pub protocol: String,
    /// Whether the run was resumed from a saved state.
    pub resumed: bool,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setfit: Option<SetfitSummary>,
    pub shots: u64,
    pub split_hash: String,
    pub split_seed: u64,
    pub steps: u64,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_matched: Option<TestScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_mismatched: Option<TestScores>,
    /// Per test set, the number of examples scored (runs written before it was recorded have
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<BTreeMap<String, u64>>,
    #[serde(deserialize_with = "number")]
    pub test_seconds: f64,
    pub train_examples: u64,
    #[serde(deserialize_with = "number")]
    pub train_samples_per_second: f64,
    #[serde(deserialize_with = "number")]
    pub train_seconds: f64,
    pub vertices: u64,
}

impl Results {
    /// The scores of test set `name` (one of [`TEST_SETS`]).
    pub fn test_set(&self, name: &str) -> Option<&TestScores> {
        match name {
            "test" => self.test.as_ref(),
            "test_matched" => self.test_matched.as_ref(),
            "test_mismatched" => self.test_mismatched.as_ref(),
            _ => None,
        }
    }

    /// The test sets scored, in [`TEST_SETS`] order.
    pub fn test_sets(&self) -> impl Iterator<Item = (&'static str, &TestScores)> {
        TEST_SETS.into_iter().filter_map(|n| self.test_set(n).map(|t| (n, t)))
    }

    /// Records the scores of test set `name`.
    pub fn set_test_set(&mut self, name: &str, scores: TestScores) -> Result<()> {
        let slot = match name {
            "test" => &mut self.test,
            "test_matched" => &mut self.test_matched,
            "test_mismatched" => &mut self.test_mismatched,
            _ => return Err(Error::Input(format!("test set \"{name}\": expected one of {}", TEST_SETS.join(", ")))),
        };
        *slot = Some(scores);
        Ok(())
    }

    /// The text of results.json: pretty JSON, keys in alphabetical order at every level.
    pub fn to_json(&self) -> String {
        // Through a `serde_json::Value`, whose maps are sorted: the order of the flattened
        // main metric of `dev_selection` among `at` and `samples` depends on its name.
        let v = serde_json::to_value(self).expect("results serialise");
        serde_json::to_string_pretty(&v).expect("results serialise")
    }

    /// The results of `value` (a parsed results.json), or one line naming `path`.
    pub fn from_value(value: serde_json::Value, path: &Path) -> Result<Self> {
        serde_json::from_value(value).map_err(|e| {
            Error::Input(format!(
                "{}: {e}; expected the results.json that `prefix-subspace train` writes",
                path.display()
            ))
        })
    }

    /// The prompt the `results.json` at `path` records, alone: none when the file is missing
    /// (an unfinished run) or records none (encoder runs, decoder runs written before it was
    /// recorded); one line naming the file when it is not JSON or its `prompt` is malformed.
    pub fn recorded_prompt(path: &Path) -> Result<Option<crate::prompt::Prompt>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let bad = |e: serde_json::Error| Error::Input(format!("{}: {e}", path.display()));
        let v: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        match v.get("prompt").filter(|p| !p.is_null()) {
            None => Ok(None),
            Some(p) => Ok(Some(serde_json::from_value(p.clone()).map_err(bad)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_scores_compare_equal_and_numbers_exactly() {
        let s = |pairs: &[(&str, f64)]| Scores(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        assert_eq!(s(&[("accuracy", 0.5), ("mcc", f64::NAN)]), s(&[("accuracy", 0.5), ("mcc", f64::NAN)]));
        assert_ne!(s(&[("accuracy", 0.5)]), s(&[("accuracy", 0.5000001)]));
        assert_ne!(s(&[("accuracy", 0.5)]), s(&[("f1", 0.5)]));
        assert_ne!(s(&[("accuracy", 0.5)]), s(&[("accuracy", 0.5), ("f1", 0.5)]));
        assert_ne!(s(&[("mcc", f64::NAN)]), s(&[("mcc", 0.0)]));
    }

    #[test]
    fn the_recorded_prompt_is_read_alone_and_a_broken_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("results.json");
        assert_eq!(Results::recorded_prompt(&path).unwrap(), None, "missing file: an unfinished run");
        std::fs::write(&path, r#"{"task": "sst2", "method": "lora"}"#).unwrap();
        assert_eq!(Results::recorded_prompt(&path).unwrap(), None, "no prompt recorded");
        std::fs::write(&path, r#"{"prompt": {"template": "{s} It was", "label_words": [" bad", " good"]}}"#).unwrap();
        let p = Results::recorded_prompt(&path).unwrap().unwrap();
        assert_eq!((p.template.as_str(), p.words.len()), ("{s} It was", 2));
        for broken in [r#"{"prompt": "#, r#"{"prompt": {"template": 3}}"#] {
            std::fs::write(&path, broken).unwrap();
            let e = Results::recorded_prompt(&path).unwrap_err().to_string();
            assert!(e.contains("results.json"), "{e}");
        }
    }
}
