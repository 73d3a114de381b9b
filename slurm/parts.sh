#!/bin/bash
# Run an inference command on a Slurm cluster in N parts: a job array, then a merge job after all
# of them succeed. COMMAND is score-variants, tracks or embed (each takes --parts N --part K | --merge).
#
#   bash slurm/parts.sh N COMMAND [its arguments, --out included]
#   bash slurm/parts.sh 64 score-variants --model M --vcf clinvar.vcf.gz --fasta hg38.fa.gz --out scored.vcf.gz
#   GPUS=1 SBATCH_ARGS="--partition=gpu --time=4:00:00" bash slurm/parts.sh 25 tracks --model M --fasta hg38.fa.gz --out t
#
# Element k runs `dnachunker COMMAND ... --parts N --part k` into <out>.parts/, renamed when complete
# and marked done (score-variants: records [k M/N, (k+1) M/N) of the VCF's M; tracks: consecutive
# whole regions, balanced by bp; embed: windows [k W/N, (k+1) W/N) of all the sequences' W).
# Elements are requeueable: one preempted or requeued mid-way reruns its part from the start; a
# resubmission runs only the parts not done. The merge job (afterok) writes <out> in the input's order.
# GPUS (default 0) and CPUS (default 2) per element; SBATCH_ARGS: the rest.
set -euo pipefail
N=${1:?usage: bash slurm/parts.sh N COMMAND arguments ...}
COMMAND=${2:?usage: bash slurm/parts.sh N COMMAND arguments ...}
shift 2
PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
LOGS=${PARTS_LOGS:-slurm-logs}
mkdir -p "$LOGS"
# shellcheck disable=SC2206
EXTRA=(${SBATCH_ARGS:-})
GRES=()
[ "${GPUS:-0}" -gt 0 ] && GRES=(--gres="gpu:$GPUS")
args=$(printf ' %q' "$@")
array=$(sbatch --parsable --job-name="$COMMAND-part" --array=0-$((N - 1)) --requeue --ntasks=1 \
  --cpus-per-task="${CPUS:-2}" "${GRES[@]}" --output="$LOGS/%x-%A_%a.out" --open-mode=append "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m dnachunker_cli $COMMAND$args --parts $N --part \$SLURM_ARRAY_TASK_ID")
merge=$(sbatch --parsable --job-name="$COMMAND-merge" --dependency=afterok:"$array" --ntasks=1 --cpus-per-task=1 \
  --output="$LOGS/%x-%j.out" "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m dnachunker_cli $COMMAND$args --parts $N --merge")
echo "parts: array job $array ($N elements); merge: job $merge (after all succeed); logs in $LOGS/"
