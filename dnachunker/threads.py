"""How OpenMP threads wait, set before torch loads: the one CPU-threading setting of the project.

libgomp (PyTorch's OpenMP on Linux) lets an idle thread spin for GOMP_SPINCOUNT iterations (default
300,000) before it sleeps. On cores of its own that saves a wake-up; on cores shared with another
process (a second job, a data-loader worker, a laptop's other work) the spinning threads take the
cores from the threads doing the work (a tiny training step has measured 1.7x to 26x slower than
with passive waiting, depending on the load). 3000 spins keep steps on idle cores as fast as the
default and cost 1.2-1.35x a passive wait on loaded ones, where passive waiting costs 1.3x on idle
cores (docs/benchmarks.md, python -m bench.threads). Importing dnachunker (every entry point
does, before torch) sets GOMP_SPINCOUNT to SPINCOUNT unless you set GOMP_SPINCOUNT or
OMP_WAIT_POLICY yourself: OMP_WAIT_POLICY=PASSIVE for shared cores at any price,
OMP_WAIT_POLICY=ACTIVE (or a larger GOMP_SPINCOUNT) for dedicated cores.
"""
from __future__ import annotations

import os
import sys
import warnings

SPINCOUNT = "3000"


def set_default_wait_policy() -> None:
    """GOMP_SPINCOUNT=SPINCOUNT unless the user chose a wait policy. OpenMP reads it when torch
    loads: a script that imported torch first keeps the default spinning, and is told so once."""
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    if "torch" in sys.modules:
        warnings.warn("torch was imported before dnachunker, so OpenMP threads spin 300,000 times while they wait "
                      "(up to 26x slower steps on cores shared with other work). Import dnachunker before torch, or "
                      f"set GOMP_SPINCOUNT={SPINCOUNT} (or OMP_WAIT_POLICY=PASSIVE) in the environment "
                      "(docs/configuration.md#cpu-threads)", stacklevel=3)
