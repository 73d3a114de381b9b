"""CPU execution settings that every entry point (training, evaluation, benchmarks) applies."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

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


def release_freed_memory() -> None:
    """Hand memory that was freed back to the operating system (glibc's malloc_trim; elsewhere
    nothing).

    Inference over many windows allocates tensors of changing sizes (the chunk counts differ per
    window); glibc keeps what they free in its arenas, so a process's RSS climbs with the input's
    length although what it holds does not: embedding 250 kbp measured 680-820 MB resident, 437-440
    MB after each trim. Called every few batches by dnachunker.inference.stream."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
