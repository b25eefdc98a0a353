#!/usr/bin/env bash
# Optional: a Python venv with torch, transformers and peft, for the reference scripts.
# Never needed by the build or the tests. Location: $PREFIX_SUBSPACE_HOME/pyref.
set -euo pipefail
HOME_DIR="${PREFIX_SUBSPACE_HOME:-$HOME/.cache/prefix-subspace}"
V="$HOME_DIR/pyref"
if [ ! -x "$V/bin/python" ] || ! "$V/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$V"
  "$V/bin/pip" install --quiet torch==2.13.0 transformers peft safetensors numpy
fi
echo "$V/bin/python"
