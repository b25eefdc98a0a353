//! Task registry and loaders for the nine GLUE tasks, laid out as in GLUE's `glue_data/`
//! folder (`<data_dir>/<TASK>/train.tsv`, `dev.tsv`, ...).
//!
//! Following LM-BFF, the GLUE dev file is used as the *test* set, and few-shot train/dev sets
//! are sampled from the train file (see [`crate::data::fewshot`]).
//!
//! Label orders (class index = position): CoLA, SST-2, MRPC, QQP, WNLI `0, 1`; MNLI
//! `contradiction, entailment, neutral` (LM-BFF's order); QNLI and RTE
//! `entailment, not_entailment`; STS-B is regression (score in [0, 5]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::fewshot::{FewShotSplit, Protocol};
use super::table::{read_tsv, LabelParser, Table};
use super::{hold_out, DataError, Dataset, Result};
use crate::metrics::Metric;

/// File name of a partial train set (a subset of the official train split).
pub const SUBSET_TRAIN_FILE: &str = "train.subset.tsv";

/// Fraction (1 / this) of the train file held out as the test set when a task's test file is
/// missing and the task allows it (QQP).
pub const HOLD_OUT_DIVISOR: usize = 5;

/// Seed of the shuffle that picks the held-out test rows.
pub const HOLD_OUT_SEED: u64 = 20_240_917;

/// Canonical names of the GLUE tasks.
pub const TASK_NAMES: [&str; 9] = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"];

/// Columns of CoLA's header-less files.
const COLA_COLUMNS: [&str; 4] = ["source", "label", "original_label", "sentence"];

/// An evaluation split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Few-shot train set (sampled from the train file).
    Train,
    /// Few-shot dev set (sampled from the train file).
    Dev,
    /// Test set (the GLUE dev file).
    Test,
    /// MNLI matched test set (`dev_matched.tsv`).
    TestMatched,
    /// MNLI mismatched test set (`dev_mismatched.tsv`).
    TestMismatched,
}

impl Split {
    /// Lower-case name: "train", "dev", "test", "test_matched" or "test_mismatched".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
            Split::TestMatched => "test_matched",
            Split::TestMismatched => "test_mismatched",
        }
    }
}

/// Where a task's column names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Header {
    /// The first line of each file is a header; columns are found by name.
    InFile,
    /// The files have no header; these name the columns by position.
    Positional(&'static [&'static str]),
}

/// Everything needed to load and evaluate one GLUE task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSpec {
    /// Canonical lower-case name, e.g. "sst2".
    pub name: &'static str,
    /// Folder under the GLUE data directory, e.g. "SST-2".
    pub dir: &'static str,
    /// Column of the first text.
    pub text_a: &'static str,
    /// Column of the second text, for pair tasks.
    pub text_b: Option<&'static str>,
    /// Column of the label.
    pub label: &'static str,
    /// Label values as written in the files, in class-index order; empty for regression.
    pub label_names: Vec<String>,
    /// Metrics reported on the test set.
    pub metrics: Vec<Metric>,
    /// Metric used for model selection on dev.
    pub main_metric: Metric,
    /// Header layout of the files.
    pub header: Header,
    /// Train file name.
    pub train_file: &'static str,
    /// Test sets: split and file name (GLUE dev files).
    pub test_files: Vec<(Split, &'static str)>,
    /// Rows of the official train split (to describe partial train sets).
    pub official_train_rows: usize,
    /// When the test file is missing, hold out a fixed part of the train file as the test set
    /// (QQP, whose GLUE dev file is unavailable).
    pub hold_out_fallback: bool,
}

impl TaskSpec {
    /// True when the task's files start with a header line.
    pub fn has_header(&self) -> bool {
        self.header == Header::InFile
    }

    /// True for regression tasks (STS-B).
    pub fn is_regression(&self) -> bool {
        self.label_names.is_empty()
    }

    /// Number of classes (0 for regression).
    pub fn num_classes(&self) -> usize {
        self.label_names.len()
    }
}

