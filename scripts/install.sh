#!/usr/bin/env bash
# Create .venv and install DNAChunker for CPU work (tests, CI, small runs).
# torch==2.13.0 is installed first, on its own: if pip resolved it as a dependency of another
# package it could pull a multi-GB CUDA build. On GPU nodes add the kernels: pip install -e '.[cuda]'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/python -c "import torch, dnachunker; print('dnachunker ready, torch', torch.__version__)"
