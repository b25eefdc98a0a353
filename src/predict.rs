//! `prefix-subspace predict`: labels untrusted input, one output row per input line.
//!
//! The input is read as bytes and split on `\n` (a trailing `\r` is dropped), so a line that
//! is not UTF-8 spoils only its own row. Each line is a text (two texts separated by a tab for
//! a pair task) or, when it starts with `{`, a JSON object with `"text_a"` (or `"text"` or
//! `"sentence"`), `"text_b"` for a pair task and an optional `"id"` (string or number).
//! Output row i answers input line i: `"line"` (1-based) and `"id"` (when given) first, then
//! either the prediction (`"label"` and `"probabilities"`, or `"score"` for regression) or
//! `"error"`, one sentence saying what was wrong with the line. With `strict`, the first bad
//! line fails the whole call as `FILE:LINE: what was wrong` and nothing is written.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use tch::Kind;

use crate::data::Label;
use crate::error::{Error, Result};
use crate::eval::{outputs, Encoded};
use crate::method::subspace::{At, Subspace};
use crate::session::Session;
use crate::task::TaskData;

/// Checks `--output` before anything runs: `-` (stdout) always does; a file that exists only
/// with `overwrite`, and never the `--input` file itself (the texts would be replaced by
/// their predictions).
pub fn check_output(input: &Path, output: &Path, overwrite: bool) -> Result<()> {
    if output.as_os_str() == "-" {
        return Ok(());
    }
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if input.as_os_str() != "-" && same(input, output) {
        return Err(Error::Input(format!(
            "--output {}: that is the --input file; its texts would be replaced by their predictions (name another file)",
            output.display()
        )));
    }
    crate::atomic::check_new_file(output, "--output", overwrite)
}

/// What a task's inputs look like: one text or a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskShape {
    /// The task's name, for messages.
    pub name: String,
    /// True when every example is a pair of texts (`text_b` present).
    pub pair: bool,
}

impl TaskShape {
    /// The shape of a loaded task: a pair task when its few-shot examples (what the run was
    /// trained on) carry a second text, as the GLUE pair tasks and a user task with
    /// `text_b` set do.
    pub fn of(task: &TaskData) -> Self {
        let pair = task.split.train.iter().chain(&task.split.dev).any(|e| e.text_b.is_some());
        Self { name: task.name.clone(), pair }
    }

    fn takes(&self) -> &'static str {
        if self.pair {
            "a pair of texts (text_a<TAB>text_b, or \"text_a\" and \"text_b\" fields)"
        } else {
            "one text"
        }
    }
}

/// The text and optional second text of a good line, or what was wrong with it.
pub type Texts = std::result::Result<(String, Option<String>), String>;

/// One input line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    /// 1-based line number in the input.
    pub line: usize,
    /// The JSON `"id"` field (a string or a number), when the line is JSON and has one.
    pub id: Option<Value>,
    /// The text (and second text of a pair), or what was wrong with the line.
    pub texts: Texts,
}

/// Splits `bytes` into lines on `\n`, dropping one trailing `\r` per line. A final `\n` ends
/// the last line (it does not start an empty one); a UTF-8 byte-order mark at the start is
/// skipped.
pub fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect()
}

/// Parses one line (without its line ending) for a task of shape `shape`; `line` is its
/// 1-based number.
pub fn parse_line(raw: &[u8], line: usize, shape: &TaskShape) -> InputRow {
    let (id, texts) = match std::str::from_utf8(raw) {
        Err(e) => (None, Err(format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))),
        Ok(s) if s.trim().is_empty() => (None, Err("empty line".to_string())),
        Ok(s) if s.trim_start().starts_with('{') => parse_json(s, shape),
        Ok(s) => (None, parse_text(s, shape)),
    };
    InputRow { line, id, texts }
}

/// Parses every line of `bytes`.
pub fn parse_input(bytes: &[u8], shape: &TaskShape) -> Vec<InputRow> {
    split_lines(bytes).into_iter().enumerate().map(|(i, l)| parse_line(l, i + 1, shape)).collect()
}

fn parse_text(s: &str, shape: &TaskShape) -> Texts {
    let fields: Vec<&str> = s.split('\t').collect();
    match (fields.as_slice(), shape.pair) {
        ([a], false) => Ok((non_empty(a, "text")?, None)),
        ([a, b], true) => Ok((non_empty(a, "first text")?, Some(non_empty(b, "second text")?))),
        ([_], true) => Err(format!("found one text (no tab) but task {} takes {}", shape.name, shape.takes())),
        (f, false) => Err(format!(
            "found a tab ({} tab-separated texts, as for a pair) but task {} takes {}",
            f.len(),
            shape.name,
            shape.takes()
        )),
        (f, true) => {
            Err(format!("found {} tab-separated texts but task {} takes {}", f.len(), shape.name, shape.takes()))
        }
    }
}

fn non_empty(s: &str, what: &str) -> std::result::Result<String, String> {
    if s.trim().is_empty() {
        Err(format!("empty {what}"))
    } else {
        Ok(s.to_string())
    }
}