/// The spec of a GLUE task by name: case-insensitive, '-' and '_' ignored ("SST-2", "sts-b").
pub fn task(name: &str) -> Result<TaskSpec> {
    let key: String = name.chars().filter(|c| !matches!(c, '-' | '_')).collect::<String>().to_lowercase();
    let labels = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let binary = labels(&["0", "1"]);
    let nli2 = labels(&["entailment", "not_entailment"]);
    let test = vec![(Split::Test, "dev.tsv")];
    let base = TaskSpec {
        name: "",
        dir: "",
        text_a: "sentence1",
        text_b: Some("sentence2"),
        label: "label",
        label_names: binary.clone(),
        metrics: vec![Metric::Accuracy],
        main_metric: Metric::Accuracy,
        header: Header::InFile,
        train_file: "train.tsv",
        test_files: test,
        official_train_rows: 0,
        hold_out_fallback: false,
    };
    let spec = match key.as_str() {
        "cola" => TaskSpec {
            name: "cola",
            dir: "CoLA",
            text_a: "sentence",
            text_b: None,
            metrics: vec![Metric::Mcc],
            main_metric: Metric::Mcc,
            header: Header::Positional(&COLA_COLUMNS),
            official_train_rows: 8551,
            ..base
        },
        "sst2" => TaskSpec {
            name: "sst2",
            dir: "SST-2",
            text_a: "sentence",
            text_b: None,
            official_train_rows: 67349,
            ..base
        },
        "mrpc" => TaskSpec {
            name: "mrpc",
            dir: "MRPC",
            text_a: "#1 String",
            text_b: Some("#2 String"),
            label: "Quality",
            metrics: vec![Metric::F1, Metric::Accuracy],
            main_metric: Metric::F1,
            official_train_rows: 3668,
            ..base
        },
        "stsb" => TaskSpec {
            name: "stsb",
            dir: "STS-B",
            label: "score",
            label_names: Vec::new(),
            metrics: vec![Metric::Pearson, Metric::Spearman],
            main_metric: Metric::Pearson,
            official_train_rows: 5749,
            ..base
        },
        "qqp" => TaskSpec {
            name: "qqp",
            dir: "QQP",
            text_a: "question1",
            text_b: Some("question2"),
            label: "is_duplicate",
            metrics: vec![Metric::F1, Metric::Accuracy],
            main_metric: Metric::F1,
            official_train_rows: 363_846,
            hold_out_fallback: true,
            ..base
        },
        "mnli" => TaskSpec {
            name: "mnli",
            dir: "MNLI",
            label: "gold_label",
            label_names: labels(&["contradiction", "entailment", "neutral"]),
            test_files: vec![(Split::TestMatched, "dev_matched.tsv"), (Split::TestMismatched, "dev_mismatched.tsv")],
            official_train_rows: 392_702,
            ..base
        },
        "qnli" => TaskSpec {
            name: "qnli",
            dir: "QNLI",
            text_a: "question",
            text_b: Some("sentence"),
            label_names: nli2,
            official_train_rows: 104_743,
            ..base
        },
        "rte" => TaskSpec { name: "rte", dir: "RTE", label_names: nli2, official_train_rows: 2490, ..base },
        "wnli" => TaskSpec { name: "wnli", dir: "WNLI", official_train_rows: 635, ..base },
        _ => return Err(DataError::UnknownTask { name: name.to_string(), expected: TASK_NAMES.join(", ") }),
    };
    Ok(spec)
}

/// Reads one file of the task into a dataset (not partial, no notes).
pub fn read_task_file(spec: &TaskSpec, path: &Path) -> Result<Dataset> {
    let positional = match spec.header {
        Header::InFile => None,
        Header::Positional(columns) => Some(columns),
    };
    let table: Table = read_tsv(path, positional)?;
    let parser = if spec.is_regression() { LabelParser::Score } else { LabelParser::Classes(&spec.label_names) };
    let examples = table.examples(spec.text_a, spec.text_b, spec.label, &parser)?;
    Ok(Dataset {
        examples,
        source: path.to_path_buf(),
        label_names: spec.label_names.clone(),
        partial: false,
        notes: Vec::new(),
    })
}

/// The train file to read: the full one if present, else the subset (partial) if present.
/// Returns (path, partial).
fn train_source(spec: &TaskSpec, data_dir: &Path) -> (PathBuf, bool) {
    let dir = data_dir.join(spec.dir);
    let full = dir.join(spec.train_file);
    let subset = dir.join(SUBSET_TRAIN_FILE);
    if !full.is_file() && subset.is_file() {
        (subset, true)
    } else {
        (full, false)
    }
}

