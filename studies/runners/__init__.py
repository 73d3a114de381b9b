"""Where a sweep's jobs run. A runner takes the sweep, the points to run (pretraining where it is
not finished, then each point's evaluations once its pretraining succeeded) and the out_dir, and
returns {point: {job kind: status}} ("ok", "failed (...)", "skipped: ..."). Adding one is a class
here and an entry in RUNNERS; `cluster=<name>` picks it."""
from __future__ import annotations

from .local import LocalRunner
from .slurm import SlurmRunner

RUNNERS = {"local": LocalRunner, "slurm": SlurmRunner}