type Parsed = (Option<Value>, Texts);

fn parse_json(s: &str, shape: &TaskShape) -> Parsed {
    let v: Value = match serde_json::from_str(s) {
        Ok(v) => v,
        Err(e) => return (None, Err(format!("invalid JSON: {e}"))),
    };
    let id = match v.get("id") {
        None | Some(Value::Null) => None,
        Some(x @ (Value::String(_) | Value::Number(_))) => Some(x.clone()),
        Some(_) => return (None, Err("\"id\" must be a string or a number".to_string())),
    };
    (id, json_texts(&v, shape))
}

fn json_texts(v: &Value, shape: &TaskShape) -> Texts {
    let field = |k: &str| -> std::result::Result<Option<&str>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("\"{k}\" is not a string")),
        }
    };
    let mut a = None;
    for k in ["text_a", "text", "sentence"] {
        if let Some(s) = field(k)? {
            a = Some((k, s));
            break;
        }
    }
    let Some((ka, a)) = a else {
        return Err("no \"text_a\" (or \"text\") string field".to_string());
    };
    let b = field("text_b")?;
    match (b, shape.pair) {
        (None, false) => Ok((non_empty(a, &format!("\"{ka}\""))?, None)),
        (Some(b), true) => Ok((non_empty(a, &format!("\"{ka}\""))?, Some(non_empty(b, "\"text_b\"")?))),
        (Some(_), false) => {
            Err(format!("found a \"text_b\" field (a pair) but task {} takes {}", shape.name, shape.takes()))
        }
        (None, true) => {
            Err(format!("found one text (no \"text_b\" field) but task {} takes {}", shape.name, shape.takes()))
        }
    }
}

/// The name messages give the input: its path, or `<stdin>` for `-`.
pub fn input_name(input: &Path) -> String {
    if input.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        input.display().to_string()
    }
}

/// Reads the whole input (`-` = stdin) as bytes.
pub fn read_input(input: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if input.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map_err(|e| Error::io(Path::new("<stdin>"), e))?;
    } else {
        bytes = std::fs::read(input).map_err(|e| Error::Input(format!("{}: cannot read: {e}", input.display())))?;
    }
    Ok(bytes)
}

/// The output of [`run`]: the JSONL text, one row per input line, and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predictions {
    /// One JSON object per input line, each ending in `\n`.
    pub text: String,
    /// Rows (= input lines).
    pub rows: usize,
    /// Rows that are errors.
    pub errors: usize,
}

impl Predictions {
    /// The one line for stderr when some rows are errors.
    pub fn note(&self) -> Option<String> {
        (self.errors > 0).then(|| {
            format!("predict: {} of {} rows are errors (their \"error\" field says why)", self.errors, self.rows)
        })
    }
}

/// Formats one output row: `"line"`, `"id"` (when given), then `fields`.
fn row_json(row: &InputRow, fields: &[(&str, Value)]) -> String {
    let mut parts = vec![format!("\"line\":{}", row.line)];
    if let Some(id) = &row.id {
        parts.push(format!("\"id\":{id}"));
    }
    parts.extend(fields.iter().map(|(k, v)| format!("{}:{v}", Value::from(*k))));
    format!("{{{}}}", parts.join(","))
}

