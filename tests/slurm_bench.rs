//! `docs/slurm-bench.sh` under a real Slurm: a job array of two shards, merged, gives the table
//! of the same grid run on one machine. Opt-in (it needs a Slurm cluster and the GLUE data):
//!
//!   scripts/slurm-local.sh      # as root: a single-node Slurm on this machine
//!   PREFIX_SUBSPACE_SLURM=1 GLUE_DIR=/path/to/glue cargo test --release --test slurm_bench -- --nocapture
//!
//! On a lab cluster the test folder (under target/tmp) must be on a file system that the
//! compute nodes share with the submitting machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENABLE: &str = "PREFIX_SUBSPACE_SLURM";
/// How long the two shards may take together (each cell takes seconds; a node that never
/// comes up would otherwise leave `sbatch --wait` waiting forever).
const SBATCH_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn grid(glue: &Path) -> String {
    format!(
        r#"
tasks = ["sst2"]
protocol = "per-class"
shots = [8]
split_seeds = [13, 21]
seed = 1
methods = ["head", "prefix"]

[base]
data_dir = {:?}
# Seconds per cell. At 4 steps prefix still predicts one class on both seeds (accuracy 0.5),
# which would make the comparison blind to its numbers; at 8 it does not.
max_steps = 8
eval_every = 4
test_limit = 32
"#,
        glue.to_str().expect("a UTF-8 GLUE path")
    )
}

/// Runs `bin args`, panics with its output unless it succeeds; its stdout.
fn run(bin: &Path, args: &[&str]) -> String {
    let o = Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        o.status.success(),
        "{} {} failed ({}):\n{}\n{}",
        bin.display(),
        args.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The Slurm logs of the array (and sbatch's own output), for failure messages.
fn logs(out: &Path, sbatch_output: &Path) -> String {
    let mut text = format!("sbatch: {}\n", std::fs::read_to_string(sbatch_output).unwrap_or_default());
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        text += &format!("==== {} ====\n{}\n", f.display(), std::fs::read_to_string(&f).unwrap_or_default());
    }
    text
}

/// results.csv without its wall-clock column `train_seconds` (the only one that differs
/// between two runs of the same cell by nature), lines in file order.
fn deterministic_columns(dir: &Path) -> Vec<String> {
    let path = dir.join("results.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let t = header.split(',').position(|h| h == "train_seconds").expect("a train_seconds column");
    std::iter::once(header)
        .chain(lines)
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != t).map(|(_, c)| c).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn a_slurm_job_array_of_shards_merges_into_the_table_of_one_machine() {
    if std::env::var(ENABLE).as_deref() != Ok("1") {
        println!(
            "skipped: needs a Slurm cluster; enable with scripts/slurm-local.sh (as root) then \
             {ENABLE}=1 GLUE_DIR=/path/to/glue cargo test --release --test slurm_bench -- --nocapture"
        );
        return;
    }
    let t0 = Instant::now();
    common::minilm_dir();
    let glue = std::path::absolute(common::glue_dir()).unwrap();
    assert!(glue.join("SST-2").is_dir(), "{}: no SST-2 here; set GLUE_DIR to the GLUE data folder", glue.display());
    let sinfo = Command::new("sinfo").output();
    assert!(
        sinfo.as_ref().is_ok_and(|o| o.status.success()),
        "sinfo fails or is missing ({sinfo:?}): start a cluster with scripts/slurm-local.sh"
    );
    println!("sinfo:\n{}", String::from_utf8_lossy(&sinfo.unwrap().stdout));

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Under target/: on a lab cluster, a folder the compute nodes see as well.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The binary under test, pinned: someone rebuilding target/release meanwhile must not swap
    // it under the shards or between the Slurm and the single-machine run.
    let bin = tmp.path().join("prefix-subspace");
    let exe = Path::new(env!("CARGO_BIN_EXE_prefix-subspace"));
    std::fs::hard_link(exe, &bin).or_else(|_| std::fs::copy(exe, &bin).map(|_| ())).unwrap();
    let cfg = tmp.path().join("grid.toml");
    std::fs::write(&cfg, grid(&glue)).unwrap();
    let out = tmp.path().join("slurm-out");
    std::fs::create_dir(&out).unwrap(); // Slurm writes the logs there: it must exist first
    let sbatch_output = tmp.path().join("sbatch.txt");
    let append = |p: &Path| Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap());

    // One CPU per shard (the script asks for 2, which would run the shards one after the other
    // on a 2-core machine); the rest as a lab would submit it.
    let log = out.join("slurm-%A_%a.log");
    let mut child = Command::new("sbatch")
        .args(["--array=0-1", "--wait", "--cpus-per-task=1", "--mem=2G", "--time=30"])
        .arg(format!("--output={}", log.display()))
        .arg("docs/slurm-bench.sh")
        .args([&cfg, &out])
        .env("PREFIX_SUBSPACE_BIN", &bin)
        .current_dir(repo)
        .stdout(append(&sbatch_output))
        .stderr(append(&sbatch_output))
        .spawn()
        .expect("sbatch (start a cluster with scripts/slurm-local.sh)");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > SBATCH_TIMEOUT {
            let text = std::fs::read_to_string(&sbatch_output).unwrap_or_default();
            if let Some(id) = text.split_whitespace().last().filter(|w| w.chars().all(|c| c.is_ascii_digit())) {
                let _ = Command::new("scancel").arg(id).status();
            }
            let _ = child.kill();
            let queue = Command::new("squeue").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            panic!("the array did not finish in {SBATCH_TIMEOUT:?}; squeue: {queue:?}\n{}", logs(&out, &sbatch_output));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let slurm_secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "sbatch --wait: {status}\n{}", logs(&out, &sbatch_output));
    println!("{}", logs(&out, &sbatch_output));
    println!("the array of 2 shards took {slurm_secs:.1} s");

    let shards: Vec<PathBuf> = (0..2).map(|i| out.join(format!("shard-{i}"))).collect();
    for s in &shards {
        let rows = deterministic_columns(s).len() - 1;
        assert_eq!(rows, 2, "{}: every 2nd cell of 4\n{}", s.display(), logs(&out, &sbatch_output));
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["bench", "--out", merged.to_str().unwrap(), "--merge"];
    args.extend(shards.iter().map(|d| d.to_str().unwrap()));
    print!("{}", run(&bin, &args));

    let whole = tmp.path().join("whole");
    let t1 = Instant::now();
    run(&bin, &["bench", "--config", cfg.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--jobs", "2"]);
    println!("the same grid on one machine took {:.1} s", t1.elapsed().as_secs_f64());

    // results.csv byte for byte but for train_seconds (wall clock), which differs by nature.
    let (a, b) = (deterministic_columns(&merged), deterministic_columns(&whole));
    assert_eq!(a.len(), 5, "a header and 2 seeds × 2 methods:\n{}", a.join("\n"));
    assert_eq!(a, b, "merged Slurm shards vs one machine");
    // The summary has no timings: the same after its header lines (which name the folders).
    let summary = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("summary.md")).unwrap().lines().skip(3).map(str::to_owned).collect()
    };
    assert_eq!(summary(&merged), summary(&whole));
    println!(
        "merged Slurm shards = one machine ({} rows); the whole test took {:.1} s",
        a.len() - 1,
        t0.elapsed().as_secs_f64()
    );
}
