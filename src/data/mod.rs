//! Datasets for few-shot fine-tuning: examples and labels, loaders for the GLUE tasks, the
//! `polarity` demo task and user files, and the few-shot sampler.
//!
//! Every loader reports bad input as one [`DataError`] whose one-line message names the file,
//! the 1-based line number (where there is one) and what was expected.

pub mod fewshot;
pub mod glue;
pub mod polarity;
mod table;
pub mod user;

use std::path::PathBuf;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Result type of the data module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// The gold label of an example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Label {
    /// Index into the task's label names (classification).
    Class(usize),
    /// A real-valued score (regression, e.g. STS-B similarity in [0, 5]).
    Score(f32),
}

/// One text or text pair with its gold label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable identifier `"<file name>:<line>"`, where `<line>` is the 1-based line of the file
    /// (header included) on which the example's record starts, e.g. `"train.tsv:123"`.
    pub id: String,
    /// The first (or only) text.
    pub text_a: String,
    /// The second text of a pair task.
    pub text_b: Option<String>,
    /// The gold label.
    pub label: Label,
}

/// The examples read from one file (or one part of it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// The file the examples were read from.
    pub source: PathBuf,
    /// Names of the classes, indexed by [`Label::Class`]; empty for regression.
    pub label_names: Vec<String>,
    /// True when the data is only part of the official split (read from a `*.subset.tsv`, or a
    /// held-out part of one).
    pub partial: bool,
    /// Caveats about where the data comes from, one line each; callers should print them.
    pub notes: Vec<String>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Number of examples per class (index = class); empty for regression data.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.label_names.len()];
        for example in &self.examples {
            if let Label::Class(c) = example.label {
                if let Some(count) = counts.get_mut(c) {
                    *count += 1;
                }
            }
        }
        counts
    }
}

/// Bad input data or an impossible request; the message is one line naming the file, the line
/// and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{}: cannot open: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file has no content.
    #[error("{}: file is empty (expected {expected})", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What the file should contain.
        expected: &'static str,
    },
    /// The file has a header but no data rows.
    #[error("{}: no data rows after the header (expected at least one row)", path.display())]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// A line is not valid UTF-8.
    #[error("{}:{line}: not valid UTF-8", path.display())]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A row has the wrong number of fields.
    #[error("{}:{line}: expected {expected} {separator} columns ({names}), found {found}", path.display())]
    ColumnCount {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Number of columns of the header (or layout).
        expected: usize,
        /// "tab-separated" or "comma-separated".
        separator: &'static str,
        /// The expected column names, comma-separated.
        names: String,
        /// Number of fields found.
        found: usize,
    },
    /// A required column is not in the header.
    #[error("{}: missing column {column:?} (header has: {header})", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that was asked for.
        column: String,
        /// The header's column names, comma-separated.
        header: String,
    },
    /// A label value is not one of the task's labels.
    #[error("{}:{line}: unknown label {label:?} (expected one of: {expected})", path.display())]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The value found (shortened when long).
        label: String,
        /// The accepted values, comma-separated.
        expected: String,
    },
    /// A text field is empty or only whitespace.
    #[error("{}:{line}: empty text in column {column:?}", path.display())]
    EmptyText {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The text column.
        column: String,
    },
    /// A regression score is not a finite number.
    #[error("{}:{line}: score {value:?} is not a number", path.display())]
    BadScore {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The value found (shortened when long).
        value: String,
    },
    /// A line cannot be parsed (bad JSON, CSV syntax, missing JSON key, ...).
    #[error("{}:{line}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A problem with the file as a whole (unsupported format, too few rows or labels, ...).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Only a partial train set exists and the caller did not opt in to using it.
    #[error(
        "{}: full train split is missing; only the partial {} exists ({rows_note}); pass --allow-partial-train to train on it",
        path.display(),
        subset.display()
    )]
    PartialTrain {
        /// The missing full train file.
        path: PathBuf,
        /// The subset file that exists.
        subset: PathBuf,
        /// Size of the subset versus the official split.
        rows_note: String,
    },
    /// The task name is not known.
    #[error("unknown task {name:?} (expected one of: {expected})")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The known task names, comma-separated.
        expected: String,
    },
    /// A class (or score bucket) has too few examples for the few-shot request.
    #[error("few-shot sampling: {class} has {count} examples in the pool but {needed} are needed ({train} for train + {dev} for dev)")]
    TooFewExamples {
        /// The class, e.g. `class "entailment"` or `score bucket [2, 3)`.
        class: String,
        /// Examples of it in the pool.
        count: usize,
        /// Examples needed (train + dev).
        needed: usize,
        /// Needed for train.
        train: usize,
        /// Needed for dev.
        dev: usize,
    },
    /// An impossible few-shot request (k = 0, fewer examples than classes, ...).
    #[error("few-shot sampling: {0}")]
    Sampling(String),
}

