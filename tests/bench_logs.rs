//! The per-step logs of a bench folder kept in one archive (`<bench>/metrics.jsonl.gz`, as the
//! committed grids of bench/results/ keep them): `plot` reads a cell's log from there, `bench
//! --unpack-logs` writes the logs back as files, and a finished cell without its metrics.jsonl
//! is still finished for `bench`, `--status` and `--merge`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).args(args).output().unwrap()
}

/// Runs `prefix-subspace ARGS`, expecting success; its stdout and stderr.
fn ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (String, String) {
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
    let o = cli(&a);
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{a:?}: {out}{err}");
    (out, err)
}

/// Runs `prefix-subspace ARGS`, expecting a one-line error with exit status 2; that line.
fn fails<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
    let o = cli(&a);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{a:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/lmbff-k16")
}

/// A committed cell whose metrics.jsonl stays in git (tests/committed_cells.rs compares with it).
const KEPT: &str = "wnli-k16-split13-subspace";

#[test]
fn a_committed_cell_plots_from_its_grids_archive_and_its_log_unpacks_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("lmbff-k16");
    // A copy of the committed grid's archive and of two cells, as git holds them: no metrics.jsonl.
    for cell in [KEPT, "mrpc-k16-split13-lora"] {
        let dir = grid.join("cells").join(cell);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.toml", "split.json", "results.json"] {
            std::fs::copy(committed().join("cells").join(cell).join(f), dir.join(f)).unwrap();
        }
    }
    let cell = grid.join("cells").join(KEPT);
    // Without the archive: one line naming both places, and nothing written.
    let e = fails(&["plot".as_ref(), "--run".as_ref(), cell.as_os_str()]);
    assert!(e.contains(&cell.join("metrics.jsonl").display().to_string()) && e.contains("metrics.jsonl.gz"), "{e}");
    assert!(!cell.join("plots").exists());
    std::fs::copy(committed().join("metrics.jsonl.gz"), grid.join("metrics.jsonl.gz")).unwrap();
    // Kept without its checkpoint: the training curves only, from the archive.
    let (out, err) = ok(&["plot".as_ref(), "--run".as_ref(), cell.as_os_str()]);
    assert!(err.contains("no checkpoint.safetensors") && err.contains("training curves"), "{err}");
    for ext in ["png", "svg"] {
        let f = cell.join("plots").join(format!("training.{ext}"));
        assert!(out.contains(&f.display().to_string()) && f.is_file(), "{out}");
    }
    let svg = std::fs::read_to_string(cell.join("plots/training.svg")).unwrap();
    assert!(svg.contains("dev accuracy"), "the dev curve is drawn");
    // Back as files: exactly the committed log; a log already there is left alone.
    let other = grid.join("cells/mrpc-k16-split13-lora/metrics.jsonl");
    std::fs::write(&other, "mine\n").unwrap();
    let (out, _) = ok(&["bench".as_ref(), "--out".as_ref(), grid.as_os_str(), "--unpack-logs".as_ref()]);
    assert!(
        out.contains("wrote 1 logs") && out.contains("1 were already there") && out.contains("313 archived cells"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(cell.join("metrics.jsonl")).unwrap(),
        std::fs::read(committed().join("cells").join(KEPT).join("metrics.jsonl")).unwrap()
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "mine\n");
    // A cell the archive does not hold.
    let lone = grid.join("cells/sst2-k16-split99-head");
    std::fs::create_dir_all(&lone).unwrap();
    std::fs::copy(cell.join("results.json"), lone.join("results.json")).unwrap();
    std::fs::copy(cell.join("config.toml"), lone.join("config.toml")).unwrap();
    let e = fails(&["plot".as_ref(), "--run".as_ref(), lone.as_os_str()]);
    assert!(e.contains("holds no log of cell sst2-k16-split99-head"), "{e}");
}

const GRID: &str = r#"
tasks = ["polarity"]
shots = [4]
split_seeds = [13, 21]
methods = ["prefix"]

[base]
max_steps = 2
test_limit = 40
dev_samples = 2
ensemble_samples = 2
"#;

/// results.csv without the wall-clock column, sorted.
fn rows(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let t = header.iter().position(|h| *h == "train_seconds").unwrap();
    let mut out: Vec<String> = lines
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != t).map(|(_, c)| c).collect::<Vec<_>>().join(","))
        .collect();
    out.sort();
    out
}

#[test]
fn finished_cells_without_their_logs_stay_finished_and_their_logs_pack_and_unpack() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, GRID).unwrap();
    let out = tmp.path().join("grid");
    let base = ["bench".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--out".as_ref(), out.as_os_str()];
    ok(&base);
    let before = rows(&out);
    let cells = ["polarity-k4-split13-prefix", "polarity-k4-split21-prefix"].map(|c| out.join("cells").join(c));
    let logs: Vec<Vec<u8>> = cells.iter().map(|c| std::fs::read(c.join("metrics.jsonl")).unwrap()).collect();
    let pack = [&base[..1], &base[3..], &["--pack-logs".as_ref()]].concat();
    let (said, _) = ok(&pack);
    assert!(said.contains("the logs of 2 cells (2 from cells/<cell>/metrics.jsonl, 0 kept"), "{said}");
    let archive = std::fs::read(out.join("metrics.jsonl.gz")).unwrap();
    for c in &cells {
        std::fs::remove_file(c.join("metrics.jsonl")).unwrap();
    }
    // Still finished: --status, a rerun (runs nothing) and --merge.
    let (status, _) = ok(&[&base[..], &["--status".as_ref()]].concat());
    let row: Vec<&str> = status.lines().find(|l| l.starts_with("polarity")).unwrap().split_whitespace().collect();
    assert_eq!(row[1..6], ["2", "2", "0", "0", "0"], "{status}");
    let (_, err) = ok(&base);
    assert!(err.contains("2 cells, 2 already finished, 0 to run"), "{err}");
    assert_eq!(rows(&out), before);
    let merged = tmp.path().join("merged");
    ok(&["bench".as_ref(), "--merge".as_ref(), out.as_os_str(), "--out".as_ref(), merged.as_os_str()]);
    assert_eq!(rows(&merged), before);
    // A cell with its checkpoint: every figure, the training curves from the archive.
    let (said, _) = ok(&["plot".as_ref(), "--run".as_ref(), cells[0].as_os_str()]);
    assert!(said.contains("training.png") && cells[0].join("plots/training.svg").is_file(), "{said}");
    // Packing again keeps the archived logs, the same bytes.
    let (said, _) = ok(&pack);
    assert!(said.contains("(0 from cells/<cell>/metrics.jsonl, 2 kept from the archive)"), "{said}");
    assert_eq!(std::fs::read(out.join("metrics.jsonl.gz")).unwrap(), archive);
    // And back as files, byte for byte.
    let unpack = [&base[..1], &base[3..], &["--unpack-logs".as_ref()]].concat();
    let (said, _) = ok(&unpack);
    assert!(said.contains("wrote 2 logs"), "{said}");
    for (c, log) in cells.iter().zip(&logs) {
        assert_eq!(&std::fs::read(c.join("metrics.jsonl")).unwrap(), log);
    }
    let e = fails(&["bench".as_ref(), "--out".as_ref(), merged.as_os_str(), "--unpack-logs".as_ref()]);
    assert!(e.contains("not a bench folder"), "{e}");
}
