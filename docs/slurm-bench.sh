#!/usr/bin/env bash
# Example: spread a bench grid over a Slurm job array, one shard per task, then merge.
# From the repository root, after scripts/setup.sh has run once (on the login node):
#
#   mkdir -p bench-out                                             # Slurm writes the logs there
#   sbatch --array=0-7 docs/slurm-bench.sh bench/lmbff-k16.toml    # 8 shards
#   squeue --me                                                    # wait until all have finished
#   target/release/prefix-subspace bench --merge bench-out/shard-* --out bench-out/merged
#
# Another output folder OUT: give it as the second argument, create it first and point the
# logs there too (an #SBATCH line cannot use variables; a missing log folder makes every task
# fail at launch with no log at all):
#   mkdir -p OUT && sbatch --array=0-7 --output=OUT/slurm-%A_%a.log docs/slurm-bench.sh BENCH.toml OUT
#
# Each array task runs every N-th cell of the grid's stable order (N = the array size) in
# OUT/shard-I. A shard that was killed (time limit, preemption, scancel) continues where it
# stopped when resubmitted with the same shard count: `SHARDS=8 sbatch --array=3,5 ...` reruns
# shards 3 and 5 of 8 (without SHARDS, --array=3,5 would mean 2 shards: another split). Where a
# shard stands: `prefix-subspace bench --config BENCH.toml --out OUT/shard-3 --shard 3/8 --status`.
#
# The tasks do not run scripts/setup.sh: tasks starting at the same time would download into
# and unpack the same cache and build the same target/ concurrently (and compute nodes often
# have no internet). They run the binary built beforehand (or $PREFIX_SUBSPACE_BIN): the first
# task of an array job pins it as OUT/.bin/prefix-subspace-<job> (a hard link, else a copy), so
# every shard of one submission runs the same build even if target/ is rebuilt meanwhile (a
# bench starts its cells from its own executable). Remove OUT/.bin when the grid is done.
#SBATCH --job-name=prefix-subspace-bench
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=24:00:00
#SBATCH --output=bench-out/slurm-%A_%a.log
set -euo pipefail
USAGE="usage: mkdir -p OUT && sbatch --array=0-(N-1) [--output=OUT/slurm-%A_%a.log] docs/slurm-bench.sh BENCH.toml [OUT (default bench-out)]"
CONFIG="${1:?$USAGE}"
OUT="${2:-bench-out}"
I="${SLURM_ARRAY_TASK_ID:?run as a job array: $USAGE}"
# SHARDS overrides the array size, for resubmitting some shards of a larger grid.
N="${SHARDS:-${SLURM_ARRAY_TASK_COUNT:?run as a job array: $USAGE}}"
cd "${SLURM_SUBMIT_DIR:-.}"
BIN="${PREFIX_SUBSPACE_BIN:-target/release/prefix-subspace}"
[ -x "$BIN" ] || { echo "error: $BIN not found: run scripts/setup.sh once before sbatch (it builds the binary)" >&2; exit 1; }
[ -f "$CONFIG" ] || { echo "error: bench config $CONFIG not found (relative to $PWD)" >&2; exit 1; }
(( I < N )) || { echo "error: array task $I but $N shards: to rerun some shards of a grid, give its shard count as SHARDS=N (task ids 0..N-1)" >&2; exit 1; }

PIN="$OUT/.bin/prefix-subspace-${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-local}}"
if [ ! -x "$PIN" ]; then
  mkdir -p "$OUT/.bin"
  ln -f "$BIN" "$PIN.$I.tmp" 2>/dev/null || cp "$BIN" "$PIN.$I.tmp"
  ln "$PIN.$I.tmp" "$PIN" 2>/dev/null || true   # the first task to get here wins; the others use its pin
  rm -f "$PIN.$I.tmp"
fi
echo "shard $I/$N of $CONFIG on $(hostname) into $OUT/shard-$I with $PIN"
# exec: the bench is the task's process, so Slurm's SIGTERM (scancel, time limit) reaches it and
# its cells save their state before the task ends.
exec "$PIN" bench --config "$CONFIG" --out "$OUT/shard-$I" --shard "$I/$N" --jobs "${SLURM_CPUS_PER_TASK:-1}"
