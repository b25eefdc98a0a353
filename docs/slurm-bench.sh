#!/usr/bin/env bash
# Example: spread a bench grid over a Slurm job array, one shard per task, then merge.
#
#   sbatch --array=0-7 docs/slurm-bench.sh bench/lmbff-k16.toml   # 8 shards
#   # when all have finished:
#   target/release/prefix-subspace bench --merge bench-out/shard-* --out bench-out/merged
#
# Each array task runs every N-th cell of the grid's stable order (N = the array size), in
# its own output folder; a shard that is killed continues where it stopped when resubmitted.
#SBATCH --job-name=prefix-subspace-bench
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=24:00:00
#SBATCH --output=bench-out/slurm-%A_%a.log
set -euo pipefail
CONFIG="${1:?usage: sbatch --array=0-(N-1) docs/slurm-bench.sh BENCH.toml}"
N="${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=...)}"
I="${SLURM_ARRAY_TASK_ID:?run as a job array}"
cd "${SLURM_SUBMIT_DIR:-.}"
scripts/setup.sh   # cached: downloads and builds only the first time
exec target/release/prefix-subspace bench --config "$CONFIG" --out "bench-out/shard-$I" --shard "$I/$N" --jobs "${SLURM_CPUS_PER_TASK:-1}"
