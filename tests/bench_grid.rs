//! The bench grid: resumable, sharded runs merge into the same table as one run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const GRID: &str = r#"
tasks = ["polarity"]
shots = [4]
split_seeds = [13, 21]
methods = ["prefix", "head"]

[[variant]]
name = "subspace-beta0"
method = "subspace"
set = { beta = 0.0, vertices = 2 }

[base]
max_steps = 2
test_limit = 40
dev_samples = 2
ensemble_samples = 2
"#;

fn bench(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).arg("bench").args(args).output().unwrap();
    assert!(o.status.success(), "bench {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `bench --status`: the counts of the row of `task` (cells, finished, interrupted, stale, to
/// run) and its cell-seconds; the whole output.
fn status(args: &[&str], task: &str) -> ([usize; 5], f64, String) {
    let o =
        Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).arg("bench").args(args).arg("--status").output().unwrap();
    assert!(o.status.success(), "bench --status: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let row: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&task))
        .unwrap_or_else(|| panic!("no row for {task}:\n{text}"));
    let n: Vec<usize> = row[1..6].iter().map(|x| x.parse().unwrap()).collect();
    (n.try_into().unwrap(), row[6].parse().unwrap(), text)
}

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
fn sharded_runs_merge_into_the_table_of_one_run_and_finished_cells_are_not_rerun() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, GRID).unwrap();
    let cfg = cfg.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let (n, secs, _) = status(&["--config", cfg, "--out", whole.to_str().unwrap()], "polarity");
    assert_eq!((n, secs), ([6, 0, 0, 0, 6], 0.0), "nothing run yet");
    assert!(!whole.exists(), "--status runs nothing and writes nothing");
    bench(&["--config", cfg, "--out", whole.to_str().unwrap(), "--jobs", "2"]);
    let (n, secs, _) = status(&["--config", cfg, "--out", whole.to_str().unwrap()], "polarity");
    assert_eq!(n, [6, 6, 0, 0, 0]);
    assert!(secs > 0.0, "the finished cells' seconds are counted");
    let (n, _, _) = status(&["--config", cfg, "--out", whole.to_str().unwrap(), "--variants", "prefix"], "polarity");
    assert_eq!(n, [2, 2, 0, 0, 0], "--variants selects the cells, as for a run");
    let all = rows(&whole);
    assert_eq!(all.len(), 6, "2 seeds × 3 variants");
    let summary = std::fs::read_to_string(whole.join("summary.md")).unwrap();
    for v in ["prefix", "head", "subspace-beta0", "subspace-beta0 (ensemble)"] {
        assert!(summary.contains(&format!("| {v} |")), "summary lacks {v}:\n{summary}");
    }

    // The method figure, of some variants only, bars in the order given; a name with no run fails.
    let plot = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
            .args(["plot", "--bench", whole.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let figure = whole.join("plots/methods-per-class-4.svg");
    let o = plot(&["--variants", "nope"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("under {}\n", whole.display())), "{err}");
    assert!(!whole.join("plots").exists(), "a refused plot leaves no plots/ folder");
    assert!(plot(&[]).status.success());
    let svg = std::fs::read_to_string(&figure).unwrap();
    assert!(svg.contains("subspace-beta0") && !svg.contains("n = "), "every variant by default; n only if it varies");
    assert!(plot(&["--variants", "prefix,head"]).status.success());
    let svg = std::fs::read_to_string(&figure).unwrap();
    let label = |name: &str| svg.lines().position(|l| l.trim() == name).unwrap_or_else(|| panic!("{name} not drawn"));
    let (p, h) = (label("prefix"), label("head"));
    assert!(p < h && !svg.contains("subspace-beta0"), "only the variants asked for, in that order");
    let o = plot(&["--tasks", "polarity", "--variants", "prefix,nope"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--variants nope: no finished run of it"));
    let again = bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert!(again.contains("6 already finished, 0 to run"), "{again}");

    // A cell interrupted before its results.json (as after a kill) runs again, alone, and
    // rerunning it with its seeds gives the same numbers.
    let cell = whole.join("cells/polarity-k4-split21-subspace-beta0");
    std::fs::remove_file(cell.join("results.json")).unwrap();
    let (n, _, text) = status(&["--config", cfg, "--out", whole.to_str().unwrap()], "polarity");
    assert_eq!(n, [6, 5, 0, 0, 1]);
    // The figure of a grid in progress says on how many split seeds its points rest.
    assert!(plot(&[]).status.success());
    let svg = std::fs::read_to_string(&figure).unwrap();
    assert!(svg.lines().any(|l| l.trim() == "(accuracy, n = 1–2)"), "{svg}");
    std::fs::remove_dir_all(whole.join("plots")).unwrap();
    let left: f64 =
        text.lines().find(|l| l.starts_with("polarity")).unwrap().split_whitespace().nth(7).unwrap().parse().unwrap();
    let split13: f64 = {
        let r = common::results_json(&whole.join("cells/polarity-k4-split13-subspace-beta0"));
        r["train_seconds"].as_f64().unwrap() + r["test_seconds"].as_f64().unwrap()
    };
    assert!(
        (left - split13).abs() < 1.0,
        "the left cell is estimated at its sibling's seconds: {left} vs {split13}\n{text}"
    );
    assert!(text.contains("for the cells not finished (1):\n  1 at the mean"), "{text}");
    let resumed = bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert!(resumed.contains("5 already finished, 1 to run"), "{resumed}");
    assert_eq!(rows(&whole), all);

    // A cell trained with other settings is stale and reruns.
    let edited = GRID.replace("max_steps = 2", "max_steps = 3");
    let cfg2 = tmp.path().join("grid2.toml");
    std::fs::write(&cfg2, edited).unwrap();
    let (n, _, _) = status(&["--config", cfg2.to_str().unwrap(), "--out", whole.to_str().unwrap()], "polarity");
    assert_eq!(n, [6, 0, 0, 6, 0], "trained with other settings");
    let stale = bench(&["--config", cfg2.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--tasks", "polarity"]);
    assert!(stale.contains("0 already finished, 6 to run"), "{stale}");

    // Back to the original grid for the sharding comparison.
    bench(&["--config", cfg, "--out", whole.to_str().unwrap()]);
    assert_eq!(rows(&whole), all);

    let mut shards = Vec::new();
    for i in 0..3 {
        let d = tmp.path().join(format!("shard{i}"));
        bench(&["--config", cfg, "--out", d.to_str().unwrap(), "--shard", &format!("{i}/3")]);
        assert_eq!(rows(&d).len(), 2);
        shards.push(d);
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["--out", merged.to_str().unwrap(), "--merge"];
    args.extend(shards.iter().map(|d| d.to_str().unwrap()));
    bench(&args);
    assert_eq!(rows(&merged), all);
    assert_eq!(
        std::fs::read_to_string(merged.join("summary.md")).unwrap().lines().skip(3).collect::<Vec<_>>(),
        summary.lines().skip(3).collect::<Vec<_>>()
    );

    // A finished cell of an older numerics version (its config.toml has no `numerics` key) is
    // not mixed into the tables, and the summary names it.
    let old = shards[0].join("cells").read_dir().unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    let text = std::fs::read_to_string(old.join("config.toml")).unwrap();
    let without: String = text.lines().filter(|l| !l.starts_with("numerics")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, text);
    std::fs::write(old.join("config.toml"), without).unwrap();
    let remerged = tmp.path().join("remerged");
    let mut args = vec!["--out", remerged.to_str().unwrap(), "--merge"];
    args.extend(shards.iter().map(|d| d.to_str().unwrap()));
    bench(&args);
    assert_eq!(rows(&remerged).len(), 5, "the old-numerics cell is left out");
    let summary = std::fs::read_to_string(remerged.join("summary.md")).unwrap();
    let name = old.file_name().unwrap().to_string_lossy().into_owned();
    assert!(summary.contains("older numerics version") && summary.contains(&name), "{summary}");
}

const SLOW_CELL: &str = r#"
tasks = ["polarity"]
shots = [16]
split_seeds = [13]
methods = ["subspace", "prefix"]

[base]
max_steps = 40
eval_every = 5
# No periodic save before the end: a resumable state can only come from the cell saving it
# when its bench dies.
checkpoint_every = 100
test_limit = 120
dev_samples = 4
ensemble_samples = 4
"#;

/// The highest step logged by any cell of a bench folder (0 before the first).
fn cell_step(out: &Path) -> usize {
    let Ok(cells) = std::fs::read_dir(out.join("cells")) else { return 0 };
    cells.flatten().map(|e| common::last_step(&e.path())).max().unwrap_or(0)
}

/// Processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn a_killed_bench_stops_its_cells_and_the_next_one_finishes_them_to_the_same_numbers() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, SLOW_CELL).unwrap();
    let straight = tmp.path().join("straight");
    bench(&["--config", cfg.to_str().unwrap(), "--out", straight.to_str().unwrap(), "--jobs", "2"]);

    // Two cells side by side, as a real grid runs.
    let killed = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
        .args(["bench", "--config", cfg.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--jobs", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while cell_step(&killed) < 8 {
        assert!(child.try_wait().unwrap().is_none(), "the bench ended before step 8");
        assert!(t0.elapsed().as_secs() < 300, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGTERM, which the bench does not handle: it dies at once, its threads one after another,
    // and the kernel sends each cell its parent-death signal once per thread that adopts it.
    // (Not SIGINT: a harness that starts the tests in the background has it ignored.)
    let killed_ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed_ok.success());
    child.wait().unwrap();
    let needle = killed.join("cells").to_string_lossy().into_owned();
    let t0 = std::time::Instant::now();
    while !processes_naming(&needle).is_empty() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "cells still running after the bench died: {:?}",
            processes_naming(&needle)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cells: Vec<std::path::PathBuf> =
        std::fs::read_dir(killed.join("cells")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(cells.len(), 2);
    for cell in &cells {
        let step = common::last_step(cell);
        assert!(step < 40, "killed before the cell's end: {} at step {step}", cell.display());
        // No periodic save before step 40: this is the state saved on the signal.
        let log = std::fs::read_to_string(cell.with_extension("log")).unwrap();
        assert!(log.contains(&format!("interrupted at step {step}/40")), "the cell saved its state: {log}");
    }

    let (n, _, text) = status(&["--config", cfg.to_str().unwrap(), "--out", killed.to_str().unwrap()], "polarity");
    assert_eq!(n, [2, 0, 2, 0, 0], "{text}");
    for cell in &cells {
        let line = format!(
            "{}: step {}/40, 0 test point(s) scored",
            cell.file_name().unwrap().to_string_lossy(),
            common::last_step(cell)
        );
        assert!(text.contains(&line), "{line} not in\n{text}");
    }

    let err = bench(&["--config", cfg.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--jobs", "2"]);
    assert!(err.contains("0 already finished, 2 to run"), "{err}");
    assert_eq!(rows(&killed), rows(&straight), "the continued cells give the uninterrupted numbers");
    for cell in &cells {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cell.join("results.json")).unwrap()).unwrap();
        assert_eq!(r["resumed"], true, "continued from the saved state, not started again");
    }
}

#[test]
fn an_interrupted_cell_stops_the_bench_instead_of_counting_as_a_failure() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, SLOW_CELL).unwrap();
    let out = tmp.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
        .args(["bench", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while cell_step(&out) < 8 {
        assert!(t0.elapsed().as_secs() < 300, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The cell alone gets the signal (as when a user stops one cell, or a scheduler preempts
    // it): it saves its state and exits with status 130.
    let needle = out.join("cells").to_string_lossy().into_owned();
    let mut signalled = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) && cmd.contains(" train ") {
            let pid = e.file_name().to_string_lossy().into_owned();
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            signalled += 1;
        }
    }
    assert_eq!(signalled, 1, "one cell runs at a time");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted after") && err.contains("no further cell starts"), "{err}");
    assert!(!err.contains("FAILED"), "{err}");
    let cells: Vec<_> =
        std::fs::read_dir(out.join("cells")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(cells.len(), 1, "the second cell never started");
    let (n, _, text) = status(&["--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()], "polarity");
    assert_eq!(n, [2, 0, 1, 0, 1], "{text}");
}

/// Runs `prefix-subspace ARGS`, expecting it to fail; its stderr.
fn fails<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let line: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(!o.status.success(), "{} succeeded: {}{err}", line.join(" "), String::from_utf8_lossy(&o.stdout));
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// The names in a folder, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Copies a folder recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// One quick cell.
const ONE_CELL: &str = r#"
tasks = ["polarity"]
shots = [4]
split_seeds = [13]
methods = ["prefix"]

[base]
max_steps = 2
test_limit = 40
dev_samples = 2
ensemble_samples = 2
"#;

/// A temporary folder holding `grid.toml` = [`ONE_CELL`], and that file's path.
fn one_cell_grid() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, ONE_CELL).unwrap();
    (tmp, cfg)
}

#[test]
fn task_and_variant_names_that_are_not_one_path_component_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder of the user's next to --out, which `x/../../../sentinel` would name.
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("precious.txt"), "mine").unwrap();
    let out = tmp.path().join("out");
    let variant = |name: &str| format!("{ONE_CELL}\n[[variant]]\nname = {name:?}\nmethod = \"head\"\n");
    let cases = [
        ("x/../../../sentinel", variant("x/../../../sentinel")),
        ("a/b", variant("a/b")),
        ("..", variant("..")),
        ("../sentinel", ONE_CELL.replace(r#"tasks = ["polarity"]"#, r#"tasks = ["../sentinel"]"#)),
    ];
    for (i, (bad, grid)) in cases.iter().enumerate() {
        let cfg = tmp.path().join(format!("grid{i}.toml"));
        std::fs::write(&cfg, grid).unwrap();
        for status in [false, true] {
            let mut args = vec!["bench", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
            if status {
                args.push("--status");
            }
            let err = fails(&args);
            assert!(err.contains(&format!("{bad:?}")), "names {bad}: {err}");
            assert!(err.contains("letters, digits, '.', '_' and '-'"), "says what is allowed: {err}");
        }
    }
    assert!(!out.exists(), "nothing is created under --out");
    assert_eq!(entries(&sentinel), ["precious.txt"]);
    let mut expected: Vec<String> = (0..cases.len()).map(|i| format!("grid{i}.toml")).collect();
    expected.push("sentinel".into());
    assert_eq!(entries(tmp.path()), expected, "nothing is written beside --out");
}

#[test]
fn a_bench_folder_in_use_is_refused_to_a_second_bench_and_merge_and_status_still_reads_it() {
    let (tmp, cfg) = one_cell_grid();
    let out = tmp.path().join("out");
    let lock = prefix_subspace::rundir::lock(&out, prefix_subspace::rundir::Kind::Bench).unwrap();
    let pid = format!("pid {}", std::process::id());
    let err = fails(&["bench", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains(&pid) && err.contains(&out.display().to_string()), "{err}");
    assert_eq!(entries(&out), [".prefix-subspace-bench"], "the refused bench wrote nothing");
    let (n, _, _) = status(&["--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()], "polarity");
    assert_eq!(n, [1, 0, 0, 0, 1], "--status takes no lock");
    // A merge into a folder in use is refused too (the source is a bench with a finished run).
    drop(lock);
    common::minilm_dir();
    let src = tmp.path().join("src");
    bench(&["--config", cfg.to_str().unwrap(), "--out", src.to_str().unwrap()]);
    assert!(src.join(".prefix-subspace-bench").is_file(), "a bench marks its folder");
    let _lock = prefix_subspace::rundir::lock(&out, prefix_subspace::rundir::Kind::Bench).unwrap();
    let err = fails(&["bench", "--merge", src.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains(&pid), "{err}");
    assert_eq!(entries(&out), [".prefix-subspace-bench"], "the refused merge wrote nothing");
}

#[test]
fn a_folder_of_the_users_is_refused_as_bench_out_and_left_as_it_is() {
    let (tmp, cfg) = one_cell_grid();
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("results.csv"), "my,table\n").unwrap();
    let err = fails(&["bench", "--config", cfg.to_str().unwrap(), "--out", mine.to_str().unwrap()]);
    assert!(err.contains("not a bench folder") && err.contains(&mine.display().to_string()), "{err}");
    assert_eq!(entries(&mine), ["results.csv"], "no marker, no cells/, nothing replaced");
    assert_eq!(std::fs::read_to_string(mine.join("results.csv")).unwrap(), "my,table\n");
    // Read as a bench folder, it is refused by name (merge said "mine/cells: No such file").
    let merged = tmp.path().join("merged");
    let err = fails(&["bench", "--merge", mine.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(err.contains(&format!("{}: not a bench folder (no cells/)", mine.display())), "{err}");
    let err = fails(&["plot", "--bench", mine.to_str().unwrap()]);
    assert!(err.contains(&format!("{}: not a bench folder (no cells/)", mine.display())), "{err}");
    assert!(!merged.exists());
    assert_eq!(entries(&mine), ["results.csv"]);
}

#[test]
fn bench_jobs_0_is_refused_before_anything_is_written() {
    // --jobs 0 ran the cells one at a time while saying "0 at a time".
    let (tmp, cfg) = one_cell_grid();
    let fresh = tmp.path().join("fresh");
    let o = Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
        .args(["bench", "--config", cfg.to_str().unwrap(), "--out", fresh.to_str().unwrap(), "--jobs", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--jobs") && err.contains("1..=1024"), "{err}");
    assert!(!fresh.exists());
}

#[test]
fn a_task_or_variant_the_grid_does_not_have_is_refused_before_anything_is_written() {
    // `--tasks sst9` selected no cell and ended as a bench that ran, writing an empty table.
    let (tmp, cfg) = one_cell_grid();
    let out = tmp.path().join("out");
    for status in [false, true] {
        for (flag, name, has) in [("--tasks", "sst9", "polarity"), ("--variants", "lora", "prefix")] {
            let mut args = vec!["bench", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
            args.extend([flag, name]);
            if status {
                args.push("--status");
            }
            let err = fails(&args);
            assert!(err.contains(&format!("{flag} {name}")) && err.contains(&format!(": {has})")), "{err}");
        }
    }
    assert!(!out.exists(), "nothing is created under --out");
    // A name the grid has selects its cells.
    let (n, _, _) =
        status(&["--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--tasks", "polarity"], "polarity");
    assert_eq!(n, [1, 0, 0, 0, 1]);
}

#[test]
fn merging_same_named_cells_of_different_runs_is_refused_and_identical_ones_merge_once() {
    common::minilm_dir();
    let (tmp, cfg) = one_cell_grid();
    let a = tmp.path().join("a");
    bench(&["--config", cfg.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    let id = "polarity-k4-split13-prefix";
    let results = |dir: &Path| dir.join("cells").join(id).join("results.json");
    let read = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(results(dir)).unwrap()).unwrap()
    };
    let merge = |dirs: &[&Path], out: &Path| -> Vec<String> {
        let mut args: Vec<String> = ["bench", "--out", out.to_str().unwrap(), "--merge"].map(String::from).into();
        args.extend(dirs.iter().map(|d| d.to_str().unwrap().to_string()));
        args
    };

    // The same run again, with other wall-clock figures: merged once.
    let same = tmp.path().join("same");
    copy_dir(&a, &same);
    let mut r = read(&same);
    r["train_seconds"] = serde_json::json!(1234.5);
    r["test_seconds"] = serde_json::json!(99.0);
    r["train_samples_per_second"] = serde_json::json!(1.0);
    r["resumed"] = serde_json::json!(true);
    std::fs::write(results(&same), r.to_string()).unwrap();
    let m = tmp.path().join("m-same");
    let o = Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).args(merge(&[&a, &same], &m)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("merged 1 runs"), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(rows(&m), rows(&a));

    // Other test scores under the same cell name (another user task, say): refused, naming both.
    let other = tmp.path().join("other");
    copy_dir(&a, &other);
    let mut r = read(&other);
    let acc = r["test"]["centroid"]["accuracy"].as_f64().unwrap();
    r["test"]["centroid"]["accuracy"] = serde_json::json!(if acc > 0.5 { acc - 0.25 } else { acc + 0.25 });
    std::fs::write(results(&other), r.to_string()).unwrap();
    let m = tmp.path().join("m-other");
    let err = fails(&merge(&[&a, &other], &m));
    let (cell_a, cell_other) = (a.join("cells").join(id), other.join("cells").join(id));
    assert!(err.contains(&cell_a.display().to_string()) && err.contains(&cell_other.display().to_string()), "{err}");
    assert!(err.contains("different results"), "{err}");
    assert!(!m.exists(), "a failed merge creates nothing");

    // The same results from other numbers-changing settings: refused too.
    let settings = tmp.path().join("settings");
    copy_dir(&a, &settings);
    let toml = settings.join("cells").join(id).join("config.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("max_steps = 2"), "{text}");
    std::fs::write(&toml, text.replace("max_steps = 2", "max_steps = 3")).unwrap();
    let err = fails(&merge(&[&settings, &a], &m));
    assert!(err.contains(&cell_a.display().to_string()) && err.contains("different settings"), "{err}");
    assert!(!m.exists(), "a failed merge creates nothing");

    // A results.json that is a folder, not JSON, or lacks the fields of the table: one error
    // naming it, in merge and in report.
    let broken = tmp.path().join("broken");
    copy_dir(&a, &broken);
    let run = broken.join("cells").join(id);
    let p = results(&broken);
    for (content, why) in [
        (None, ""),
        (Some("{\"task\": \"polarity\", \"method\": \"prefix\""), "invalid JSON"),
        (Some("{\"method\": \"prefix\", \"test\": {\"centroid\": {\"accuracy\": 0.5}}}"), "\"task\""),
        (Some("{\"task\": \"polarity\", \"method\": \"prefix\"}"), "no test scores"),
        (Some("{\"task\": \"polarity\", \"method\": \"prefix\", \"test\": {\"ensemble\": {}}}"), "centroid"),
    ] {
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_dir(&p);
        match content {
            None => std::fs::create_dir(&p).unwrap(),
            Some(c) => std::fs::write(&p, c).unwrap(),
        }
        let err = fails(&merge(&[&broken], &m));
        assert!(err.contains(&p.display().to_string()) && err.contains(why), "{why}: {err}");
        assert!(!m.exists(), "a failed merge creates nothing");
        let err = fails(&["report", a.join("cells").join(id).to_str().unwrap(), run.to_str().unwrap()]);
        assert!(err.contains(&p.display().to_string()) && err.contains(why), "{why}: {err}");
    }
    // A file given to report (a cell's .toml beside its folder, as `cells/*` matches).
    let toml = a.join("cells").join(format!("{id}.toml"));
    let err = fails(&["report", toml.to_str().unwrap()]);
    assert!(err.contains(&format!("{}: a file, not a run directory", toml.display())), "{err}");
    // A bench folder given to report: its summary.md and its cells are named.
    let err = fails(&["report", a.to_str().unwrap()]);
    assert!(err.contains("a bench folder") && err.contains("summary.md") && err.contains("/cells/*/"), "{err}");
    // A folder of runs (here the bench's cells) given to report: how to give them.
    let cells = a.join("cells");
    let err = fails(&["report", cells.to_str().unwrap()]);
    assert!(err.contains("a folder of") && err.contains(&format!("`report {}/*/`", cells.display())), "{err}");
    // A bench folder with no finished run: nothing to merge, nothing created.
    std::fs::remove_file(&p).unwrap();
    let err = fails(&merge(&[&broken], &m));
    assert!(err.contains("no finished runs"), "{err}");
    assert!(!m.exists(), "a failed merge creates nothing");
}
