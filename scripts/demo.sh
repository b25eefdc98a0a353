#!/usr/bin/env bash
# Sets everything up (cached), then the main job: on the demo polarity task (Rotten Tomatoes
# sentences, 16 examples per class), SmolLM2-135M-Instruct prompted zero-shot, with in-context
# learning, with plain prefix tuning and with the prefix subspace (3 vertices), and a table of
# their test accuracies beside the majority-class rate.
# Runs land in ${DEMO_DIR:-runs/demo}; pass extra `train` flags as arguments (e.g. --split-seed 21).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="$ROOT/target/release/prefix-subspace"
OUT="${DEMO_DIR:-$ROOT/runs/demo}"
MODEL=smollm2-135m-instruct
for method in zero-shot icl prefix subspace; do
    echo "== $method"
    # The subspace is scored at its centroid and as an ensemble of 8 sampled models; scoring
    # each vertex too would add 3 passes over the test set.
    "$BIN" train --task polarity --model "$MODEL" --method "$method" --set test_vertices=false \
        --out "$OUT/$method" --overwrite "$@"
done
echo
echo "polarity, 16 examples per class for train and for dev (see split.json in each run), SmolLM2-135M-Instruct (GGUF Q4_1, dequantised), test = 1,000 held-out sentences:"
"$BIN" report "$OUT/zero-shot" "$OUT/icl" "$OUT/prefix" "$OUT/subspace"
