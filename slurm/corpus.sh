#!/bin/bash
# Build a multi-genome corpus on a Slurm cluster: one array element per genome, then the merge.
#
#   bash slurm/corpus.sh CORPUS_CONFIG [key=value ...]     # submits both jobs, prints their ids
#   SBATCH_ARGS="--partition=cpu --time=4:00:00" bash slurm/corpus.sh configs/data/multispecies_demo.yaml
#
# Element i runs `python -m data_pipeline all --config CORPUS_CONFIG only=i` (genome i's shard set
# under <out>/<name>/, reused when its inputs are unchanged); the merge job runs after all of them
# succeed (afterok) and writes <out>/corpus.json. A failed element leaves the merge pending
# (DependencyNeverSatisfied); fix and resubmit: finished genomes are reused.
set -euo pipefail
CONFIG=${1:?usage: bash slurm/corpus.sh CORPUS_CONFIG [key=value ...]}
shift
PYTHON=${DNACHUNKER_PYTHON:-$PWD/.venv/bin/python}
LOGS=${CORPUS_LOGS:-slurm-logs}
mkdir -p "$LOGS"
# shellcheck disable=SC2206
EXTRA=(${SBATCH_ARGS:-})
count=$("$PYTHON" -c "import sys; from data_pipeline.corpus_config import CorpusConfig
print(len(CorpusConfig.load(sys.argv[1], sys.argv[2:]).genomes))" "$CONFIG" "$@")
args=""
[ $# -gt 0 ] && args=$(printf ' %q' "$@")
array=$(sbatch --parsable --job-name=corpus-genome --array=0-$((count - 1)) --ntasks=1 --cpus-per-task="${CPUS:-2}" \
  --output="$LOGS/%x-%A_%a.out" "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m data_pipeline all --config $CONFIG$args only=\$SLURM_ARRAY_TASK_ID")
merge=$(sbatch --parsable --job-name=corpus-merge --dependency=afterok:"$array" --ntasks=1 --cpus-per-task=1 \
  --output="$LOGS/%x-%j.out" "${EXTRA[@]}" \
  --wrap="exec $PYTHON -m data_pipeline merge --config $CONFIG$args")
echo "genomes: array job $array ($count elements); merge: job $merge (after all succeed); logs in $LOGS/"
