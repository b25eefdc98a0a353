//! The archive of a bench folder's per-step logs (`metrics.jsonl.gz`): [`pack_logs`],
//! [`unpack_logs`], [`read_logs_archive`], and [`run_log`] (a run's log, from its folder or
//! from the archive).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The archive of a bench folder's per-step logs: `<bench>/metrics.jsonl.gz`, the lines of every
/// finished cell's `cells/<cell>/metrics.jsonl`, in cell order, each line
/// `{"cell":"<cell>",` followed by the rest of the original line (its first character, `{`,
/// dropped), so that the original line comes back byte for byte. The committed grids of
/// `bench/results/` keep their logs only there (`plot --run` reads them; `bench --unpack-logs`
/// writes them back as files).
pub const LOGS_ARCHIVE: &str = "metrics.jsonl.gz";

/// The archived line of `line` (one line of cell `cell`'s metrics.jsonl, without its newline).
fn archive_line(cell: &str, line: &str) -> Option<String> {
    let rest = line.strip_prefix('{')?;
    let sep = if rest.starts_with('}') { "" } else { "," };
    Some(format!("{{\"cell\":\"{cell}\"{sep}{rest}"))
}

/// The cell and the original line of an archived line.
fn original_line(archived: &str) -> Option<(&str, String)> {
    let rest = archived.strip_prefix("{\"cell\":\"")?;
    let (cell, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(',').or_else(|| rest.starts_with('}').then_some(rest))?;
    crate::paths::is_safe_name(cell).then(|| (cell, format!("{{{rest}")))
}

/// Reads a logs archive: cell name → its metrics.jsonl text (each line ending in a newline).
pub fn read_logs_archive(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut logs: BTreeMap<String, String> = BTreeMap::new();
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    // Split at '\n' only (not `lines`, which also drops a '\r'): lines come back byte for byte.
    for (i, line) in reader.split(b'\n').enumerate() {
        let bad = |e: String| Error::Input(format!("{}: not a gzip'd logs archive ({e})", path.display()));
        let line = String::from_utf8(line.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        let (cell, original) = original_line(&line).ok_or_else(|| {
            Error::Input(format!(
                "{}:{}: expected a line {{\"cell\":\"<cell>\",…}} of a logs archive written by `bench --pack-logs`",
                path.display(),
                i + 1
            ))
        })?;
        let text = logs.entry(cell.to_string()).or_default();
        text.push_str(&original);
        text.push('\n');
    }
    Ok(logs)
}

/// The per-step log of a run (the text of its metrics.jsonl) and where it was read: the file
/// in the run folder, or else, for a cell of a bench folder (`<bench>/cells/<cell>/`), its
/// lines in `<bench>/metrics.jsonl.gz`. One line naming both places when neither has it.
pub fn run_log(run: &Path) -> Result<(String, PathBuf)> {
    let path = run.join("metrics.jsonl");
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok((text, path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let cell = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cells = run.parent().filter(|p| p.file_name().is_some_and(|n| n == "cells"));
    let Some(archive) = cells.and_then(Path::parent).map(|b| b.join(LOGS_ARCHIVE)) else {
        return Err(Error::Input(format!("{}: no such file (the run has no per-step log)", path.display())));
    };
    if !archive.is_file() {
        return Err(Error::Input(format!(
            "{}: no such file, and no logs archive {} of its bench folder",
            path.display(),
            archive.display()
        )));
    }
    match read_logs_archive(&archive)?.remove(&cell) {
        Some(text) => Ok((text, archive)),
        None => Err(Error::Input(format!(
            "{}: no such file, and {} holds no log of cell {cell}",
            path.display(),
            archive.display()
        ))),
    }
}

/// What [`pack_logs`] and [`unpack_logs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LogsCount {
    /// Cells whose log was read from (pack) or written to (unpack) `cells/<cell>/metrics.jsonl`.
    pub files: usize,
    /// Cells whose log was kept from the archive (pack), or left alone because their
    /// metrics.jsonl is already there (unpack).
    pub kept: usize,
    /// Archived logs of cells without a folder under `cells/` (left out, and not written).
    pub orphans: usize,
}

/// Writes `<bench>/metrics.jsonl.gz` (see [`LOGS_ARCHIVE`]) from the logs of the finished cells
/// (those with a results.json) under `<bench>/cells/`: each cell's metrics.jsonl where it is on
/// disk, else its log in the archive already there. Deletes nothing. A log line that is not a
/// JSON object on one line, or a log without its final newline, is an error naming it, and
/// nothing is written. A folder that is not a bench folder is refused; the bench folder's lock
/// is held throughout (a running bench refuses it).
pub fn pack_logs(bench: &Path) -> Result<LogsCount> {
    super::check_folder(bench)?;
    let _lock = crate::rundir::lock(bench, crate::rundir::Kind::Bench)?;
    let archive = bench.join(LOGS_ARCHIVE);
    let mut old = if archive.is_file() { read_logs_archive(&archive)? } else { BTreeMap::new() };
    let cells_dir = bench.join("cells");
    let mut cells = Vec::new();
    for e in std::fs::read_dir(&cells_dir).map_err(|e| Error::io(&cells_dir, e))? {
        let p = e.map_err(|e| Error::io(&cells_dir, e))?.path();
        if p.is_dir() && p.join("results.json").is_file() {
            cells.push(p);
        }
    }
    cells.sort();
    let mut n = LogsCount::default();
    let mut out = Vec::new();
    for dir in cells {
        let cell = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let archived = old.remove(&cell);
        if !crate::paths::is_safe_name(&cell) {
            continue;
        }
        let path = dir.join("metrics.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => {
                n.files += 1;
                t
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match archived {
                Some(t) => {
                    n.kept += 1;
                    t
                }
                None => continue,
            },
            Err(e) => return Err(Error::io(&path, e)),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(Error::Input(format!("{}: the last line has no newline (a cut log?)", path.display())));
        }
        for (i, line) in text.split_terminator('\n').enumerate() {
            let a = archive_line(&cell, line)
                .filter(|_| serde_json::from_str::<serde_json::Map<String, Value>>(line).is_ok());
            let a = a.ok_or_else(|| {
                Error::Input(format!("{}:{}: expected a JSON object on one line", path.display(), i + 1))
            })?;
            out.extend_from_slice(a.as_bytes());
            out.push(b'\n');
        }
    }
    n.orphans = old.len();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &out)
        .and_then(|_| gz.finish())
        .map_or_else(|e| Err(Error::io(&archive, e)), |bytes| crate::atomic::write_atomic(&archive, &bytes))?;
    Ok(n)
}

/// Writes every log of `<bench>/metrics.jsonl.gz` back as `<bench>/cells/<cell>/metrics.jsonl`,
/// where the cell's folder exists and has no metrics.jsonl yet (a file already there is left as
/// it is). Refused, and locked, as [`pack_logs`].
pub fn unpack_logs(bench: &Path) -> Result<LogsCount> {
    super::check_folder(bench)?;
    let _lock = crate::rundir::lock(bench, crate::rundir::Kind::Bench)?;
    let archive = bench.join(LOGS_ARCHIVE);
    if !archive.is_file() {
        return Err(Error::Input(format!(
            "{}: no such file: this bench folder has no logs archive (its logs are in cells/<cell>/metrics.jsonl, if anywhere)",
            archive.display()
        )));
    }
    let mut n = LogsCount::default();
    for (cell, text) in read_logs_archive(&archive)? {
        let dir = bench.join("cells").join(&cell);
        let path = dir.join("metrics.jsonl");
        if !dir.is_dir() {
            n.orphans += 1;
        } else if std::fs::symlink_metadata(&path).is_ok() {
            n.kept += 1;
        } else {
            crate::atomic::write_atomic(&path, text.as_bytes())?;
            n.files += 1;
        }
    }
    Ok(n)
}
