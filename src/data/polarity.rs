//! The demo task `polarity`: 4,000 Rotten Tomatoes sentences (Pang & Lee sentence polarity),
//! read from `$PREFIX_SUBSPACE_HOME/data/polarity-en-pang&lee2.csv`.
//!
//! The file is a header-less CSV `"label","text"` with a UTF-8 BOM; labels are `-1` (negative,
//! class 0) and `1` (positive, class 1). Texts end with a newline inside the quotes and records
//! end with `\r\n`, so each record spans two lines; texts are trimmed. Example ids name the line
//! a record starts on (`"polarity-en-pang&lee2.csv:1"`, `":3"`, ...).
//!
//! A fixed-seed shuffle holds out [`TEST_SIZE`] sentences (stratified: 500 per class) as the
//! test set; the rest is the train pool few-shot train/dev sets are sampled from.

use std::path::{Path, PathBuf};

use super::table::{read_csv, LabelParser};
use super::{hold_out, DataError, Dataset, Result};
use crate::metrics::Metric;

/// Task name.
pub const NAME: &str = "polarity";
/// File name under `<home>/data/`.
pub const FILE_NAME: &str = "polarity-en-pang&lee2.csv";
/// Class names, in class-index order.
pub const LABEL_NAMES: [&str; 2] = ["negative", "positive"];
/// Label values in the file, in class-index order.
const RAW_LABELS: [&str; 2] = ["-1", "1"];
/// Column names of the header-less file.
const COLUMNS: [&str; 2] = ["label", "text"];
/// Metrics of the task.
pub const METRICS: [Metric; 1] = [Metric::Accuracy];
/// Metric used for model selection.
pub const MAIN_METRIC: Metric = Metric::Accuracy;
/// Number of sentences held out as the test set.
pub const TEST_SIZE: usize = 1000;
/// Seed of the shuffle that picks the test sentences.
pub const SPLIT_SEED: u64 = 20_240_918;

/// Path of the polarity CSV: `<home>/data/polarity-en-pang&lee2.csv`, where `<home>` is
/// `$PREFIX_SUBSPACE_HOME`, default `~/.cache/prefix-subspace` ([`crate::paths::home`]).
pub fn polarity_path() -> PathBuf {
    crate::paths::home().join("data").join(FILE_NAME)
}

/// Class names as owned strings.
pub fn label_names() -> Vec<String> {
    LABEL_NAMES.iter().map(|s| s.to_string()).collect()
}

/// Reads all sentences of the file, in file order.
pub fn load_all(path: &Path) -> Result<Dataset> {
    let table = read_csv(path, Some(&COLUMNS))?;
    let raw: Vec<String> = RAW_LABELS.iter().map(|s| s.to_string()).collect();
    let examples = table.examples("text", None, "label", &LabelParser::Classes(&raw))?;
    if examples.len() <= TEST_SIZE {
        return Err(DataError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "{} sentences found (expected more than the {TEST_SIZE} held out for test)",
                examples.len()
            ),
        });
    }
    Ok(Dataset { examples, source: path.to_path_buf(), label_names: label_names(), partial: false, notes: Vec::new() })
}

/// Splits the file into (train pool, test set).
fn split(path: &Path) -> Result<(Dataset, Dataset)> {
    let mut all = load_all(path)?;
    let (train, test) = hold_out(std::mem::take(&mut all.examples), TEST_SIZE, SPLIT_SEED);
    let test = Dataset { examples: test, ..all.clone() };
    all.examples = train;
    Ok((all, test))
}

/// The train pool: every sentence not in the test set, in file order.
pub fn load_train(path: &Path) -> Result<Dataset> {
    Ok(split(path)?.0)
}

/// The test set: [`TEST_SIZE`] sentences chosen by a fixed-seed shuffle, in file order.
pub fn load_test(path: &Path) -> Result<Dataset> {
    Ok(split(path)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Label;

    #[test]
    fn reads_quoted_multiline_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut content = String::from("\u{feff}");
        for i in 0..1010 {
            let label = if i % 2 == 0 { "1" } else { "-1" };
            content.push_str(&format!("\"{label}\",\"a \"\"good\"\" film {i} . \n\"\r\n"));
        }
        std::fs::write(&path, content).unwrap();
        let all = load_all(&path).unwrap();
        assert_eq!(all.len(), 1010);
        assert_eq!(all.examples[0].text_a, "a \"good\" film 0 .");
        assert_eq!(all.examples[0].label, Label::Class(1));
        assert_eq!(all.examples[1].label, Label::Class(0));
        assert_eq!(all.examples[1].id, format!("{FILE_NAME}:3"));
        let train = load_train(&path).unwrap();
        let test = load_test(&path).unwrap();
        assert_eq!((train.len(), test.len()), (10, 1000));
        assert!(train.examples.iter().all(|e| !test.examples.contains(e)));
    }

    #[test]
    fn bad_label_and_too_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "\"1\",\"fine .\n\"\r\n\"0\",\"bad .\n\"\r\n").unwrap();
        assert_eq!(
            load_all(&path).unwrap_err().to_string(),
            format!("{}:3: unknown label \"0\" (expected one of: -1, 1)", path.display())
        );
        std::fs::write(&path, "\"1\",\"fine .\n\"\r\n").unwrap();
        assert!(matches!(load_all(&path), Err(DataError::Invalid { .. })));
        std::fs::write(&path, "\"1\",\"fine .\",\"x\"\r\n").unwrap();
        assert_eq!(
            load_all(&path).unwrap_err().to_string(),
            format!("{}:1: expected 2 comma-separated columns (label, text), found 3", path.display())
        );
    }

    #[test]
    fn real_polarity_file() {
        let path = polarity_path();
        if !path.is_file() {
            eprintln!("note: {} not found; skipping real-data test", path.display());
            return;
        }
        let all = load_all(&path).unwrap();
        assert_eq!(all.len(), 4000);
        assert_eq!(all.class_counts(), [2000, 2000]);
        assert!(all.examples.iter().all(|e| !e.text_a.contains(['\r', '\n']) && e.text_a == e.text_a.trim()));
        assert_eq!(all.examples[1].id, format!("{FILE_NAME}:3"));
        let train = load_train(&path).unwrap();
        let test = load_test(&path).unwrap();
        assert_eq!((train.len(), test.len()), (3000, 1000));
        assert_eq!(test.class_counts(), [500, 500]);
    }
}
