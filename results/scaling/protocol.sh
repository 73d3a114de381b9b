#!/usr/bin/env bash
# The protocol measurements of results/scaling/, made on the study's final exports after
#   python -m studies.sweep --sweep configs/sweep/scaling.yaml
# Each writes a suite's JSONs and per-example predictions under runs/protocol/; published as
# results/scaling/protocol/ (cp -r runs/protocol/. results/scaling/protocol/).
#   valid_random/       the probe with a plain random valid split instead of a stratified one:
#                       the k-mer baseline and DNAChunker's three pretraining seeds
#   bpe_training_cuts/  the BPE row probed with its cuts taken as in pretraining (cuts=training)
#   finetune/           DNAChunker fine-tuned, learning rate and epoch chosen on valid, one
#                       fine-tuning seed per pretraining seed (configs/eval/paper_columns_finetune.yaml)
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${STUDY:-runs/sweeps/scaling}
P=${OUT:-runs/protocol}
SUITE=configs/eval/paper_columns.yaml
BPE=p01_tokenization-bpe__vocab_size-4096__fit_samples-5000
python -m evaluation suite --baseline kmer_lr --suite $SUITE --out $P/valid_random/kmer_lr valid_split=random
for seed in 0 1 2; do
  python -m evaluation suite --model $S/p00_base__seed-$seed/export --suite $SUITE \
      --out $P/valid_random/DNAChunker/seed-$seed valid_split=random
  python -m evaluation suite --model $S/${BPE}__seed-$seed/export --suite $SUITE \
      --out $P/bpe_training_cuts/seed-$seed cuts=training
done
for seed in 0 1 2; do
  python -m evaluation suite --model $S/p00_base__seed-$seed/export --suite configs/eval/paper_columns_finetune.yaml \
      --out $P/finetune/DNAChunker/seed-$seed "seeds=[$seed]"
done
echo "protocol measurements in $P" >&2
