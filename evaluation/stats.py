"""Noise of a study's numbers: spread across pretraining seeds, and whether two rows differ.

A row's scores on one column are `Samples`: {pretraining seed: {probe seed: MCC}}, with the
pretraining seed None for rows that are not pretrained (baselines). Probe seed s means the same
valid split and head seed in every row (evaluation.finetune), and pretraining seed s the same
initialisation and data order in every pretrained row, so rows are compared pairwise.

`mean_std`: the mean over everything; the std across pretraining seeds of their probe-seed means
when there are two or more, else across probe seeds (which then understates the noise: it leaves
out what another pretraining run would change).

`paired_bootstrap`: a paired hierarchical bootstrap of the difference of means. Each resample
draws pretraining seeds with replacement (the same draw for both rows where they share their
pretraining seeds, each row its own otherwise), then probe seeds with replacement (the same draw
for both rows), and takes the difference of the two means; the 2.5 and 97.5 percentiles of
`n` resamples are the 95 % interval. "Exceeds the noise" means that interval excludes 0. With
three probe seeds and one or two pretraining seeds the interval is itself rough: a resample has at
most a handful of distinct values, so read it as a screen, not a p-value.
"""
from __future__ import annotations

import statistics

import numpy as np

Samples = dict  # {pretraining seed or None: {probe seed: value}}


def _grid(s: Samples, probe: list) -> np.ndarray:
    """(pretraining seeds, probe seeds) values."""
    return np.array([[s[p][q] for q in probe] for p in sorted(s, key=str)])


def mean_std(s: Samples) -> tuple[float, float, str]:
    """-> (mean, std, 'pretraining seeds' | 'probe seeds'): see the module docstring."""
    runs = [statistics.fmean(v.values()) for v in s.values()]
    if len(runs) > 1:
        return statistics.fmean(runs), statistics.stdev(runs), "pretraining seeds"
    values = list(next(iter(s.values())).values())
    return runs[0], statistics.stdev(values) if len(values) > 1 else 0.0, "probe seeds"


def paired_bootstrap(a: Samples, b: Samples, n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """-> (mean(a) - mean(b), 2.5th and 97.5th percentile of the resampled difference)."""
    probe = sorted(set.intersection(*(set(v) for v in [*a.values(), *b.values()])))
    if not probe:
        raise ValueError("the rows share no probe seed: they cannot be paired")
    ga, gb = _grid(a, probe), _grid(b, probe)
    rng = np.random.default_rng(seed)
    jq = rng.integers(0, len(probe), (n, len(probe)))
    ia = rng.integers(0, len(a), (n, len(a)))
    ib = ia if set(a) == set(b) else rng.integers(0, len(b), (n, len(b)))
    take = lambda g, i: g[i[:, :, None], jq[:, None, :]].mean((1, 2))  # noqa: E731
    diff = take(ga, ia) - take(gb, ib)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(ga.mean() - gb.mean()), float(lo), float(hi)


def overall(per_column: dict[str, Samples]) -> Samples:
    """The mean over columns, per (pretraining seed, probe seed) that every column has."""
    cols = list(per_column.values())
    pre = set.intersection(*(set(c) for c in cols))
    out = {}
    for p in pre:
        probe = set.intersection(*(set(c[p]) for c in cols))
        if probe:
            out[p] = {q: statistics.fmean(c[p][q] for c in cols) for q in sorted(probe)}
    return out
