//! Loader for a user's own task file: `.tsv` (tab-split lines, no quote processing), `.csv`
//! (standard CSV quoting) or `.jsonl` (one JSON object per line), chosen by extension. TSV and
//! CSV files need a header row; columns are chosen by name.

use std::collections::BTreeSet;
use std::path::Path;

use super::table::{read_csv, read_jsonl, read_tsv, LabelParser, Table};
use super::{DataError, Dataset, Result};

/// How the label column is interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelMode {
    /// Classes are the sorted distinct label values of this file (see [`label_set`]); use for
    /// the train file.
    Infer,
    /// Classes are these values, in class-index order; use for files evaluated against a train
    /// file's classes.
    Given(Vec<String>),
    /// Labels are floating-point scores (regression).
    Regression,
}

/// The sorted set of distinct (trimmed) label values: the class order of a user task.
pub fn label_set<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    labels.into_iter().map(|l| l.trim().to_string()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Loads a `.tsv`, `.csv` or `.jsonl` file, taking the texts from `text_a_col` (and
/// `text_b_col`) and the label from `label_col`, interpreted as `labels` says. The dataset's
/// `label_names` are the classes (empty for regression).
pub fn load_user_file(
    path: &Path,
    text_a_col: &str,
    text_b_col: Option<&str>,
    label_col: &str,
    labels: &LabelMode,
) -> Result<Dataset> {
    let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let table: Table = match extension.as_str() {
        "tsv" => read_tsv(path, None)?,
        "csv" => read_csv(path, None)?,
        "jsonl" => {
            let mut keys = vec![text_a_col];
            keys.extend(text_b_col);
            keys.push(label_col);
            read_jsonl(path, &keys)?
        }
        other => {
            return Err(DataError::Invalid {
                path: path.to_path_buf(),
                message: format!("unsupported file extension {other:?} (expected .tsv, .csv or .jsonl)"),
            })
        }
    };
    let label_names = match labels {
        LabelMode::Regression => Vec::new(),
        LabelMode::Given(names) => names.clone(),
        LabelMode::Infer => {
            let col = table.column(label_col)?;
            let names = label_set(table.rows.iter().map(|r| r.fields[col].as_str()));
            if names.len() < 2 {
                return Err(DataError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "column {label_col:?} has only the label(s) {names:?} (expected at least two classes)"
                    ),
                });
            }
            names
        }
    };
    let parser = if label_names.is_empty() { LabelParser::Score } else { LabelParser::Classes(&label_names) };
    let examples = table.examples(text_a_col, text_b_col, label_col, &parser)?;
    Ok(Dataset { examples, source: path.to_path_buf(), label_names, partial: false, notes: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Label;
    use std::path::PathBuf;

    fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn label_set_is_sorted_and_distinct() {
        assert_eq!(label_set(["pos", "neg", "pos ", "neutral"]), ["neg", "neutral", "pos"]);
    }

    #[test]
    fn all_formats_give_the_same_examples() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = write(&dir, "a.tsv", "label\ttext\npos\tGreat \"fun\".\nneg\tDull.\n");
        let csv = write(&dir, "a.csv", "label,text\npos,\"Great \"\"fun\"\".\"\nneg,Dull.\n");
        let jsonl = write(
            &dir,
            "a.jsonl",
            "{\"text\": \"Great \\\"fun\\\".\", \"label\": \"pos\"}\n{\"text\": \"Dull.\", \"label\": \"neg\"}\n",
        );
        for path in [tsv, csv, jsonl] {
            let d = load_user_file(&path, "text", None, "label", &LabelMode::Infer).unwrap();
            assert_eq!(d.label_names, ["neg", "pos"], "{}", path.display());
            assert_eq!(d.examples[0].text_a, "Great \"fun\".");
            assert_eq!(d.examples[0].label, Label::Class(1));
            assert_eq!(d.examples[1].label, Label::Class(0));
        }
    }

    #[test]
    fn pairs_regression_and_given_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "s.jsonl", "{\"a\": \"x\", \"b\": \"y\", \"score\": 3.5}\n");
        let d = load_user_file(&p, "a", Some("b"), "score", &LabelMode::Regression).unwrap();
        assert_eq!(d.examples[0].label, Label::Score(3.5));
        assert_eq!(d.examples[0].text_b.as_deref(), Some("y"));
        assert_eq!(d.examples[0].id, "s.jsonl:1");
        assert!(d.label_names.is_empty());

        let p = write(&dir, "test.csv", "text,label\nok,pos\nhm,maybe\n");
        let given = LabelMode::Given(vec!["neg".into(), "pos".into()]);
        assert_eq!(
            load_user_file(&p, "text", None, "label", &given).unwrap_err().to_string(),
            format!("{}:3: unknown label \"maybe\" (expected one of: neg, pos)", p.display())
        );
    }

    #[test]
    fn user_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.csv", "text,label\nhello,1\n");
        assert_eq!(
            load_user_file(&p, "sentence", None, "label", &LabelMode::Regression).unwrap_err().to_string(),
            format!("{}: missing column \"sentence\" (header has: text, label)", p.display())
        );
        let p = write(&dir, "one.csv", "text,label\nhello,1\nbye,1\n");
        assert!(matches!(load_user_file(&p, "text", None, "label", &LabelMode::Infer), Err(DataError::Invalid { .. })));
        let p = write(&dir, "x.txt", "text,label\n");
        assert_eq!(
            load_user_file(&p, "text", None, "label", &LabelMode::Infer).unwrap_err().to_string(),
            format!("{}: unsupported file extension \"txt\" (expected .tsv, .csv or .jsonl)", p.display())
        );
        let p = write(&dir, "r.tsv", "text\tscore\nfine\t2\nodd\tabc\n");
        assert_eq!(
            load_user_file(&p, "text", None, "score", &LabelMode::Regression).unwrap_err().to_string(),
            format!("{}:3: score \"abc\" is not a number", p.display())
        );
    }
}
