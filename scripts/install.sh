#!/usr/bin/env bash
# Create .venv and install DNAChunker for CPU work (tests, CI, small runs).
# torch==2.13.0 is installed first, on its own: if pip resolved it as a dependency of another
# package it could pull a multi-GB CUDA build. GPU nodes: docs/kernels.md (scripts/build_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() {  # pip's notes on index locations a machine lacks are noise; its errors are not
  .venv/bin/python -m pip install -q "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}
pip_install --upgrade pip
pip_install torch==2.13.0
# compat: the repository on sys.path (a .pth), so that a folder named dnachunker beside a user's
# script (this clone, say) cannot shadow the package as an empty namespace package; setuptools'
# warning that this mode is transitional is silenced (PYTHONWARNINGS reaches its build process)
PYTHONWARNINGS=ignore pip_install -e '.[dev]' --config-settings editable_mode=compat
# The kernel tier of the tests (tests/test_kernels.py) runs mamba-ssm's real Triton kernels on the
# CPU under the Triton interpreter: a machine without an NVIDIA GPU gets triton and mamba-ssm built
# without its CUDA extension. A GPU machine gets the compiled kernels from the [cuda] extra
# instead (scripts/build_wheels.sh, docs/kernels.md).
if ! nvidia-smi -L >/dev/null 2>&1; then
  pip_install triton==3.9.0 einops packaging
  MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE pip_install --no-build-isolation --no-deps mamba-ssm==2.3.2.post1
fi
.venv/bin/python -c "import dnachunker, torch; print('dnachunker ready, torch', torch.__version__)"
