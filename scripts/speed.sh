#!/usr/bin/env bash
# Speed of prefix-subspace against PyTorch + transformers + PEFT (bench/peft_reference.py),
# figure by figure, each figure in its own process (a clean peak RSS), R repetitions each
# (medians). Prints a markdown table (ours / PEFT / ratio: samples/s and peak RSS; our
# GFLOP/s and fraction of the fp32 peak at the fixed shape) and writes every raw JSON line
# to --raw FILE.
#
#   scripts/speed.sh                      # R = 3, defaults of `prefix-subspace speed`
#   scripts/speed.sh -r 5 --threads 2 --raw speed.jsonl
#   scripts/speed.sh -r 1 --steps 2 --warmup 1 --epochs 2 --passes 1      # a quick smoke run
#   scripts/speed.sh --shape base --steps 3                                # BERT-base shape (fixed-shape figures)
#   scripts/speed.sh --figures "fixed-prefix fixed-subspace"
#   scripts/speed.sh --device cuda --steps 30 --warmup 5                   # both sides on a GPU
#   scripts/speed.sh --set precision=bf16                                  # ours with bf16 products (PEFT stays fp32)
#   scripts/speed.sh --figures fixed-full --phases                          # also forward / backward / update times
#
# PREFIX_SUBSPACE_BIN=PATH uses that binary of ours instead of building target/release (a GPU
# build made elsewhere, say).
#
# The PEFT side is optional: without the venv of scripts/reference/venv.sh
# ($PREFIX_SUBSPACE_HOME/pyref; or set PEFT_PYTHON) only our figures are printed (--no-peft:
# never run it). Run on a quiet machine: the figures are wall-clock times, and two threads on
# two busy cores wait on each other.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}"
R=3
RAW="$ROOT/target/speed/raw.jsonl"
SHAPE=model
FIGURES=""
NO_PEFT=0
DATA_DIR="${GLUE_DIR:-$ROOT/../shared/data/glue}"
PASS=()   # flags given to both sides
OURS=()   # flags given to ours only (--set KEY=VALUE)
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--reps) R="$2"; shift 2 ;;
    --raw) RAW="$2"; shift 2 ;;
    --figures) FIGURES="$2"; shift 2 ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --no-peft) NO_PEFT=1; shift ;;
    --set) OURS+=("$1" "$2"); shift 2 ;;
    --shape) SHAPE="$2"; PASS+=("$1" "$2"); shift 2 ;;
    --threads|--steps|--warmup|--epochs|--passes|--model|--batch|--seq-len|--device) PASS+=("$1" "$2"); shift 2 ;;
    --phases) PASS+=("$1"); shift ;;
    -h|--help) usage 0 ;;
    *) echo "speed.sh: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done
case "$R" in ''|*[!0-9]*|0) echo "speed.sh: -r needs a positive integer" >&2; exit 2 ;; esac
THREADS=2
for ((i = 0; i < ${#PASS[@]}; i++)); do if [ "${PASS[i]}" = --threads ]; then THREADS="${PASS[i+1]}"; fi; done

# Our binary, built if needed (a no-op when up to date).
if [ -f "$HOME_DIR/env.sh" ]; then
  # shellcheck disable=SC1091
  source "$HOME_DIR/env.sh"
fi
if [ -n "${PREFIX_SUBSPACE_BIN:-}" ]; then
  BIN="$PREFIX_SUBSPACE_BIN"
else
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/prefix-subspace"
fi

if [ -z "$FIGURES" ]; then
  if [ "$SHAPE" = base ]; then
    FIGURES="fixed-prefix fixed-subspace fixed-lora fixed-full"
  else
    FIGURES="fixed-prefix fixed-subspace fixed-lora fixed-full sst2-prefix sst2-subspace infer-prefix infer-subspace"
  fi
fi
# The PEFT figure each of ours is compared with (PEFT has no subspace: plain prefix tuning).
peft_of() {
  case "$1" in
    fixed-subspace) echo fixed-prefix ;;
    sst2-subspace) echo sst2-prefix ;;
    infer-prefix|infer-subspace) echo "infer-prefix-sorted infer-prefix" ;;
    infer-lora) echo infer-lora-sorted ;;
    *) echo "$1" ;;
  esac
}
PEFT_FIGURES=""
for f in $FIGURES; do
  for g in $(peft_of "$f"); do
    case " $PEFT_FIGURES " in *" $g "*) ;; *) PEFT_FIGURES="$PEFT_FIGURES $g" ;; esac
  done
