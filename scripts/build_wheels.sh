#!/usr/bin/env bash
# Build the CUDA kernels of the [cuda] extra (mamba-ssm, causal-conv1d, flash-attn) once per
# cluster, as wheels against the installed torch, into a wheelhouse every job installs from.
#
#   bash scripts/build_wheels.sh [WHEELHOUSE]     # default: wheels/<cuda>-torch<version>-cp<python>
#   .venv/bin/python -m pip install --no-index --find-links WHEELHOUSE -e '.[cuda]'
#
# None of the three publishes wheels for torch 2.13 (their release matrices stop at torch 2.10,
# flash-attn's official ones earlier), so pip would compile each from its sdist inside every
# install: flash-attn alone takes hours without ninja and runs out of memory without MAX_JOBS.
# Here: on a GPU node (or any node with the CUDA toolkit: nvcc), with ninja, MAX_JOBS from the
# node's memory (about 4 GB per nvcc job for flash-attn), for the GPU architectures of
# TORCH_CUDA_ARCH_LIST (default 8.0 and 9.0: A100, H100/H200). The versions are the exact pins of
# pyproject.toml's [cuda] extra. A re-run skips wheels already built. ~30-90 min on 32 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "build_wheels: no $PY; run bash scripts/install.sh first (or set PYTHON)" >&2; exit 2; }
command -v nvcc >/dev/null || { echo "build_wheels: nvcc not found: load the CUDA toolkit (module load cuda) or build in containers/dnachunker.def" >&2; exit 2; }
read -r TORCH CUDA ABI < <("$PY" -c 'import torch; print(torch.__version__.split("+")[0], torch.version.cuda, int(torch._C._GLIBCXX_USE_CXX11_ABI))')
[ "$CUDA" != "None" ] || { echo "build_wheels: $PY has a CPU build of torch $TORCH; install the CUDA build of the same version first" >&2; exit 2; }
PYV=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
OUT=${1:-wheels/cu${CUDA}-torch${TORCH}-cp${PYV}}
mkdir -p "$OUT"
mapfile -t PINS < <("$PY" - <<'PYEOF'
import tomllib
for req in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["cuda"]:
    print(req)
PYEOF
)
MEM_GB=$(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo)
export MAX_JOBS=${MAX_JOBS:-$(( MEM_GB / 4 < $(nproc) ? MEM_GB / 4 : $(nproc) ))}
export MAX_JOBS=$(( MAX_JOBS > 0 ? MAX_JOBS : 1 ))
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE
"$PY" -m pip install -q ninja packaging wheel setuptools
echo "build_wheels: torch $TORCH, CUDA $CUDA, C++11 ABI $ABI, cp$PYV, MAX_JOBS=$MAX_JOBS, arch $TORCH_CUDA_ARCH_LIST -> $OUT" >&2
for pin in "${PINS[@]}"; do
  name=${pin%%==*}
  if ls "$OUT"/"${name//-/_}"-"${pin#*==}"-*.whl >/dev/null 2>&1; then
    echo "build_wheels: $pin already in $OUT" >&2; continue
  fi
  echo "build_wheels: building $pin (MAX_JOBS=$MAX_JOBS)" >&2
  "$PY" -m pip wheel --no-build-isolation --no-deps -w "$OUT" "$pin"
done
"$PY" -m pip install --no-index --find-links "$OUT" --no-deps "${PINS[@]}"
"$PY" -c 'from dnachunker.ops import kernels; kernels.require(); print("build_wheels: every kernel imports:", kernels.report())'
echo "build_wheels: wheels in $OUT; on other nodes: $PY -m pip install --no-index --find-links $OUT -e '.[cuda]'" >&2
