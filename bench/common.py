"""Shared benchmark helpers: isolated measurements (time + peak memory), power-law fits."""
from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import time
from collections.abc import Callable

import numpy as np
import torch


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds (after warm-up runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def _measure(target, args) -> dict:
    fn, repeats = target(*args)       # build inputs/model: returns the step to measure
    cuda = torch.cuda.is_initialized()
    if cuda:                          # device memory: allocated on top of the model and inputs
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated() // 1024
    else:
        baseline = _rss_kb()          # resident memory before the first step
    t0 = time.perf_counter()
    fn()                              # warm-up (and compilation, for compiled models)
    first = time.perf_counter() - t0
    seconds = timed(fn, repeats=repeats, warmup=0)
    peak = (torch.cuda.max_memory_allocated() // 1024 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) - baseline
    extra = dict(getattr(fn, "extra", {}))
    if hasattr(fn, "flops"):          # counted after the timing so it cannot affect it
        extra["gflop"] = fn.flops() / 1e9
    return {"seconds": seconds, "first_seconds": first, "peak_mb": max(peak, 0) / 1024, **extra}


def _child(fn, args, out):
    try:
        out.put(fn(*args))
    except Exception as e:  # report, do not hang the parent
        out.put({"error": f"{type(e).__name__}: {e}"})


def in_fresh_process(fn, *args) -> dict:
    """fn(*args) -> dict, run in a fresh (spawned) process; {"error": ...} if it raised or died
    (killed for memory, say) without an answer."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    while True:
        try:
            out = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive() and q.empty():
                p.join()
                return {"error": f"the process died with exit code {p.exitcode}"
                                 + (" (killed: out of memory?)" if p.exitcode == -9 else "")}
    p.join()
    return out


def isolated(target, *args) -> dict:
    """Run target(*args) -> (step, repeats) in a fresh process; time the step and measure the
    peak memory it adds over what was held before it (resident memory on CPU, allocated device
    memory on CUDA). A fresh process per
    point keeps peaks independent. The setup should receive its data from the parent so that
    loading it does not raise the peak."""
    return in_fresh_process(_measure, target, args)


def fit_exponent(lengths, values) -> float:
    """Slope of log(value) against log(length): cost ~ length^k."""
    return float(np.polyfit(np.log(lengths), np.log(values), 1)[0])
