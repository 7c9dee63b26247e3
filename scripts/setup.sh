#!/usr/bin/env bash
# Set up boltzpath in ./.venv: torch first (the CPU build on machines without an NVIDIA GPU),
# then the package with its test and molecule extras. Safe to rerun; it only installs what is missing.
#   PYTHON=python3.11 bash scripts/setup.sh      choose the interpreter (>= 3.10)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
#                                                 where a plain `pip install torch` would pull CUDA wheels
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        "${PIP[@]}" "torch>=2.4"                      # GPU machine: the default (CUDA) build
    elif [ -n "${TORCH_INDEX_URL:-}" ]; then
        "${PIP[@]}" torch==2.13.0 --index-url "$TORCH_INDEX_URL"
    else
        "${PIP[@]}" torch==2.13.0                     # CPU build (from the local wheel cache here)
    fi
fi
"${PIP[@]}" -e ".[dev,molecules]"
.venv/bin/python -c "import boltzpath, torch; print('boltzpath', boltzpath.__version__, 'torch', torch.__version__)"
