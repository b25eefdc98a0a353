#!/usr/bin/env bash
# Fuzzes the parsers with libFuzzer (the cargo-fuzz crate in fuzz/): the data readers (user
# TSV/CSV/JSONL, GLUE layouts, the polarity CSV), the run and bench config parsers, config
# resolution over every key with `--at` forms (config_keys), and the safetensors reader behind
# weights, checkpoints and resume files. Works with the stable toolchain: the targets are built
# with the coverage instrumentation cargo-fuzz would add (no sanitizer: libtorch is not
# instrumented; Rust's own checks and panics are what is caught).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (600)] [TARGET ...]
# Crashing inputs land in fuzz/artifacts/TARGET/; the growing corpus in fuzz/corpus/TARGET/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" >/dev/null
. "${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}/env.sh"
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
SECONDS_PER_TARGET="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(data_files config config_keys safetensors)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}"
cd "$ROOT/fuzz"
# --target keeps the instrumentation off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --target "$TRIPLE" $(printf -- '--bin %s ' "${TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "[fuzz] $t for $SECONDS_PER_TARGET s" >&2
  "$CARGO_TARGET_DIR/$TRIPLE/release/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$SECONDS_PER_TARGET" \
    -max_len=4096 -timeout=10 -print_final_stats=1 "corpus/$t" 2>&1 | grep -E "^Done|ERROR|panicked|deadly|stat::number_of_executed_units" || true
done
