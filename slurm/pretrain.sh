#!/bin/bash
# Pretrain DNAChunker under Slurm: one srun task per GPU, preemption-safe, self-requeueing.
#
#   bash slurm/pretrain.sh [SBATCH OPTIONS] [CONFIG] [key=value ...]   # checks on this node, then submits
#   bash slurm/pretrain.sh --nodes=4 --time=48:00:00 configs/pretrain/paper_hg38.yaml max_steps=200000
#   bash slurm/pretrain.sh --gres=none --ntasks-per-node=2 --cpus-per-task=1   # CPU-only test
#   sbatch [SBATCH OPTIONS] slurm/pretrain.sh [CONFIG] [key=value ...]      # submits without the check first
#
# Run with bash (outside a job), it runs `python -m train.pretrain --check` with the world size the
# request gives (nodes x tasks per node, GPUs per node: the #SBATCH defaults below, or the options
# given) and submits itself with sbatch only if every check passed. In the job, every rank checks
# the data, out_dir, checkpoint and batch again before DeepSpeed starts.
#
# Any #SBATCH default below can be overridden on the sbatch command line. What each signal does:
#   time limit (--signal=B:USR1@300, to this script) or `scancel --batch --signal=USR1 JOB`:
#       the training checkpoints and exits 75, and this script requeues the job; it resumes from
#       the newest complete checkpoint and continues the same MLflow run. One log for all restarts.
#   `scancel JOB` (SIGTERM to every task and this script), or a preemption that Slurm requeues
#       itself (PreemptMode=REQUEUE): checkpoint and stop, no requeue from here. The checkpoint
#       must finish within the cluster's KillWait (scontrol show config), else the previous one stays.
#   `scancel --signal=USR1 JOB` (to the tasks only) or SIGUSR2: checkpoint and stop (exit 75), no requeue.
# Ranks and the rendezvous (first node of the step, a port derived from the job id) come from
# Slurm's variables in train/distributed.py: nothing is exported here.
#SBATCH --job-name=dnachunker
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail

if [ -z "${SLURM_JOB_ID:-}" ]; then  # on a login node: check what the job needs, then submit it
  SBATCH_OPTS=()
  while [[ "${1:-}" == --* ]]; do SBATCH_OPTS+=("$1"); shift; done
  option() {  # the value of --NAME=: given here, else this script's #SBATCH default
    local value
    value=$(sed -n "s/^#SBATCH --$1=\(.*\)/\1/p" "$0" | head -n 1)
    for o in "${SBATCH_OPTS[@]}"; do [[ "$o" == --$1=* ]] && value=${o#*=}; done
    echo "$value"
  }
  NODES=$(option nodes); TASKS=$(option ntasks-per-node); GRES=$(option gres)
  GPUS=$(option gpus-per-node); [ -n "$GPUS" ] || GPUS=$([[ "$GRES" == *gpu* ]] && echo "${GRES##*:}" || echo 0)
  PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
  $PYTHON -m train.pretrain --check --config "${1:-configs/pretrain/tiny_chr20.yaml}" --world $((NODES * TASKS)) \
      --nodes "$NODES" --tasks-per-node "$TASKS" --gpus-per-node "$GPUS" "${@:2}" \
    || { echo "[pretrain.sh] not submitted: fix what failed above" >&2; exit 2; }
  exec sbatch "${SBATCH_OPTS[@]}" "$0" "$@"
fi

CONFIG=${1:-configs/pretrain/tiny_chr20.yaml}
[ $# -gt 0 ] && shift
cd "${SLURM_SUBMIT_DIR:-.}"
PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
EXIT_REQUEUE=75
RESTART=${SLURM_RESTART_COUNT:-0}
# A restarted job resumes from its newest checkpoint, whatever checkpoint.resume the submission
# named (an explicit rollback path applies to the first start only).
[ "$RESTART" -gt 0 ] && set -- "$@" checkpoint.resume=auto
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# Every rank compiles and autotunes ~20 Triton kernels at its first steps: into node-local storage,
# not a home directory that every rank of every node shares.
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-${TMPDIR:-/tmp}/triton-cache-${USER:-$(id -u)}}
# Chunk counts change every micro-batch, and so do the shapes: expandable segments keep the CUDA
# allocator from fragmenting.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
log() { echo "[pretrain.sh $(date -Is)] $*"; }
log "job $SLURM_JOB_ID restart $RESTART: $SLURM_JOB_NUM_NODES node(s) ($SLURM_JOB_NODELIST) x" \
    "${SLURM_NTASKS_PER_NODE:-?} task(s), config $CONFIG $*"

srun_pid=
requeue=0
forward() {
  [ -n "$srun_pid" ] && kill -s "$1" "$srun_pid" 2>/dev/null
}
on_time_limit() {
  requeue=1
  log "received SIGUSR1 (time limit ahead): asking the training to checkpoint; the job will be requeued"
  forward USR1
}
on_stop() {
  log "received SIG$1: asking the training to checkpoint and stop (no requeue)"
  forward "$1"
}
trap on_time_limit USR1
trap 'on_stop TERM' TERM
trap 'on_stop USR2' USR2

# One task per GPU, no launcher in between (a launcher could swallow the signals). srun does not
# inherit --cpus-per-task since Slurm 22.05: pass it, or the data-loader workers share one CPU.
# When one task exits, the others get 120 s to follow (all ranks stop together after a signal;
# after a crash the survivors, stuck in a collective, are then killed) instead of
# --kill-on-bad-exit, which would kill ranks still finishing their part of the checkpoint.
srun --wait=120 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
  "$PYTHON" -m train.pretrain --config "$CONFIG" "$@" &
srun_pid=$!
rc=0
while true; do
  wait "$srun_pid"; rc=$?
  kill -0 "$srun_pid" 2>/dev/null || break   # wait also returns when a trapped signal arrives
done

if [ "$requeue" = 1 ]; then
  if [ "$rc" -eq "$EXIT_REQUEUE" ]; then
    log "checkpoint saved: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" && exit 0
    echo "[pretrain.sh] scontrol requeue failed: resubmit with the same command to resume" >&2
  else
    log "the time-limit signal came before the training could stop cleanly (exit code $rc): not" \
        "requeueing. Is the time limit shorter than the signal's lead (--signal=B:USR1@N) plus start-up?"
  fi
fi
log "training exited with code $rc"
exit "$rc"
