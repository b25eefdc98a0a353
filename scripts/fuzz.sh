#!/usr/bin/env bash
# Fuzzes the parsers with cargo-fuzz (libFuzzer): the data readers (user TSV/CSV/JSONL, GLUE
# layouts, the polarity CSV), the run and bench config parsers, and the safetensors reader
# behind weights, checkpoints and resume files. Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
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
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(data_files config safetensors)
cd "$ROOT/fuzz"
# No sanitizer: libtorch is not instrumented; Rust's own checks (bounds, overflow in debug
# assertions) and panics are what is caught.
cargo +nightly fuzz build -s none -O
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "[fuzz] $t for $SECONDS_PER_TARGET s" >&2
  cargo +nightly fuzz run -s none -O "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10 2>&1 | grep -E "^Done|ERROR|panicked|deadly" || true
done
