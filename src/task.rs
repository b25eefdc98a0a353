//! Resolving a run's task into labelled data: the few-shot train/dev sample and the test
//! set(s), with the caveats every output must carry.

use std::path::Path;

use serde::Serialize;

use crate::config::{Protocol, RunConfig};
use crate::data::fewshot::{sample_per_class, sample_total, FewShotSplit};
use crate::data::user::{load_user_file, LabelMode};
use crate::data::{glue, hold_out, polarity, Dataset, Example};
use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Everything a run needs to know about its task.
#[derive(Debug)]
pub struct TaskData {
    /// Task name.
    pub name: String,
    /// Class names (empty for regression).
    pub label_names: Vec<String>,
    /// Metrics reported, main metric first.
    pub metrics: Vec<Metric>,
    /// The metric that selects checkpoints.
    pub main_metric: Metric,
    /// The sampled few-shot train and dev sets.
    pub split: FewShotSplit,
    /// Regression: the lowest and highest score of the train pool (STS-B: 0 and 5), the two
    /// poles a decoder's label words stand for; `None` for classification.
    pub score_range: Option<(f64, f64)>,
    /// Test sets by name (`test`, or `test_matched` / `test_mismatched`).
    pub tests: Vec<(String, Vec<Example>)>,
    /// Data caveats, one line each (partial files, held-out test sets, ...).
    pub notes: Vec<String>,
}

/// The data caveats and sources, as written into `results.json`.
#[derive(Debug, Serialize)]
pub struct DataInfo {
    /// Where the train pool came from.
    pub train_source: String,
    /// True when the train pool is only part of the official split.
    pub partial_train: bool,
    /// Caveats.
    pub notes: Vec<String>,
}

impl TaskData {
    /// True for regression (one output, MSE loss).
    pub fn is_regression(&self) -> bool {
        self.label_names.is_empty()
    }

    /// Number of model outputs.
    pub fn num_outputs(&self) -> i64 {
        if self.is_regression() {
            1
        } else {
            self.label_names.len() as i64
        }
    }

    /// Loads the task named in `cfg` and draws its few-shot split.
    pub fn load(cfg: &RunConfig) -> Result<Self> {
        let name = cfg.task.to_ascii_lowercase();
        let (pool, tests, label_names, metrics, main_metric) = match name.as_str() {
            "polarity" => {
                let path = polarity::polarity_path();
                if !path.is_file() {
                    return Err(Error::Input(format!(
                        "{}: demo data not found (run scripts/setup.sh to install it)",
                        path.display()
                    )));
                }
                let train = polarity::load_train(&path)?;
                let test = polarity::load_test(&path)?;
                let metrics = polarity::METRICS.to_vec();
                (train, vec![("test".to_string(), test)], polarity::label_names(), metrics, polarity::MAIN_METRIC)
            }
            "user" => user_task(cfg)?,
            _ => {
                let spec = glue::task(&name).map_err(|e| {
                    Error::Input(format!("{e} (or `polarity`, the demo task, or `user` with --set train_file=...)"))
                })?;
                let dir = cfg.glue_dir()?;
                let train = glue::load_train(&spec, &dir, cfg.allow_partial_train)?;
                let tests = glue::load_test(&spec, &dir)?;
                (train, tests, spec.label_names.clone(), spec.metrics.clone(), spec.main_metric)
            }
        };
        let mut notes = pool.notes.clone();
        for (_, t) in &tests {
            for n in &t.notes {
                if !notes.contains(n) {
                    notes.push(n.clone());
                }
            }
        }
        let split = match cfg.protocol {
            Protocol::PerClass => sample_per_class(&pool.examples, &label_names, cfg.shots, cfg.split_seed),
            Protocol::Total => sample_total(&pool.examples, &label_names, cfg.shots, cfg.split_seed),
        }
        .map_err(|e| Error::Input(format!("{}: {e}", pool.source.display())))?;
        let mut tests = tests;
        if cfg.test_limit > 0 {
            for (name, t) in &mut tests {
                if t.examples.len() > cfg.test_limit {
                    notes.push(format!(
                        "{name}: only a fixed stratified sample of {} of its {} examples was evaluated (test_limit)",
                        cfg.test_limit,
                        t.examples.len()
                    ));
                    t.examples = hold_out(std::mem::take(&mut t.examples), cfg.test_limit, 0x7e57).1;
                }
            }
        }
        // A user task is known by its `task_name` when it has one (results, tables, bench cells).
        let name = match &cfg.task_name {
            Some(given) if name == "user" => given.clone(),
            _ => name,
        };
        let score_range = label_names.is_empty().then(|| score_range(&pool.examples)).flatten();
        Ok(Self {
            name,
            label_names,
            metrics,
            main_metric,
            split,
            score_range,
            tests: tests.into_iter().map(|(n, d)| (n, d.examples)).collect(),
            notes,
        })
        .map(|t: TaskData| t.with_source_note(&pool))
    }

    fn with_source_note(mut self, pool: &Dataset) -> Self {
        self.notes.insert(0, format!("train pool: {} ({} examples)", pool.source.display(), pool.examples.len()));
        if pool.partial && !self.notes.iter().any(|n| n.contains("partial") || n.contains("subset")) {
            self.notes.push("the train pool is a partial (subset) file".into());
        }
        self
    }
}

/// The lowest and highest regression score among `examples` (`None` without scores, or when
/// every score is the same).
fn score_range(examples: &[Example]) -> Option<(f64, f64)> {
    let scores = examples.iter().filter_map(|e| match e.label {
        crate::data::Label::Score(s) => Some(s as f64),
        _ => None,
    });
    let (lo, hi) = scores.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(s), hi.max(s)));
    (lo < hi).then_some((lo, hi))
}

type Loaded = (Dataset, Vec<(String, Dataset)>, Vec<String>, Vec<Metric>, Metric);

fn user_task(cfg: &RunConfig) -> Result<Loaded> {
    let train_path = cfg.train_file.as_deref().ok_or_else(|| {
        Error::Input("task user: set train_file (--set train_file=PATH, a .tsv, .csv or .jsonl with a header)".into())
    })?;
    let mode = if cfg.regression { LabelMode::Regression } else { LabelMode::Infer };
    let load = |p: &Path, m: &LabelMode| {
        load_user_file(p, &cfg.text_a, cfg.text_b.as_deref(), &cfg.label_column, m).map_err(Error::from)
    };
    let train = load(train_path, &mode)?;
    let labels = train.label_names.clone();
    let (pool, test) = match &cfg.test_file {
        Some(t) => {
            let m = if cfg.regression { LabelMode::Regression } else { LabelMode::Given(labels.clone()) };
            (train, load(t, &m)?)
        }
        None => {
            let n_test = train.examples.len() / 5;
            let (kept, held) = hold_out(train.examples.clone(), n_test, 0x5eed);
            let note = format!("test set: a fixed held-out fifth of {} (no test_file given)", train_path.display());
            let pool = Dataset { examples: kept, notes: vec![note.clone()], ..train.clone() };
            let test = Dataset { examples: held, notes: vec![note], ..train };
            (pool, test)
        }
    };
    let (metrics, main) = if cfg.regression {
        (vec![Metric::Pearson, Metric::Spearman], Metric::Pearson)
    } else if labels.len() == 2 {
        (vec![Metric::Accuracy, Metric::F1, Metric::Mcc], Metric::Accuracy)
    } else {
        (vec![Metric::Accuracy], Metric::Accuracy)
    };
    Ok((pool, vec![("test".into(), test)], labels, metrics, main))
}
