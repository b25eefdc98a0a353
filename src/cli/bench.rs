//! `prefix-subspace bench`: run a benchmark grid (resumable: finished cells are never recomputed), or merge the

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The flags of `bench`.
#[derive(clap::Args)]
pub struct Args {
    /// The bench description (TOML: tasks, shots, split_seeds, methods, [[variant]], [base]).
    #[arg(long, required_unless_present_any = ["merge", "pack_logs", "unpack_logs"])]
    config: Option<PathBuf>,
    /// Output folder (cells/, results.csv, summary.md).
    #[arg(long)]
    out: PathBuf,
    /// Cells run at the same time (each single-threaded, whatever this is, so that a cell's
    /// numbers do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    jobs: usize,
    /// Run only shard I of N (0-based): every N-th cell of the grid's stable order.
    #[arg(long)]
    shard: Option<String>,
    /// Run only the cells of these tasks (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Run only the cells of these methods / variant names (comma-separated).
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Combine the finished cells of these bench folders into --out's tables.
    #[arg(long, num_args = 1.., conflicts_with = "config")]
    merge: Vec<PathBuf>,
    /// Run nothing: print where the (selected) cells stand under --out (finished,
    /// interrupted, stale, to run) and the cell-seconds spent.
    #[arg(long, conflicts_with = "merge")]
    status: bool,
    /// Run nothing: write --out's metrics.jsonl.gz, the per-step logs of all its finished cells
    /// (each cells/<cell>/metrics.jsonl on disk, else its log already in the archive). Deletes
    /// nothing.
    #[arg(long, conflicts_with_all = ["config", "merge", "status", "unpack_logs"])]
    pack_logs: bool,
    /// Run nothing: write the logs of --out's metrics.jsonl.gz back as cells/<cell>/metrics.jsonl
    /// (where missing; the committed grids of bench/results/ keep their logs only in the archive).
    #[arg(long, conflicts_with_all = ["config", "merge", "status"])]
    unpack_logs: bool,
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    let Args { config, out, jobs, shard, tasks, variants, merge, status, pack_logs, unpack_logs } = args;
    if pack_logs || unpack_logs {
        let archive = out.join(prefix_subspace::bench::LOGS_ARCHIVE);
        if pack_logs {
            let n = prefix_subspace::bench::pack_logs(&out)?;
            println!(
                "{}: the logs of {} cells ({} from cells/<cell>/metrics.jsonl, {} kept from the archive){}",
                archive.display(),
                n.files + n.kept,
                n.files,
                n.kept,
                if n.orphans > 0 {
                    format!("; left out {} archived logs of cells no longer under cells/", n.orphans)
                } else {
                    String::new()
                }
            );
        } else {
            let n = prefix_subspace::bench::unpack_logs(&out)?;
            println!(
                "{}: wrote {} logs as cells/<cell>/metrics.jsonl; {} were already there (left as they are){}",
                archive.display(),
                n.files,
                n.kept,
                if n.orphans > 0 {
                    format!("; {} archived cells have no folder under cells/ (not written)", n.orphans)
                } else {
                    String::new()
                }
            );
        }
        return Ok(());
    }
    if !merge.is_empty() {
        // Read (and check) every run first: a merge that fails creates nothing.
        let rows = prefix_subspace::bench::collect(&merge)?;
        if rows.is_empty() {
            bail!(
                "bench --merge {}: no finished runs under cells/; nothing was written to {}",
                merge.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" "),
                out.display()
            );
        }
        let _lock = prefix_subspace::rundir::lock_bench_folder(&out)?;
        let n = prefix_subspace::bench::write_rows(&merge, &rows, &out)?;
        println!("merged {n} runs into {}", out.join("summary.md").display());
        return Ok(());
    }
    let path = config.expect("clap requires --config without --merge");
    let bench = prefix_subspace::bench::BenchConfig::from_file(&path)?;
    let mut cells = prefix_subspace::bench::select(bench.cells()?, &tasks, &variants)?;
    if let Some(s) = shard {
        cells = prefix_subspace::bench::shard(cells, prefix_subspace::bench::parse_shard(&s)?);
    }
    if status {
        print!("{}", prefix_subspace::bench::status_report(&cells, &out));
        return Ok(());
    }
    // Held until the bench ends: a second bench on the same folder is refused.
    let _lock = prefix_subspace::rundir::lock_bench_folder(&out)?;
    let exe = std::env::current_exe()?;
    let failed = prefix_subspace::bench::run_cells(&exe, cells, &out, jobs)?;
    print!("{}", std::fs::read_to_string(out.join("summary.md")).unwrap_or_default());
    if failed > 0 {
        bail!(
            "{failed} cell(s) failed; their logs are in {}/cells/ (rerun the same command to retry them)",
            out.display()
        );
    }
    Ok(())
}
