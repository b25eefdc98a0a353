//! Low-level readers that turn TSV, CSV and JSONL files into rows of string fields tagged with
//! their line numbers, and turn such rows into [`Example`]s.

use std::path::{Path, PathBuf};

use super::{DataError, Example, Label, Result};

/// A file read as a header and rows of string fields.
#[derive(Debug)]
pub(crate) struct Table {
    /// The file.
    pub path: PathBuf,
    /// Column names: the file's header, or the names given to positional columns.
    pub header: Vec<String>,
    /// The data rows; every row has `header.len()` fields.
    pub rows: Vec<Row>,
}

/// One data row.
#[derive(Debug)]
pub(crate) struct Row {
    /// 1-based line of the file on which the record starts (header included).
    pub line: usize,
    /// The fields, one per header column.
    pub fields: Vec<String>,
}

/// How labels are parsed from their column.
pub(crate) enum LabelParser<'a> {
    /// The accepted raw values; the class index is the position in this list.
    Classes(&'a [String]),
    /// A floating-point score.
    Score,
}

/// Reads a whole file, mapping failure to [`DataError::Open`].
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::Open { path: path.to_path_buf(), reason: io_reason(&e) })
}

/// The OS error text without the " (os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Strips a leading UTF-8 byte order mark.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// What an empty file should have contained.
fn expected_content(positional: Option<&[&str]>) -> &'static str {
    match positional {
        Some(_) => "at least one row",
        None => "a header and at least one row",
    }
}

/// Shortens a value for an error message.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 60;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &value[..i]),
        None => value.to_string(),
    }
}

/// Reads a tab-separated file as plain tab-split lines (no quote processing): a leading BOM and
/// a trailing `\r` on each line are stripped and a fully empty last line is skipped. With
/// `positional`, the file has no header and these are the names of its columns.
pub(crate) fn read_tsv(path: &Path, positional: Option<&[&str]>) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let bytes = strip_bom(&bytes);
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf(), expected: expected_content(positional) });
    }
    let mut rows = Vec::with_capacity(lines.len());
    let mut header: Option<Vec<String>> = positional.map(|names| names.iter().map(|s| s.to_string()).collect());
    for (i, raw) in lines.into_iter().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| DataError::Utf8 { path: path.to_path_buf(), line })?;
        let fields: Vec<String> = text.split('\t').map(str::to_string).collect();
        match &header {
            None => header = Some(fields.iter().map(|f| f.trim().to_string()).collect()),
            Some(h) => {
                check_count(path, line, h, fields.len(), "tab-separated")?;
                rows.push(Row { line, fields });
            }
        }
    }
    finish(path, header.unwrap_or_default(), rows)
}

/// Reads a comma-separated file with standard CSV quoting (`""` escapes, fields may span
/// lines). A leading BOM is stripped. With `positional`, the file has no header and these are
/// the names of its columns.
pub(crate) fn read_csv(path: &Path, positional: Option<&[&str]>) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let bytes = strip_bom(&bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DataError::Empty { path: path.to_path_buf(), expected: expected_content(positional) });
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut header: Option<Vec<String>> = positional.map(|names| names.iter().map(|s| s.to_string()).collect());
    let mut rows = Vec::new();
    // Line numbers are computed from byte offsets: the csv crate's own line count misses
    // newlines inside quoted fields.
    let mut lines = LineCounter::new(bytes);
    for record in reader.byte_records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = lines.line_at(record.position().map_or(0, |p| p.byte() as usize));
        let mut fields = Vec::with_capacity(record.len());
        for field in record.iter() {
            let field = std::str::from_utf8(field).map_err(|_| DataError::Utf8 { path: path.to_path_buf(), line })?;
            fields.push(field.to_string());
        }
        match &header {
            None => header = Some(fields.iter().map(|f| f.trim().to_string()).collect()),
            Some(h) => {
                check_count(path, line, h, fields.len(), "comma-separated")?;
                rows.push(Row { line, fields });
            }
        }
    }
    finish(path, header.unwrap_or_default(), rows)
}

/// Converts increasing byte offsets of record starts into 1-based line numbers.
struct LineCounter<'a> {
    /// The whole file (after the BOM).
    bytes: &'a [u8],
    /// Offset up to which newlines have been counted.
    offset: usize,
    /// Line number at `offset`.
    line: usize,
}

impl<'a> LineCounter<'a> {
    /// A counter at the start of `bytes` (line 1).
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, offset: 0, line: 1 }
    }

    /// The line of the first byte at or after `offset` that is not a line terminator (a
    /// record's reported start may point at the `\n` of the previous record's `\r\n`).
    fn line_at(&mut self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            self.line += self.bytes[self.offset..start].iter().filter(|&&b| b == b'\n').count();
            self.offset = start;
        }
        self.line
    }
}

