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
# The kernel tier of the tests (tests/test_kernels.py) runs mamba-ssm's real Triton kernels on the
# CPU under the Triton interpreter: a machine without an NVIDIA GPU gets triton and mamba-ssm built
# without its CUDA extension. A GPU machine gets the compiled kernels from the [cuda] extra
# instead (bash scripts/gpu_check.sh installs it).
if ! nvidia-smi -L >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q triton==3.9.0 einops packaging
  MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE \
    .venv/bin/python -m pip install -q --no-build-isolation --no-deps mamba-ssm==2.3.2.post1
fi
.venv/bin/python -c "import torch, dnachunker; print('dnachunker ready, torch', torch.__version__)"