done

PY="${PEFT_PYTHON:-$HOME_DIR/pyref/bin/python}"
PY="$(command -v "$PY" || echo "$PY")"
if [ "$NO_PEFT" = 1 ]; then
  PEFT_FIGURES=""
elif ! { [ -x "$PY" ] && "$PY" -c "import torch, transformers, peft" 2>/dev/null; }; then
  echo "speed.sh: no PEFT reference Python at $PY (torch, transformers, peft): printing our figures only; create it with scripts/reference/venv.sh (a venv in $HOME_DIR/pyref, about 1 GB of wheels)" >&2
  PEFT_FIGURES=""
fi

mkdir -p "$(dirname "$RAW")"
: > "$RAW"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
SPLIT="$TMP/split.json"

run_one() { # impl figure
  local impl="$1" f="$2" out
  local data=()
  case "$f" in sst2-*|infer-*) data=(--data-dir "$DATA_DIR") ;; esac
  if [ "$impl" = ours ]; then
    local extra=()
    case "$f" in sst2-*) extra=(--split-out "$SPLIT" --overwrite) ;; esac
    out="$("$BIN" speed --only "$f" ${PASS[@]+"${PASS[@]}"} ${OURS[@]+"${OURS[@]}"} ${data[@]+"${data[@]}"} ${extra[@]+"${extra[@]}"} 2>"$TMP/err")" || {
      echo "speed.sh: ours $f failed: $(tail -n 3 "$TMP/err")" >&2; return 0; }
  else
    local extra=()
    case "$f" in sst2-*) if [ -f "$SPLIT" ]; then extra=(--split-json "$SPLIT"); fi ;; esac
    out="$("$PY" "$ROOT/bench/peft_reference.py" --only "$f" ${PASS[@]+"${PASS[@]}"} ${data[@]+"${data[@]}"} ${extra[@]+"${extra[@]}"} 2>"$TMP/err")" || {
      echo "speed.sh: peft $f failed: $(tail -n 3 "$TMP/err")" >&2; return 0; }
  fi
  # One parse: the line goes to the raw file with its repetition (so that each run can be
  # paired with the other side's run of the same repetition: the machine's load drifts
  # between repetitions), and its summary to stderr.
  echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
d["repetition"] = int(sys.argv[1])
with open(sys.argv[2], "a") as raw:
    raw.write(json.dumps(d) + "\n")
print("  %s %s: %.2f samples/s, %.0f MiB" % (sys.argv[3], sys.argv[4], d["samples_per_second"], d["peak_rss_mb"]), file=sys.stderr)
' "$rep" "$RAW" "$impl" "$f"
}

for ((rep = 1; rep <= R; rep++)); do
  echo "repetition $rep/$R" >&2
  for f in $FIGURES; do run_one ours "$f"; done
  for f in $PEFT_FIGURES; do run_one peft "$f"; done
done

python3 - "$RAW" "$R" "$THREADS" "$FIGURES" <<'EOF'
import json, statistics, sys
raw, reps, threads, figures = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
rows = [json.loads(l) for l in open(raw) if l.strip()]
def runs(impl, what):
    return [r for r in rows if r["impl"] == impl and r["what"] == what]
def med(impl, what, key):
    v = [r[key] for r in runs(impl, what) if r.get(key) is not None]
    return statistics.median(v) if v else None
def paired(what, peft_what):
    """ours / PEFT of each repetition that has both runs: (median, min, max) or None (lines
    written without a repetition are not paired)."""
    def by_rep(impl, w):
        return {r["repetition"]: r["samples_per_second"] for r in runs(impl, w) if r.get("repetition") is not None}
    o, q = by_rep("ours", what), by_rep("peft", peft_what)
    v = sorted(o[k] / q[k] for k in o if k in q and q[k])
    return (statistics.median(v), v[0], v[-1]) if v else None
def fmt(x, spec):
    return "–" if x is None else format(x, spec)
def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"
peft_of = {"fixed-subspace": "fixed-prefix", "sst2-subspace": "sst2-prefix",
           "infer-prefix": "infer-prefix-sorted", "infer-subspace": "infer-prefix-sorted",
           "infer-lora": "infer-lora-sorted"}
