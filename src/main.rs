//! The `prefix-subspace` command line: parses, dispatches to the command's file in `cli/`,
//! and turns an error into one line on stderr and an exit status.

use clap::Parser;

mod cli;

/// Keeps the C heap from handing memory back to the kernel (glibc only). libtorch allocates
/// its tensors with `malloc`; by default glibc trims the top of the heap whenever enough of
/// it is free and gives every large block (the feed-forward activations of a long evaluation
/// batch, a word-embedding gradient) a mapping of its own, unmapped when freed, so the next
/// such tensor lands on fresh pages the kernel must zero first. Here nothing is trimmed and
/// nothing is mapped apart: every block comes from the heap and is reused (measured: 4 % of
/// a BERT-base-shape training step, 16 % of the final evaluation of an RTE run; see
/// docs/performance.md). Values are unaffected; the heap keeps its peak size.
fn keep_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// 2 for bad input (a flag, a config value, a data or model file: what the user can fix),
/// 1 for failures of the system (I/O, libtorch).
fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<prefix_subspace::Error>() {
        Some(prefix_subspace::Error::Input(_) | prefix_subspace::Error::Data(_)) => 2,
        Some(_) => 1,
        None if e.chain().any(|c| c.is::<std::io::Error>()) => 1,
        None => 2,
    }
}

fn main() {
    keep_the_heap();
    if let Err(e) = cli::run(cli::Cli::parse()) {
        if let Some(i @ prefix_subspace::Error::Interrupted { .. }) = e.downcast_ref::<prefix_subspace::Error>() {
            eprintln!("{i}");
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(exit_code(&e));
    }
}