/// Maps a CSV parser error to a [`DataError`] naming its line.
fn csv_error(path: &Path, e: &csv::Error) -> DataError {
    match e.position() {
        Some(p) => DataError::Malformed {
            path: path.to_path_buf(),
            line: p.line() as usize,
            message: format!("cannot parse CSV: {e}"),
        },
        None => DataError::Invalid { path: path.to_path_buf(), message: format!("cannot parse CSV: {e}") },
    }
}

/// Reads a JSON-lines file (one JSON object per line; blank lines are skipped), keeping the
/// values of `keys` as the columns. String values are kept as they are, numbers and booleans
/// are converted to their JSON text.
pub(crate) fn read_jsonl(path: &Path, keys: &[&str]) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let bytes = strip_bom(&bytes);
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let malformed = |message: String| DataError::Malformed { path: path.to_path_buf(), line, message };
        let text = std::str::from_utf8(raw).map_err(|_| DataError::Utf8 { path: path.to_path_buf(), line })?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let detail = e.to_string().replace(" at line 1 column", " at column");
            malformed(format!("invalid JSON (expected one object per line): {detail}"))
        })?;
        let serde_json::Value::Object(object) = value else {
            return Err(malformed("expected a JSON object".to_string()));
        };
        let mut fields = Vec::with_capacity(keys.len());
        for key in keys {
            let field = match object.get(*key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
                Some(_) => return Err(malformed(format!("key {key:?} must be a string or a number"))),
                None => {
                    let present: Vec<&str> = object.keys().map(String::as_str).collect();
                    return Err(malformed(format!("missing key {key:?} (object has: {})", present.join(", "))));
                }
            };
            fields.push(field);
        }
        rows.push(Row { line, fields });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf(), expected: "one JSON object per line" });
    }
    Ok(Table { path: path.to_path_buf(), header: keys.iter().map(|k| k.to_string()).collect(), rows })
}

/// Checks that a row has as many fields as the header.
fn check_count(path: &Path, line: usize, header: &[String], found: usize, separator: &'static str) -> Result<()> {
    if found == header.len() {
        return Ok(());
    }
    Err(DataError::ColumnCount {
        path: path.to_path_buf(),
        line,
        expected: header.len(),
        separator,
        names: header.join(", "),
        found,
    })
}

/// Builds the table, requiring at least one data row.
fn finish(path: &Path, header: Vec<String>, rows: Vec<Row>) -> Result<Table> {
    if rows.is_empty() {
        return Err(DataError::NoRows { path: path.to_path_buf() });
    }
    Ok(Table { path: path.to_path_buf(), header, rows })
}

