#!/usr/bin/env bash
# Sets everything up (cached), then the main job: on the demo polarity task (Rotten Tomatoes
# sentences, 16 examples per class), SmolLM2-135M-Instruct prompted zero-shot, with in-context
# learning, with LoRA, with plain prefix tuning and with the prefix subspace (3 vertices), and a
# table of their test accuracies beside the majority-class rate.
#
# The recipe is the LLM benchmark's (bench/lmbff-k16-llm.toml: 200 steps, dev evaluation every
# 20), with the prefixes started from in-context demonstrations read at shifted positions
# (docs/models.md says why), and a fixed stratified sample of 500 of the 1,000 test sentences.
# The runs go in two lanes of one thread each (two single-threaded runs side by side beat one
# two-threaded run on 2 cores): the subspace in one, the other four in the other.
# Runs land in ${DEMO_DIR:-runs/demo}; pass extra `train` flags as arguments (e.g. --split-seed 21).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BIN="$ROOT/target/release/prefix-subspace"
OUT="${DEMO_DIR:-$ROOT/runs/demo}"
MODEL=smollm2-135m-instruct
mkdir -p "$OUT"
RECIPE=(--set max_steps=200 --set eval_every=20 --set patience=0 --set test_limit=500 --set threads=1)

run() { # method, extra flags...
    local method="$1"
    shift
    # The subspace is scored at its centroid and as an ensemble of 8 sampled models; scoring
    # each vertex too would add 3 passes over the test set.
    "$BIN" train --quiet --task polarity --model "$MODEL" --method "$method" "${RECIPE[@]}" \
        --set test_vertices=false --out "$OUT/$method" --overwrite "$@" >"$OUT/$method.log" 2>&1 || {
        echo "$method failed; the end of $OUT/$method.log:" >&2
        tail -5 "$OUT/$method.log" >&2
        return 1
    }
    echo "  $method done ($(date +%H:%M:%S))"
}

echo "== training and testing zero-shot, icl, lora, prefix and subspace (logs: $OUT/<method>.log)"
start=$(date +%s)
run subspace "$@" &
lane=$!
run zero-shot "$@" && run icl "$@" && run lora "$@" && run prefix "$@" || {
    wait "$lane" || true
    exit 1
}
wait "$lane"
echo "== $(( ($(date +%s) - start) / 60 )) minutes"
echo
echo "polarity, 16 examples per class for train and for dev (see split.json in each run), SmolLM2-135M-Instruct (GGUF Q4_1, dequantised), test = a stratified 500 of the 1,000 held-out sentences:"
"$BIN" report "$OUT/zero-shot" "$OUT/icl" "$OUT/lora" "$OUT/prefix" "$OUT/subspace"
