#!/usr/bin/env bash
# The first command on a GPU node: fail-fast checks of everything the first training run needs,
# in under 10 minutes on one H100, into one report.
#
#   bash scripts/gpu_check.sh [REPORT]            # default: gpu_check-<gpu>.md
#   PYTHON="apptainer exec --nv dnachunker.sif python" bash scripts/gpu_check.sh
#
# Stops at the first failed check, saying which and why (exit 1; exit 2: no NVIDIA GPU here):
#   1. environment: nvidia-smi and the driver, a CUDA build of torch that sees the GPU, Triton,
#      every kernel of the [cuda] extra importable (install them first: scripts/build_wheels.sh
#      or containers/dnachunker.def; docs/kernels.md)
#   2. tests/test_cuda.py: kernels against the PyTorch paths, values and gradients, the paper
#      config at 8 kbp in both bf16 modes
#   3. one paper-config training step at 8 x 8192 under DeepSpeed (bench.gpu_step): peak memory,
#      tokens/s, MFU from counted FLOPs
#   4. 20 steps of train.pretrain on chr20 (tiny config), exported
#   5. with two or more GPUs: NCCL all-reduce bandwidth and a 2-rank DeepSpeed run
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
[ -n "$GPU" ] || { echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none)" >&2; exit 2; }
NGPU=$(nvidia-smi -L | grep -c '^GPU')
case "$GPU" in  # dense bf16 peak, TFLOP/s, from the vendors' data sheets
  *H200*|*GH200*) PEAK=989 ;; *H100*PCIe*) PEAK=756 ;; *H100*) PEAK=989 ;; *A100*) PEAK=312 ;; *L40S*) PEAK=362 ;; *) PEAK= ;;
esac
PEAK=${PEAK_TFLOPS:-$PEAK}
REPORT=${1:-gpu_check-$(echo "$GPU" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//').md}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
echo "# GPU check: $GPU x $NGPU ($(date -Is), commit $(git rev-parse --short HEAD 2>/dev/null))" >"$REPORT"
section() { printf '\n## %s\n\n```\n' "$1" >>"$REPORT"; }
endsection() { printf '```\n' >>"$REPORT"; }
fail() {
  endsection
  printf '\n**FAILED: %s** (after %d s)\n' "$1" $((SECONDS - START)) >>"$REPORT"
  echo "gpu_check: FAILED: $1 (report: $REPORT)" >&2
  exit 1
}
step() { echo "gpu_check: $1 ($((SECONDS - START)) s)" >&2; section "$1"; }

step "1. environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$REPORT" 2>&1 || fail "nvidia-smi"
$PY - >>"$REPORT" 2>&1 <<'EOF' || fail "environment: see the last lines above"
import sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.version.cuda is None:
    sys.exit(f"torch {torch.__version__} is a CPU build: install the CUDA build of the same version (docs/kernels.md)")
if not torch.cuda.is_available():
    sys.exit("torch is a CUDA build but sees no GPU: check the driver against torch's CUDA and CUDA_VISIBLE_DEVICES")
import triton
print("triton", triton.__version__, "| GPU", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
from dnachunker.ops import kernels
for name, what in kernels.report().items():
    print(f"kernel {name}: {what}")
kernels.require()
EOF
command -v nvcc >/dev/null && nvcc --version | tail -n 1 >>"$REPORT"
endsection

step "2. tests/test_cuda.py"
timeout 300 $PY -m pytest -x -q -rA -s tests/test_cuda.py >>"$REPORT" 2>&1 || fail "tests/test_cuda.py"
endsection

step "3. one paper-config step, 8 x 8192, DeepSpeed"
timeout 300 $PY -m bench.gpu_step --batch 8 --length 8192 --steps 3 ${PEAK:+--peak-tflops $PEAK} >>"$REPORT" 2>&1 \
  || fail "the paper-config step (out of memory? try: python -m bench.gpu_step --batch 4)"
endsection

step "4. 20 steps of train.pretrain on chr20"
{ $PY -m data_pipeline all --config configs/data/chr20_demo.yaml out="$WORK/chr20" >/dev/null 2>&1 \
  && timeout 300 $PY -m train.pretrain --config configs/pretrain/tiny_chr20.yaml out_dir="$WORK/run" \
       data.root="$WORK/chr20" max_steps=20 val_every=10 checkpoint.every=20 precision=bf16 2>&1 | tail -n 5; } >>"$REPORT" 2>&1
[ -f "$WORK/run/export/model.safetensors" ] || fail "the 20-step pretraining run"
endsection

if [ "$NGPU" -ge 2 ]; then
  step "5. two GPUs: NCCL all-reduce, 2-rank DeepSpeed"
  timeout 120 $PY -m torch.distributed.run --nproc_per_node=2 -m bench.nccl >>"$REPORT" 2>&1 || fail "NCCL all-reduce"
  timeout 300 $PY -m torch.distributed.run --nproc_per_node=2 -m train.pretrain --config configs/pretrain/tiny_chr20.yaml \
      out_dir="$WORK/run2" data.root="$WORK/chr20" max_steps=10 val_every=0 checkpoint.every=10 precision=bf16 \
      2>&1 | tail -n 5 >>"$REPORT"
  [ -f "$WORK/run2/export/model.safetensors" ] || fail "the 2-rank DeepSpeed run"
  endsection
fi
printf '\nAll checks passed in %d s.\n' $((SECONDS - START)) >>"$REPORT"
echo "gpu_check: all checks passed in $((SECONDS - START)) s; report: $REPORT" >&2
