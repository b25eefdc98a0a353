#!/usr/bin/env bash
# Sets everything up (cached, Gemma 3 270M included) and runs the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/setup-gemma.sh"   # the Gemma 3 parity tests need it (≈ 240 MB, cached)
. "${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}/env.sh"
export GLUE_DIR="${GLUE_DIR:-$ROOT/../shared/data/glue}"
cd "$ROOT"
cargo test --release "$@"
