#!/usr/bin/env bash
# Sets everything up (cached) and runs the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
. "${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}/env.sh"
export GLUE_DIR="${GLUE_DIR:-$ROOT/../shared/data/glue}"
cd "$ROOT"
cargo test --release "$@"