/// True when the test set must be held out of the train file (test file missing and the task
/// allows it).
fn test_held_out(spec: &TaskSpec, data_dir: &Path) -> bool {
    let dir = data_dir.join(spec.dir);
    spec.hold_out_fallback && !spec.test_files.iter().all(|(_, f)| dir.join(f).is_file())
}

/// Reads the whole train file (full or subset) with the notes describing it.
fn read_train_file(spec: &TaskSpec, data_dir: &Path, allow_partial: bool) -> Result<Dataset> {
    let (path, partial) = train_source(spec, data_dir);
    if partial && !allow_partial {
        return Err(DataError::PartialTrain {
            path: data_dir.join(spec.dir).join(spec.train_file),
            subset: path,
            rows_note: format!("a subset of the {}-row official train split", spec.official_train_rows),
        });
    }
    let mut data = read_task_file(spec, &path)?;
    if partial {
        data.partial = true;
        data.notes.push(format!(
            "{}: train data is {} ({} rows), only a subset of the {}-row official train split",
            spec.name,
            path.display(),
            data.len(),
            spec.official_train_rows
        ));
    }
    Ok(data)
}

/// Splits the train file into (train pool, held-out test) and notes it on both.
fn split_held_out(spec: &TaskSpec, mut data: Dataset) -> (Dataset, Dataset) {
    let n = data.len();
    let (kept, test) = hold_out(std::mem::take(&mut data.examples), n / HOLD_OUT_DIVISOR, HOLD_OUT_SEED);
    let note = format!(
        "{}: no test file (GLUE dev set) available; test = a fixed held-out 1/{} ({} rows) of {}, few-shot train/dev are sampled from the other {} rows",
        spec.name,
        HOLD_OUT_DIVISOR,
        test.len(),
        data.source.display(),
        kept.len()
    );
    data.notes.push(note);
    data.partial = true;
    let test = Dataset { examples: test, ..data.clone() };
    data.examples = kept;
    (data, test)
}

/// Loads the train pool of a task from `<data_dir>/<dir>/`: `train.tsv`, or, only when
/// `allow_partial` is set, `train.subset.tsv` (then `partial` is true and `notes` say so).
/// For QQP without a test file, the held-out test rows are removed from the pool.
pub fn load_train(spec: &TaskSpec, data_dir: &Path, allow_partial: bool) -> Result<Dataset> {
    let data = read_train_file(spec, data_dir, allow_partial)?;
    if test_held_out(spec, data_dir) {
        return Ok(split_held_out(spec, data).0);
    }
    Ok(data)
}

/// Loads the test sets of a task: the GLUE dev file(s), named "test" (or "test_matched" and
/// "test_mismatched" for MNLI). For QQP without a dev file, the fixed held-out part of the
/// train file, flagged `partial` with a note.
pub fn load_test(spec: &TaskSpec, data_dir: &Path) -> Result<Vec<(String, Dataset)>> {
    if test_held_out(spec, data_dir) {
        let data = read_train_file(spec, data_dir, true)?;
        let test = split_held_out(spec, data).1;
        return Ok(vec![(Split::Test.name().to_string(), test)]);
    }
    spec.test_files
        .iter()
        .map(|(split, file)| {
            let path = data_dir.join(spec.dir).join(file);
            Ok((split.name().to_string(), read_task_file(spec, &path)?))
        })
        .collect()
}

