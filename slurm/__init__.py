"""Slurm launchers: pretrain.sh (one training job), corpus.sh (a corpus build as a job array).
The sweep engine and the study tables moved to `studies/`; `python -m slurm.sweep` and
`python -m slurm.publish` still run them, for this release only."""