/// Predicts every row (errors stay errors) at `at` (`m` sampled models for the ensemble) and
/// returns the output text, one JSON object per row, with the number of error rows.
pub fn predict_rows(
    session: &Session,
    subspace: &Subspace,
    at: &At,
    m: usize,
    rows: &[InputRow],
) -> Result<(String, usize)> {
    // Tokenise the good rows; a text the tokenizer refuses becomes an error row too.
    let mut inputs = Vec::with_capacity(rows.len());
    let mut problems: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for r in rows {
        let tokens = match &r.texts {
            Ok((a, b)) => session.tokenizer.encode(a, b.as_deref()).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match tokens {
            Ok(t) => {
                inputs.push(t);
                problems.push(None);
            }
            Err(e) => problems.push(Some(e)),
        }
    }
    let mut scores: Vec<Vec<f32>> = Vec::new();
    if !inputs.is_empty() {
        let labels = vec![Label::Class(0); inputs.len()];
        let data = Encoded { inputs, labels };
        let o = outputs(
            &*session.backbone,
            subspace,
            &data,
            at,
            m,
            session.cfg.eval_batch_size,
            session.tokenizer.pad_id(),
        );
        scores = Vec::<Vec<f32>>::try_from(&o.mean_dim(1, false, Kind::Float))?;
    }
    let names = &session.task.label_names;
    let mut scores = scores.into_iter();
    let (mut text, mut errors) = (String::new(), 0);
    for (row, problem) in rows.iter().zip(&problems) {
        let line = match problem {
            Some(e) => {
                errors += 1;
                row_json(row, &[("error", Value::from(e.as_str()))])
            }
            None => {
                let r = scores.next().expect("one output per encoded row");
                if names.is_empty() {
                    row_json(row, &[("score", serde_json::json!(r[0]))])
                } else {
                    let best = r.iter().enumerate().fold(0, |bi, (i, p)| if *p > r[bi] { i } else { bi });
                    let probs: serde_json::Map<String, Value> =
                        names.iter().cloned().zip(r.iter().map(|p| serde_json::json!(p))).collect();
                    row_json(
                        row,
                        &[("label", Value::from(names[best].as_str())), ("probabilities", Value::Object(probs))],
                    )
                }
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    Ok((text, errors))
}

/// `prefix-subspace predict`: reads `input` (`-` = stdin) and predicts every line with the
/// run's `session` and `subspace` at `at`. With `strict`, the first bad line is an error
/// (`FILE:LINE: what was wrong`) and nothing is predicted. The caller writes
/// [`Predictions::text`] (to stdout, or a file with [`write_atomic`](crate::atomic::write_atomic)).
pub fn run(
    session: &Session,
    subspace: &Subspace,
    at: &At,
    m: usize,
    input: &Path,
    strict: bool,
) -> Result<Predictions> {
    let name = input_name(input);
    let bytes = read_input(input)?;
    let shape = TaskShape::of(&session.task);
    let rows = parse_input(&bytes, &shape);
    if rows.is_empty() {
        return Err(Error::Input(format!("{name}: no input lines (one text per line, or JSONL)")));
    }
    if strict {
        if let Some((r, e)) = rows.iter().find_map(|r| r.texts.as_ref().err().map(|e| (r, e))) {
            return Err(Error::Input(format!("{name}:{}: {e}", r.line)));
        }
        // A text the tokenizer refuses is a bad line too.
        for r in &rows {
            if let Ok((a, b)) = &r.texts {
                session
                    .tokenizer
                    .encode(a, b.as_deref())
                    .map_err(|e| Error::Input(format!("{name}:{}: {e}", r.line)))?;
            }
        }
    }
    let (text, errors) = predict_rows(session, subspace, at, m, &rows)?;
    Ok(Predictions { text, rows: rows.len(), errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single() -> TaskShape {
        TaskShape { name: "polarity".into(), pair: false }
    }

    fn pair() -> TaskShape {
        TaskShape { name: "rte".into(), pair: true }
    }

    #[test]
    fn lines_split_on_newline_keep_blanks_and_drop_cr() {
        assert_eq!(split_lines(b""), Vec::<&[u8]>::new());
        assert_eq!(split_lines(b"a\r\n\nb"), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split_lines(b"a\n\n"), vec![&b"a"[..], b""]);
        assert_eq!(split_lines(b"\xef\xbb\xbfa\n"), vec![&b"a"[..]]);
        assert_eq!(split_lines(b"\n"), vec![&b""[..]]);
    }

    #[test]
    fn bad_lines_become_errors_naming_what_was_found() {
        let rows = parse_input(b"good\n \nx\ty\n\xff\xfe\n{\"text\": 3}\n{bad\n{\"id\": 7}\n", &single());
        assert_eq!(rows.len(), 7);
        assert_eq!(rows[0].texts, Ok(("good".into(), None)));
        let err = |i: usize| rows[i].texts.clone().unwrap_err();
        assert_eq!(err(1), "empty line");
        assert!(err(2).contains("tab") && err(2).contains("takes one text"), "{}", err(2));
        assert!(err(3).contains("UTF-8"));
        assert!(err(4).contains("\"text\" is not a string"));
        assert!(err(5).contains("invalid JSON"));
        assert!(err(6).contains("no \"text_a\""));
        assert_eq!(rows[6].id, Some(Value::from(7)));
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    }

    #[test]
    fn arity_is_checked_both_ways() {
        let j = br#"{"id": "q1", "text_a": "a", "text_b": "b"}"#;
        let r = parse_line(j, 1, &single());
        assert_eq!(r.id, Some(Value::from("q1")));
        assert!(r.texts.unwrap_err().contains("\"text_b\" field"));
        assert_eq!(parse_line(j, 1, &pair()).texts, Ok(("a".into(), Some("b".into()))));
        assert!(parse_line(b"just one", 1, &pair()).texts.unwrap_err().contains("takes a pair"));
        assert!(parse_line(br#"{"text": "one"}"#, 1, &pair()).texts.unwrap_err().contains("no \"text_b\""));
        assert!(parse_line(b"a\tb\tc", 1, &pair()).texts.unwrap_err().contains("3 tab-separated"));
        assert_eq!(parse_line(b"a\tb", 1, &pair()).texts, Ok(("a".into(), Some("b".into()))));
        assert!(parse_line(b"a\t ", 1, &pair()).texts.unwrap_err().contains("empty second text"));
        assert!(parse_line(br#"{"text": "x", "id": [1]}"#, 1, &single()).texts.unwrap_err().contains("\"id\""));
    }

    #[test]
    fn rows_start_with_line_and_id() {
        let r = InputRow { line: 3, id: Some(Value::from("a\"b")), texts: Err("empty line".into()) };
        assert_eq!(
            row_json(&r, &[("error", Value::from("empty line"))]),
            r#"{"line":3,"id":"a\"b","error":"empty line"}"#
        );
    }
}