impl Table {
    /// Index of the column called `name`.
    pub(crate) fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| DataError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            header: self.header.join(", "),
        })
    }

    /// The file name used in example ids.
    fn file_name(&self) -> String {
        self.path.file_name().map_or_else(|| self.path.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// Converts the rows to examples: texts are trimmed and must not be empty, labels are
    /// trimmed and parsed with `labels`.
    pub(crate) fn examples(
        &self,
        text_a: &str,
        text_b: Option<&str>,
        label: &str,
        labels: &LabelParser,
    ) -> Result<Vec<Example>> {
        let a = self.column(text_a)?;
        let b = text_b.map(|name| self.column(name)).transpose()?;
        let l = self.column(label)?;
        let file = self.file_name();
        let text = |row: &Row, col: usize, name: &str| -> Result<String> {
            let value = row.fields[col].trim();
            if value.is_empty() {
                return Err(DataError::EmptyText { path: self.path.clone(), line: row.line, column: name.to_string() });
            }
            Ok(value.to_string())
        };
        self.rows
            .iter()
            .map(|row| {
                Ok(Example {
                    id: format!("{file}:{}", row.line),
                    text_a: text(row, a, text_a)?,
                    text_b: match (b, text_b) {
                        (Some(b), Some(name)) => Some(text(row, b, name)?),
                        _ => None,
                    },
                    label: self.parse_label(row, row.fields[l].trim(), labels)?,
                })
            })
            .collect()
    }

    /// Parses one label value.
    fn parse_label(&self, row: &Row, value: &str, labels: &LabelParser) -> Result<Label> {
        match labels {
            LabelParser::Classes(names) => {
                names.iter().position(|n| n == value).map(Label::Class).ok_or_else(|| DataError::UnknownLabel {
                    path: self.path.clone(),
                    line: row.line,
                    label: shorten(value),
                    expected: names.join(", "),
                })
            }
            LabelParser::Score => match value.parse::<f32>() {
                Ok(score) if score.is_finite() => Ok(Label::Score(score)),
                _ => Err(DataError::BadScore { path: self.path.clone(), line: row.line, value: shorten(value) }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(content).unwrap();
        path
    }

    fn classes() -> Vec<String> {
        vec!["entailment".into(), "not_entailment".into()]
    }

    #[test]
    fn tsv_reads_header_bom_crlf_and_keeps_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "train.tsv",
            b"\xEF\xBB\xBFindex\tsentence1\tsentence2\tlabel\r\n0\t\"Hi\" he said\tb\tentailment\r\n1\tc\td\tnot_entailment\n",
        );
        let t = read_tsv(&p, None).unwrap();
        assert_eq!(t.header, ["index", "sentence1", "sentence2", "label"]);
        let names = classes();
        let ex = t.examples("sentence1", Some("sentence2"), "label", &LabelParser::Classes(&names)).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].id, "train.tsv:2");
        assert_eq!(ex[0].text_a, "\"Hi\" he said");
        assert_eq!(ex[0].text_b.as_deref(), Some("b"));
        assert_eq!(ex[1].label, Label::Class(1));
        assert_eq!(ex[1].id, "train.tsv:3");
    }

    #[test]
    fn tsv_columns_found_by_name_when_reordered() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.tsv", b"label\tsentence2\tsentence1\nentailment\tB\tA\n");
        let names = classes();
        let ex = read_tsv(&p, None)
            .unwrap()
            .examples("sentence1", Some("sentence2"), "label", &LabelParser::Classes(&names))
            .unwrap();
        assert_eq!((ex[0].text_a.as_str(), ex[0].text_b.as_deref()), ("A", Some("B")));
    }

    #[test]
    fn tsv_wrong_column_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"index\tsentence1\tsentence2\tlabel\n".to_vec();
        for i in 0..15 {
            content.extend_from_slice(format!("{i}\ta\tb\tentailment\n").as_bytes());
        }
        content.extend_from_slice(b"15\ta\tentailment\n");
        let p = write(&dir, "train.tsv", &content);
        let err = read_tsv(&p, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:17: expected 4 tab-separated columns (index, sentence1, sentence2, label), found 3",
                p.display()
            )
        );
    }

    #[test]
    fn tsv_unknown_label() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "train.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tentailment\n2\ta\tb\tentailment\n3\ta\tb\tmaybe\n",
        );
        let names = classes();
        let err = read_tsv(&p, None)
            .unwrap()
            .examples("sentence1", Some("sentence2"), "label", &LabelParser::Classes(&names))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:5: unknown label \"maybe\" (expected one of: entailment, not_entailment)", p.display())
        );
    }

    #[test]
    fn missing_column_names_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.tsv", b"text\tlabel\nhello\t1\n");
        let names = classes();
        let err =
            read_tsv(&p, None).unwrap().examples("sentence", None, "label", &LabelParser::Classes(&names)).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: missing column \"sentence\" (header has: text, label)", p.display()));
    }

    #[test]
    fn empty_file_and_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "train.tsv", b"");
        assert_eq!(
            read_tsv(&p, None).unwrap_err().to_string(),
            format!("{}: file is empty (expected a header and at least one row)", p.display())
        );
        let p = write(&dir, "head.tsv", b"sentence\tlabel\n");
        assert_eq!(
            read_tsv(&p, None).unwrap_err().to_string(),
            format!("{}: no data rows after the header (expected at least one row)", p.display())
        );
        let p = write(&dir, "e.csv", b"\n");
        assert!(matches!(read_csv(&p, None), Err(DataError::Empty { .. })));
        let p = write(&dir, "e.jsonl", b"\n\n");
        assert!(matches!(read_jsonl(&p, &["a"]), Err(DataError::Empty { .. })));
    }

    #[test]
    fn cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.tsv");
        assert_eq!(
            read_tsv(&p, None).unwrap_err().to_string(),
            format!("{}: cannot open: No such file or directory", p.display())
        );
    }

    #[test]
    fn invalid_utf8_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"sentence\tlabel\n".to_vec();
        for _ in 0..7 {
            content.extend_from_slice(b"ok\t1\n");
        }
        content.extend_from_slice(b"bad \xFF\t1\n");
        let p = write(&dir, "train.tsv", &content);
        assert_eq!(read_tsv(&p, None).unwrap_err().to_string(), format!("{}:9: not valid UTF-8", p.display()));
        let p = write(&dir, "x.csv", b"a,b\n\"x\",1\n\"\xFF\",1\n");
        assert_eq!(read_csv(&p, None).unwrap_err().to_string(), format!("{}:3: not valid UTF-8", p.display()));
        let p = write(&dir, "x.jsonl", b"{\"a\":\"x\"}\n{\"a\":\"\xFF\"}\n");
        assert_eq!(read_jsonl(&p, &["a"]).unwrap_err().to_string(), format!("{}:2: not valid UTF-8", p.display()));
    }

    #[test]
    fn empty_text_names_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"sentence\tlabel\n".to_vec();
        for _ in 0..10 {
            content.extend_from_slice(b"ok\t0\n");
        }
        content.extend_from_slice(b"  \t1\n");
        let p = write(&dir, "train.tsv", &content);
        let names = vec!["0".to_string(), "1".to_string()];
        let err =
            read_tsv(&p, None).unwrap().examples("sentence", None, "label", &LabelParser::Classes(&names)).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:12: empty text in column \"sentence\"", p.display()));
    }

    #[test]
    fn bad_score() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "dev.tsv", b"s1\ts2\tscore\na\tb\t1.5\nc\td\tabc\n");
        let t = read_tsv(&p, None).unwrap();
        let err = t.examples("s1", Some("s2"), "score", &LabelParser::Score).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:3: score \"abc\" is not a number", p.display()));
        let p = write(&dir, "nan.tsv", b"s1\ts2\tscore\na\tb\tNaN\n");
        assert!(matches!(
            read_tsv(&p, None).unwrap().examples("s1", Some("s2"), "score", &LabelParser::Score),
            Err(DataError::BadScore { line: 2, .. })
        ));
    }

    #[test]
    fn positional_tsv_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "dev.tsv", b"gj04\t1\t\tGood.\ngj04\t0\t*\tBad.");
        let cols = ["source", "label", "original_label", "sentence"];
        let t = read_tsv(&p, Some(&cols)).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].line, 1);
        let p = write(&dir, "short.tsv", b"gj04\t1\tGood.\n");
        assert_eq!(
            read_tsv(&p, Some(&cols)).unwrap_err().to_string(),
            format!(
                "{}:1: expected 4 tab-separated columns (source, label, original_label, sentence), found 3",
                p.display()
            )
        );
        let p = write(&dir, "empty.tsv", b"");
        assert_eq!(
            read_tsv(&p, Some(&cols)).unwrap_err().to_string(),
            format!("{}: file is empty (expected at least one row)", p.display())
        );
    }

    #[test]
    fn csv_quotes_multiline_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            write(&dir, "x.csv", b"\xEF\xBB\xBF\"label\",\"text\"\r\n\"1\",\"a \"\"q\"\" b\n\"\r\n\"-1\",\"c, d\"\r\n");
        let t = read_csv(&p, None).unwrap();
        assert_eq!(t.header, ["label", "text"]);
        assert_eq!(t.rows[0].line, 2);
        assert_eq!(t.rows[0].fields[1], "a \"q\" b\n");
        assert_eq!(t.rows[1].line, 4);
        assert_eq!(t.rows[1].fields[1], "c, d");
        let p = write(&dir, "z.csv", b"a,b\r\n\r\n1,\"x\ny\nz\"\n2,w\r\n3,v");
        let t = read_csv(&p, None).unwrap();
        let lines: Vec<usize> = t.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 6, 7]);
        let p = write(&dir, "y.csv", b"label,text\n1,a\n1,a,b\n");
        assert_eq!(
            read_csv(&p, None).unwrap_err().to_string(),
            format!("{}:3: expected 2 comma-separated columns (label, text), found 3", p.display())
        );
    }

    #[test]
    fn jsonl_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "x.jsonl", b"{\"text\":\"a\",\"label\":1}\n\n{\"text\": \"b\"}\n");
        assert_eq!(
            read_jsonl(&p, &["text", "label"]).unwrap_err().to_string(),
            format!("{}:3: missing key \"label\" (object has: text)", p.display())
        );
        let p = write(&dir, "y.jsonl", b"{\"text\":\"a\",\"label\":1}\n{\"text\": \n");
        let msg = read_jsonl(&p, &["text", "label"]).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}:2: invalid JSON (expected one object per line): ", p.display())), "{msg}");
        assert!(!msg.contains('\n'));
        let p = write(&dir, "z.jsonl", b"[1, 2]\n");
        assert_eq!(
            read_jsonl(&p, &["text"]).unwrap_err().to_string(),
            format!("{}:1: expected a JSON object", p.display())
        );
        let p = write(&dir, "w.jsonl", b"{\"text\": [\"a\"]}\n");
        assert_eq!(
            read_jsonl(&p, &["text"]).unwrap_err().to_string(),
            format!("{}:1: key \"text\" must be a string or a number", p.display())
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(100);
        let s = shorten(&long);
        assert_eq!(s.len(), 63);
        assert_eq!(shorten("short"), "short");
    }
}
