"""CPU execution settings that every entry point (training, evaluation, benchmarks) applies."""
from __future__ import annotations

import torch


def flush_subnormals() -> None:
    """Treat subnormal floats (|x| < 1.2e-38) as zero on the CPU.

    The scans' decays exp(sum of log(1 - p)) reach that range within a few strongly gated steps,
    and gradients through them too (down to ~1e-28 at the BiMamba convolutions). CPU kernels then
    take a slow path: a mid-size (4.2 M) training step at 4 kbp measured 45 s instead of 3.5 s,
    and forward passes of the probes slowed about tenfold. The numerical effect is nil at this
    scale. Importing dnachunker calls it; threads created later inherit it. Without an x86/ARM
    flush-to-zero mode it does nothing."""
    torch.set_flush_denormal(True)
