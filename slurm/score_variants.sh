#!/bin/bash
# Score a VCF on a Slurm cluster: a job array of N parts, then a merge job after all succeed.
#
#   bash slurm/score_variants.sh N --model M --vcf V --fasta F --out scores.vcf.gz [score-variants options]
#   GPUS=1 SBATCH_ARGS="--partition=gpu --time=4:00:00" bash slurm/score_variants.sh 64 --model ... --out ...
#
# Element k runs `dnachunker score-variants ... --parts N --part k`: records [k M/N, (k+1) M/N) of the
# VCF's M, into <out>.parts/, renamed when complete and marked done. Elements are requeueable: one
# preempted or requeued mid-way reruns its part from the start; a resubmission runs only the parts
# not done. The merge job (afterok) writes <out> in the VCF's order (and its .tbi for a .vcf.gz).
# GPUS (default 0) GPUs per element, CPUS (default 2) CPUs per element; SBATCH_ARGS for the rest.
set -euo pipefail
N=${1:?usage: bash slurm/score_variants.sh N score-variants arguments ...}
shift
PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
LOGS=${VARIANT_LOGS:-slurm-logs}
mkdir -p "$LOGS"
# shellcheck disable=SC2206
EXTRA=(${SBATCH_ARGS:-})
GRES=()
[ "${GPUS:-0}" -gt 0 ] && GRES=(--gres="gpu:$GPUS")
args=$(printf ' %q' "$@")
array=$(sbatch --parsable --job-name=score-part --array=0-$((N - 1)) --requeue --ntasks=1 \
  --cpus-per-task="${CPUS:-2}" "${GRES[@]}" --output="$LOGS/%x-%A_%a.out" --open-mode=append "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m dnachunker_cli score-variants$args --parts $N --part \$SLURM_ARRAY_TASK_ID")
merge=$(sbatch --parsable --job-name=score-merge --dependency=afterok:"$array" --ntasks=1 --cpus-per-task=1 \
  --output="$LOGS/%x-%j.out" "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m dnachunker_cli score-variants$args --parts $N --merge")
echo "parts: array job $array ($N elements); merge: job $merge (after all succeed); logs in $LOGS/"