/// Splits `examples` into (kept, held out): `n_test` examples are held out, stratified by class
/// (each class proportionally to its frequency, largest-remainder rounding; score labels form
/// one group), chosen from the end of a fixed-seed shuffle. Both parts keep file order.
/// Deterministic in `seed`.
pub fn hold_out(examples: Vec<Example>, n_test: usize, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let n = examples.len();
    let n_test = n_test.min(n);
    let group = |e: &Example| match e.label {
        Label::Class(c) => c,
        Label::Score(_) => 0,
    };
    let groups = examples.iter().map(group).max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; groups];
    for e in &examples {
        counts[group(e)] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count();
    let mut quota = if n_test >= present && present > 0 {
        fewshot::proportional_quota(&counts, n_test).unwrap_or_else(|_| vec![n_test; groups])
    } else {
        vec![n_test; groups] // too few to stratify: plain shuffle
    };
    let mut order: Vec<usize> = (0..n).collect();
    fewshot::shuffle(&mut order, &mut ChaCha8Rng::seed_from_u64(seed));
    let mut is_test = vec![false; n];
    let mut taken = 0;
    for &i in order.iter().rev() {
        let g = group(&examples[i]);
        if taken < n_test && quota[g] > 0 {
            quota[g] -= 1;
            taken += 1;
            is_test[i] = true;
        }
    }
    let (test, kept): (Vec<_>, Vec<_>) = examples.into_iter().zip(is_test).partition(|(_, test)| *test);
    (kept.into_iter().map(|(e, _)| e).collect(), test.into_iter().map(|(e, _)| e).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: usize) -> Example {
        Example { id: format!("f.tsv:{i}"), text_a: format!("t{i}"), text_b: None, label: Label::Class(i % 2) }
    }

    #[test]
    fn hold_out_is_deterministic_disjoint_and_ordered() {
        let all: Vec<Example> = (1..=50).map(ex).collect();
        let (kept, test) = hold_out(all.clone(), 10, 7);
        assert_eq!((kept.len(), test.len()), (40, 10));
        let (kept2, test2) = hold_out(all.clone(), 10, 7);
        assert_eq!((kept.clone(), test.clone()), (kept2, test2));
        let (_, test3) = hold_out(all, 10, 8);
        assert_ne!(test, test3);
        for e in &test {
            assert!(!kept.contains(e));
        }
        let pos = |v: &[Example]| -> Vec<usize> { v.iter().map(|e| e.id[6..].parse::<usize>().unwrap()).collect() };
        let k = pos(&kept);
        assert!(k.windows(2).all(|w| w[0] < w[1]));
        // Stratified: 25 + 25 examples -> 5 + 5 held out.
        let test_classes: Vec<Label> = test.iter().map(|e| e.label).collect();
        assert_eq!(test_classes.iter().filter(|&&l| l == Label::Class(0)).count(), 5);
        // 30/20 split with 4 held out -> 2.4/1.6 -> 2/2 by largest remainder.
        let uneven: Vec<Example> =
            (1..=50).map(|i| Example { label: Label::Class(usize::from(i > 30)), ..ex(i) }).collect();
        let (_, t) = hold_out(uneven, 4, 1);
        assert_eq!(t.iter().filter(|e| e.label == Label::Class(0)).count(), 2);
    }

    #[test]
    fn class_counts_counts() {
        let d = Dataset {
            examples: (1..=5).map(ex).collect(),
            source: PathBuf::from("f.tsv"),
            label_names: vec!["a".into(), "b".into()],
            partial: false,
            notes: vec![],
        };
        assert_eq!(d.class_counts(), vec![2, 3]);
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn errors_are_one_line() {
        let e = DataError::UnknownLabel {
            path: PathBuf::from("/d/RTE/train.tsv"),
            line: 5,
            label: "may\nbe".into(),
            expected: "entailment, not_entailment".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"/d/RTE/train.tsv:5: unknown label "may\nbe" (expected one of: entailment, not_entailment)"#
        );
    }
}