shape = next((r.get("shape") for r in rows if r["impl"] == "ours" and r.get("shape")), None)
device = next((r.get("device") for r in rows if r["impl"] == "ours"), "cpu")
print(f"Medians of {reps} run(s) per figure, each in its own process, {threads} thread(s)" + (f", fixed shape on {shape}" if shape else "") + f", device {device}.")
print()
print("| figure | ours samples/s | PEFT samples/s | ours / PEFT | per repetition: median (min–max) | ours peak RSS MiB | PEFT peak RSS MiB | RSS ours / PEFT | ours GFLOP/s (of peak) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for f in figures:
    p = peft_of.get(f, f)
    o, q = med("ours", f, "samples_per_second"), med("peft", p, "samples_per_second")
    om, qm = med("ours", f, "peak_rss_mb"), med("peft", p, "peak_rss_mb")
    g, frac = med("ours", f, "gflops"), med("ours", f, "peak_fraction")
    gf = "–" if g is None else f"{g:.1f}" + ("" if frac is None else f" ({100 * frac:.1f} %)")
    name = f if p == f else f"{f} (PEFT: {p})"
    pr = paired(f, p)
    per = "–" if pr is None else f"{pr[0]:.2f} ({pr[1]:.2f}–{pr[2]:.2f})"
    print(f"| {name} | {fmt(o, '.2f')} | {fmt(q, '.2f')} | {ratio(o, q)} | {per} | {fmt(om, '.0f')} | {fmt(qm, '.0f')} | {ratio(om, qm)} | {gf} |")
q = med("peft", "infer-prefix", "samples_per_second")
if q is not None:
    qm = med("peft", "infer-prefix", "peak_rss_mb")
    print(f"| PEFT infer-prefix, file order (ours sorts by length) | – | {q:.2f} | – | – | – | {qm:.0f} | – | – |")
if any(r.get("forward_seconds_median") is not None for r in rows):
    print()
    print("Phases of the fixed-shape steps, ms (medians over runs of each run's median; forward /")
    print("backward / update, each waiting for its kernels on a GPU):")
    print()
    print("| figure | ours fwd / bwd / update | PEFT fwd / bwd / update |")
    print("|---|---:|---:|")
    def ph(impl, what):
        v = [med(impl, what, f"{k}_seconds_median") for k in ("forward", "backward", "update")]
        return "–" if None in v else " / ".join(f"{1000 * x:.1f}" for x in v)
    for f in figures:
        if f.startswith("fixed-"):
            print(f"| {f} | {ph('ours', f)} | {ph('peft', peft_of.get(f, f))} |")
if any(r.get("products_only_samples_per_second") is not None for r in rows if r["impl"] == "ours"):
    print()
    print("Matrix products alone: the same products as each figure (same shapes and padding), run back")
    print("to back with nothing else, on the same threads: the rate no implementation that runs them")
    print("with this BLAS can pass.")
    print()
    print("| figure | ours samples/s | products alone samples/s | ours / products alone | products alone / PEFT | ours GFLOP/s | products alone GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in figures:
        a = med("ours", f, "products_only_samples_per_second")
        if a is None:
            continue
        o, q = med("ours", f, "samples_per_second"), med("peft", peft_of.get(f, f), "samples_per_second")
        g, ga = med("ours", f, "gflops"), med("ours", f, "products_only_gflops")
        print(f"| {f} | {fmt(o, '.2f')} | {a:.2f} | {ratio(o, a)} | {ratio(a, q)} | {fmt(g, '.1f')} | {fmt(ga, '.1f')} |")
peaks = {r["peak_estimate"] for r in rows if r.get("peak_estimate")}
print()
print("ours / PEFT > 1: ours is faster (samples/s) or uses more memory (RSS). PEFT has no subspace:")
print("subspace rows are compared with PEFT prefix tuning. Inference: ours sorts sentences by length")
print("before batching, so it is compared with PEFT on the same length-sorted batches. Per")
print("repetition: ours / PEFT of the runs of the same repetition, which ran minutes apart (less")
print("exposed to the machine's load drifting than the ratio of the two medians).")
for p in peaks:
    print(f"fp32 peak estimate: {p}")
if not any(r["impl"] == "peft" for r in rows):
    print("PEFT reference not run: scripts/reference/venv.sh creates its venv (or set PEFT_PYTHON).")
print(f"raw JSON lines: {raw}")
EOF
