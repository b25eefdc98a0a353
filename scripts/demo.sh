#!/usr/bin/env bash
# Sets everything up (cached) and runs the main job on the default model and data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="$ROOT/target/release/prefix-subspace"
"$BIN" embed --pool mean --normalize "A man is playing a guitar." "Someone plays an instrument." \
  | python3 -c 'import sys, json; a, b = [json.loads(l) for l in sys.stdin]; print("cosine(guitar, instrument) =", round(sum(x*y for x, y in zip(a, b)), 4))'