/// Loads LM-BFF's pre-sampled few-shot files `<data_dir>/<dir>/k-shot/<k>-<seed>/train.tsv` and
/// `dev.tsv` (or `dev_matched.tsv` for MNLI).
pub fn load_kshot(spec: &TaskSpec, data_dir: &Path, k: usize, seed: u64) -> Result<FewShotSplit> {
    let dir = data_dir.join(spec.dir).join("k-shot").join(format!("{k}-{seed}"));
    let train = read_task_file(spec, &dir.join("train.tsv"))?;
    let dev_path = ["dev.tsv", "dev_matched.tsv"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join("dev.tsv"));
    let dev = read_task_file(spec, &dev_path)?;
    Ok(FewShotSplit { protocol: Protocol::KShotFiles, k, seed, train: train.examples, dev: dev.examples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Label;

    /// `$GLUE_DIR`, else `../shared/data/glue` beside the repository.
    fn glue_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("GLUE_DIR")
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/glue"), PathBuf::from);
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("note: {} not found; skipping real-data test", dir.display());
            None
        }
    }

    fn write(dir: &Path, rel: &str, content: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn task_names_resolve() {
        for name in TASK_NAMES {
            assert_eq!(task(name).unwrap().name, name);
        }
        assert_eq!(task("SST-2").unwrap().name, "sst2");
        assert_eq!(task("sts-b").unwrap().name, "stsb");
        assert_eq!(task("MNLI").unwrap().dir, "MNLI");
        assert!(task("stsb").unwrap().is_regression());
        assert!(!task("cola").unwrap().has_header());
        assert_eq!(
            task("glue").unwrap_err().to_string(),
            "unknown task \"glue\" (expected one of: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli)"
        );
    }

    #[test]
    fn partial_train_needs_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "QNLI/train.subset.tsv", "index\tquestion\tsentence\tlabel\n\tq?\ts.\tentailment\n");
        let spec = task("qnli").unwrap();
        let err = load_train(&spec, dir.path(), false).unwrap_err();
        let train = dir.path().join("QNLI/train.tsv");
        let subset = dir.path().join("QNLI/train.subset.tsv");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: full train split is missing; only the partial {} exists (a subset of the 104743-row official train split); pass --allow-partial-train to train on it",
                train.display(),
                subset.display()
            )
        );
        let data = load_train(&spec, dir.path(), true).unwrap();
        assert!(data.partial);
        assert_eq!(data.notes.len(), 1);
        assert_eq!(data.examples[0].id, "train.subset.tsv:2");
    }

    #[test]
    fn missing_train_and_test_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = task("rte").unwrap();
        let err = load_train(&spec, dir.path(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot open: No such file or directory", dir.path().join("RTE/train.tsv").display())
        );
        assert!(matches!(load_test(&spec, dir.path()), Err(DataError::Open { .. })));
    }

    #[test]
    fn qqp_holds_out_test_from_train() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::from("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n");
        for i in 0..50 {
            content.push_str(&format!("{i}\t1\t2\tq{i}?\tp{i}?\t{}\n", i % 2));
        }
        write(dir.path(), "QQP/train.subset.tsv", &content);
        let spec = task("qqp").unwrap();
        let train = load_train(&spec, dir.path(), true).unwrap();
        let tests = load_test(&spec, dir.path()).unwrap();
        assert_eq!(tests.len(), 1);
        let (name, test) = &tests[0];
        assert_eq!(name, "test");
        assert_eq!((train.len(), test.len()), (40, 10));
        assert!(train.partial && test.partial);
        assert!(test.notes.iter().any(|n| n.contains("held-out")));
        assert!(test.examples.iter().all(|e| !train.examples.contains(e)));
        // With a real dev file, it is used instead.
        write(dir.path(), "QQP/dev.tsv", &content);
        assert_eq!(load_train(&spec, dir.path(), true).unwrap().len(), 50);
        assert!(!load_test(&spec, dir.path()).unwrap()[0].1.partial);
    }

    #[test]
    fn mrpc_bom_header_and_cola_positional() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "MRPC/dev.tsv",
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA \"quoted\" one.\tB.\n",
        );
        let spec = task("mrpc").unwrap();
        let tests = load_test(&spec, dir.path()).unwrap();
        let e = &tests[0].1.examples[0];
        assert_eq!(e.text_a, "A \"quoted\" one.");
        assert_eq!(e.label, Label::Class(1));
        write(dir.path(), "CoLA/train.tsv", "gj04\t0\t*\tBad one.\ngj04\t1\t\tGood one.");
        let cola = load_train(&task("cola").unwrap(), dir.path(), false).unwrap();
        assert_eq!(cola.examples[1].id, "train.tsv:2");
        assert_eq!(cola.class_counts(), [1, 1]);
    }

    fn counts(spec: &TaskSpec, data: &Dataset) -> Vec<(String, usize)> {
        spec.label_names.iter().cloned().zip(data.class_counts()).collect()
    }

    fn pairs(v: &[(&str, usize)]) -> Vec<(String, usize)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn real_glue_files() {
        let Some(dir) = glue_dir() else { return };
        // (task, train rows, partial, test rows by split)
        type Expected<'a> = (&'a str, usize, bool, &'a [(&'a str, usize)]);
        let expected: [Expected; 9] = [
            ("cola", 8551, false, &[("test", 1043)]),
            ("sst2", 67349, false, &[("test", 872)]),
            ("mrpc", 3668, false, &[("test", 408)]),
            ("stsb", 5749, false, &[("test", 1500)]),
            ("qqp", 23497 - 23497 / 5, true, &[("test", 23497 / 5)]),
            ("mnli", 9999, true, &[("test_matched", 9815), ("test_mismatched", 9832)]),
            ("qnli", 9999, true, &[("test", 5463)]),
            ("rte", 2490, false, &[("test", 277)]),
            ("wnli", 635, false, &[("test", 71)]),
        ];
        for (name, train_rows, partial, test_rows) in expected {
            let spec = task(name).unwrap();
            if partial {
                assert!(matches!(load_train(&spec, &dir, false), Err(DataError::PartialTrain { .. })));
            }
            let train = load_train(&spec, &dir, true).unwrap();
            assert_eq!(train.len(), train_rows, "{name} train");
            assert_eq!(train.partial, partial, "{name} partial");
            assert_eq!(train.notes.is_empty(), !partial, "{name} notes");
            let tests = load_test(&spec, &dir).unwrap();
            let got: Vec<(String, usize)> = tests.iter().map(|(s, d)| (s.clone(), d.len())).collect();
            assert_eq!(got, pairs(test_rows), "{name} test");
            for (_, d) in &tests {
                let ids: std::collections::HashSet<_> = train.examples.iter().map(|e| &e.id).collect();
                if spec.hold_out_fallback {
                    assert!(d.examples.iter().all(|e| !ids.contains(&e.id)));
                }
            }
            if spec.is_regression() {
                for e in train.examples.iter().chain(&tests[0].1.examples) {
                    let Label::Score(s) = e.label else { panic!("{name}: class label") };
                    assert!((0.0..=5.0).contains(&s), "{name} {}: {s}", e.id);
                }
            }
            if spec.text_b.is_some() {
                assert!(train.examples.iter().all(|e| e.text_b.is_some()));
            }
        }

        let sst2 = task("sst2").unwrap();
        let train = load_train(&sst2, &dir, false).unwrap();
        assert_eq!(counts(&sst2, &train), pairs(&[("0", 29780), ("1", 37569)]));
        assert_eq!(train.examples[0].id, "train.tsv:2");
        let cola = task("cola").unwrap();
        let train = load_train(&cola, &dir, false).unwrap();
        assert_eq!(counts(&cola, &train), pairs(&[("0", 2528), ("1", 6023)]));
        assert_eq!(train.examples[0].id, "train.tsv:1");
        let mrpc = task("mrpc").unwrap();
        let test = &load_test(&mrpc, &dir).unwrap()[0].1;
        assert_eq!(counts(&mrpc, test), pairs(&[("0", 129), ("1", 279)]));
        let rte = task("rte").unwrap();
        let train = load_train(&rte, &dir, false).unwrap();
        assert_eq!(counts(&rte, &train), pairs(&[("entailment", 1249), ("not_entailment", 1241)]));
        let mnli = task("mnli").unwrap();
        let tests = load_test(&mnli, &dir).unwrap();
        assert_eq!(
            counts(&mnli, &tests[0].1),
            pairs(&[("contradiction", 3213), ("entailment", 3479), ("neutral", 3123)])
        );
        assert_eq!(
            counts(&mnli, &tests[1].1),
            pairs(&[("contradiction", 3240), ("entailment", 3463), ("neutral", 3129)])
        );
        let qqp = task("qqp").unwrap();
        let train = load_train(&qqp, &dir, true).unwrap();
        let test = &load_test(&qqp, &dir).unwrap()[0].1;
        let total: Vec<usize> = train.class_counts().iter().zip(test.class_counts()).map(|(a, b)| a + b).collect();
        assert_eq!(total, [14750, 8747]);

        for (name, per_class) in [("mnli", 16 * 3), ("qnli", 16 * 2), ("qqp", 16 * 2)] {
            let spec = task(name).unwrap();
            for seed in [13, 21, 42, 87, 100] {
                let split = load_kshot(&spec, &dir, 16, seed).unwrap();
                assert_eq!(split.train.len(), per_class, "{name} k-shot {seed}");
                assert_eq!(split.dev.len(), per_class, "{name} k-shot {seed}");
            }
        }
    }
}
