#!/bin/bash
# Pretrain DNAChunker under Slurm: one srun task per GPU, preemption-safe, self-requeueing.
#
#   sbatch slurm/pretrain.sh [CONFIG] [key=value ...]
#   sbatch --nodes=4 --time=48:00:00 slurm/pretrain.sh configs/pretrain/paper_hg38.yaml max_steps=200000
#   sbatch --gres=none --ntasks-per-node=2 --cpus-per-task=1 slurm/pretrain.sh   # CPU-only test
#
# Any #SBATCH default below can be overridden on the sbatch command line. Before the time limit
# (or when preempted with a signal) the training saves a checkpoint and exits with code 75; this
# script then requeues the job, which resumes from the newest complete checkpoint and continues
# the same MLflow run. The log of all restarts is appended to one file.
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

CONFIG=${1:-configs/pretrain/tiny_chr20.yaml}
[ $# -gt 0 ] && shift
cd "${SLURM_SUBMIT_DIR:-.}"
PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
EXIT_REQUEUE=75

export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
echo "[pretrain.sh $(date -Is)] job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}:" \
     "$SLURM_JOB_NUM_NODES node(s) x $SLURM_NTASKS_PER_NODE task(s), master $MASTER_ADDR:$MASTER_PORT," \
     "config $CONFIG $*"

# Signals reach this batch shell (--signal=B:..., scancel --batch, preemption's SIGTERM).
# Forward them to srun, which passes them on to every training task; the tasks agree on the
# stop at the next step, checkpoint, and exit with code 75.
srun_pid=
forward() {
  echo "[pretrain.sh $(date -Is)] received SIG$1: asking the training to checkpoint and stop"
  [ -n "$srun_pid" ] && kill -s "$1" "$srun_pid" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward USR2' USR2
trap 'forward TERM' TERM

# One task per GPU, no launcher in between (a launcher could swallow the signals). When one task
# exits, the others get 120 s to follow (all ranks stop together after a signal; after a crash
# the survivors, stuck in a collective, are then killed) instead of --kill-on-bad-exit, which
# would kill ranks still finishing their part of the checkpoint.
srun --wait=120 \
  "$PYTHON" -m train.pretrain --config "$CONFIG" checkpoint.resume=auto "$@" &
srun_pid=$!
rc=0
while true; do
  wait "$srun_pid"; rc=$?
  kill -0 "$srun_pid" 2>/dev/null || break   # wait also returns when a trapped signal arrives
done

if [ "$rc" -eq "$EXIT_REQUEUE" ]; then
  echo "[pretrain.sh $(date -Is)] checkpoint saved: requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
  echo "[pretrain.sh] scontrol requeue failed: resubmit with the same command to resume" >&2
fi
echo "[pretrain.sh $(date -Is)] training exited with code $rc"
exit "$rc"
