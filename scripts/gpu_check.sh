#!/usr/bin/env bash
# The first command to run on a GPU machine. It installs the CUDA kernels (the [cuda] extra:
# mamba-ssm, causal-conv1d, flash-attn), runs the CUDA tests (kernels against the PyTorch path,
# values and gradients) and the GPU benchmarks with MFU, and writes one markdown report.
#
#   bash scripts/gpu_check.sh                      # -> results/gpu_check/<gpu>.md
#   PEAK_TFLOPS=989 bash scripts/gpu_check.sh out.md   # peak for a GPU the table below lacks
#
# Exit code: 0 all tests passed; 1 a test failed (the report says which); 2 no GPU / no peak.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); on a CPU machine run the kernel tier: .venv/bin/python -m pytest tests/test_kernels.py" >&2
  exit 2
}
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
# dense bf16 peak (TFLOP/s) of common training GPUs, from the vendors' data sheets
case "$GPU" in
  *H200*|*GH200*) PEAK=989 ;; *H100*PCIe*) PEAK=756 ;; *H100*) PEAK=989 ;; *A100*) PEAK=312 ;;
  *L40S*) PEAK=362 ;; *A10G*) PEAK=70 ;; *"RTX 4090"*) PEAK=165 ;; *) PEAK= ;;
esac
PEAK=${PEAK_TFLOPS:-$PEAK}
[ -n "$PEAK" ] || { echo "gpu_check: unknown peak for '$GPU': set PEAK_TFLOPS" >&2; exit 2; }
SLUG=$(echo "$GPU" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')
REPORT=${1:-results/gpu_check/$SLUG.md}
mkdir -p "$(dirname "$REPORT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x .venv/bin/python ] || bash scripts/install.sh || exit 1
PY=.venv/bin/python
echo "gpu_check: installing the [cuda] extra against $($PY -c 'import torch; print(torch.__version__)') (builds or fetches wheels; minutes)" >&2
$PY -m pip install -q --no-build-isolation -e '.[cuda]' 2>&1 | tail -n 20 >&2 || exit 1

echo "gpu_check: CUDA tests" >&2
$PY -m pytest -q -rA tests/test_cuda.py >"$TMP/tests.txt" 2>&1
tests_rc=$?
echo "gpu_check: benchmarks (scans, then training steps with MFU at $PEAK TFLOP/s)" >&2
$PY -m bench.scans --device cuda --lengths 1024 4096 8192 32768 >"$TMP/scans.txt" 2>&1
$PY -m bench.model --device cuda --precision bf16 --peak-tflops "$PEAK" --sizes tiny mid paper \
    --lengths 1024 4096 8192 >"$TMP/model.txt" 2>&1

{
  echo "# GPU check: $GPU"
  echo
  echo "$(date -Is) · \`bash scripts/gpu_check.sh\` · commit $(git rev-parse --short HEAD 2>/dev/null)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import torch; from dnachunker.ops import kernels; print("torch", torch.__version__, "cuda", torch.version.cuda, "kernels", kernels.status())'
  echo '```'
  echo
  echo "## tests/test_cuda.py (exit $tests_rc)"
  echo; echo '```'; grep -E "^(PASSED|FAILED|SKIPPED|ERROR)|passed|failed" "$TMP/tests.txt"; echo '```'
  echo; echo "## python -m bench.scans --device cuda"; echo; grep -E "^\|" "$TMP/scans.txt"
  echo; echo "## python -m bench.model --device cuda --precision bf16 --peak-tflops $PEAK"; echo
  grep -E "^\|" "$TMP/model.txt"
} >"$REPORT"
[ $tests_rc -eq 0 ] || sed -n '1,200p' "$TMP/tests.txt" >&2
echo "gpu_check: report written to $REPORT (tests exit code $tests_rc)" >&2
[ $tests_rc -eq 0 ] && exit 0 || exit 1
