#!/usr/bin/env bash
# Sets everything up (cached), then the main job: a 16-per-class few-shot run of the prefix
# subspace (3 vertices) and of plain prefix tuning on the demo polarity task (Rotten Tomatoes
# sentences) with the default model, and a table of their test accuracies.
# Runs land in ${DEMO_DIR:-runs/demo}; pass extra `train` flags as arguments (e.g. --split-seed 21).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="$ROOT/target/release/prefix-subspace"
OUT="${DEMO_DIR:-$ROOT/runs/demo}"
"$BIN" train --task polarity --method subspace --out "$OUT/subspace" --overwrite "$@"
"$BIN" train --task polarity --method prefix --out "$OUT/prefix" --overwrite "$@"
echo
echo "polarity, 16 examples per class (see split.json in each run), all-MiniLM-L6-v2, test = 1,000 held-out sentences:"
"$BIN" report "$OUT/subspace" "$OUT/prefix"
