"""Noise of a study's numbers, and whether two rows differ beyond it.

A row's scores on one column are `Samples`: {pretraining seed: {probe seed: score}}; the
pretraining seed is None for rows that are not pretrained (baselines). Probe seed q means the same
valid split and head seed in every row (evaluation.finetune), pretraining seed s the same
initialisation seed and data order in every pretrained row. Beside them, a row may carry its
per-example test predictions (evaluation.predictions), one file per pretraining seed.

The unit of replication is what a new run of the row would draw anew: a pretraining seed for a
pretrained row (its score is the mean over its probe seeds), a probe seed for a row without
pretraining (each trains its own classifier).

`mean_std`: the mean over everything; the std across units.

`compare` (named in every study table as METHOD): the difference of two rows' means with a 95 %
interval from two variance terms.
  * seeds: the variance of the mean difference across units: paired by pretraining seed where
    both rows are pretrained on the same seeds (var(d_s) / n, n - 1 degrees of freedom), else
    Welch's sum var_a / n_a + var_b / n_b with Welch-Satterthwaite degrees of freedom. It holds
    pretraining, probe and each model's own test-set noise.
  * test set: the variance of Var(g_a - g_b), where g is what a row gets right or wrong on this
    particular test set beyond each model's own share, estimated by a paired bootstrap over test
    examples (the same resampled examples for every model of both rows): the covariance between
    different units of a row (what they share) for each row, less twice the covariance across
    rows. The part each model holds alone is already in the seed term and is not counted twice.
    Without per-example predictions this term is left out, and the table says so.
The interval is mean ± sqrt(t² seeds + z² test set), each term scaled by its own quantile:
t(0.975, df) for the seed term, estimated from a handful of units, and z(0.975) for the test-set
term, estimated from many examples. It is exact when either term is 0 and conservative between
(evaluation.nullsim measures it); Welch-Satterthwaite's pooled degrees of freedom, which take the
ratio of two noisy variances at face value, claimed 7-9 % under the null in the same simulation. A claim ("exceeds the noise") needs the
interval to exclude 0 and at least MIN_UNITS units in each row: with fewer, the seed variance is
estimated from one or two numbers and no arrow is printed. evaluation.nullsim simulates the
study's design to check the false-positive rate (5 %) and the power of this rule.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .metrics import score

Samples = dict  # {pretraining seed or None: {probe seed: value}}
MIN_UNITS = 3
METHOD = ("seed-level t interval with a test-set term (evaluation.stats.compare: units are pretraining seeds, "
          "or probe seeds for rows without pretraining, each scored on the same test examples; the test-set "
          "term from a paired bootstrap over test examples; 95 %; a claim needs ≥ 3 units per row)")


def units(s: Samples) -> dict:
    """{unit: score}: pretraining seeds (mean over their probe seeds), or the probe seeds of a row
    without pretraining."""
    if list(s) == [None]:
        return dict(s[None])
    return {p: statistics.fmean(v.values()) for p, v in s.items()}


def mean_std(s: Samples) -> tuple[float, float, str]:
    """-> (mean over everything, std across units, 'pretraining seeds' | 'probe seeds'). With one
    pretraining seed the std is across its probe seeds, which leaves out what another pretraining
    run would change."""
    u = units(s)
    kind = "probe seeds" if list(s) == [None] else "pretraining seeds"
    if len(u) == 1:
        u, kind = dict(next(iter(s.values()))), "probe seeds"
    mean = statistics.fmean(v for per in s.values() for v in per.values())
    return mean, statistics.stdev(u.values()) if len(u) > 1 else 0.0, kind


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


@dataclass
class Row:
    """One row's scores on one column, and where kept, its per-example predictions
    ({pretraining seed or None: evaluation.predictions.Predictions})."""
    scores: Samples
    predictions: dict | None = None
    metric: str = "mcc"

    @property
    def pretrained(self) -> bool:
        return list(self.scores) != [None]


@dataclass
class Comparison:
    delta: float
    lo: float | None = None          # None: no interval (a row with a single unit)
    hi: float | None = None
    df: float | None = None          # the seed term's degrees of freedom
    claim: bool = False              # the interval excludes 0 and each row has >= MIN_UNITS units
    test_term: bool = False          # the test-set term is in the interval
    note: str = ""                   # why there is no interval, or no claim

    @property
    def direction(self) -> int:
        return 0 if not self.claim else (1 if self.lo > 0 else -1)


def _resampled_units(row: Row, idx: np.ndarray) -> np.ndarray:
    """(B, units) each unit's score (mean over its probe seeds) on each bootstrap resample of the
    test examples; idx: (B, n) example indices."""
    cols = []
    for p, preds in sorted(row.predictions.items(), key=lambda kv: str(kv[0])):
        seeds = [q for q in preds.seeds.tolist() if q in row.scores[p]]
        per_seed = [_metric_on(row.metric, preds, preds.seeds.tolist().index(q), idx) for q in seeds]
        if p is None:
            cols += per_seed
        else:
            cols.append(np.mean(per_seed, 0))
    return np.stack(cols, 1)


def _metric_on(metric: str, preds, k: int, idx: np.ndarray) -> np.ndarray:
    """(B,) the metric of seed row k of `preds` on each resample idx (B, n)."""
    if metric in ("mcc", "accuracy") and preds.pred is not None:
        classes = int(max(preds.y.max(), preds.pred.max())) + 1
        cat = preds.y.astype(np.int64) * classes + preds.pred[k].astype(np.int64)  # (n,) confusion cell
        cells = classes * classes
        flat = (cat[idx] + cells * np.arange(len(idx))[:, None]).ravel()
        c = np.bincount(flat, minlength=cells * len(idx)).reshape(-1, classes, classes).astype(np.float64)
        total, correct = c.sum((1, 2)), np.trace(c, axis1=1, axis2=2)
        if metric == "accuracy":
            return correct / total
        t, p = c.sum(2), c.sum(1)
        denom = np.sqrt(total ** 2 - (p * p).sum(1)) * np.sqrt(total ** 2 - (t * t).sum(1))
        return np.where(denom > 0, (correct * total - (t * p).sum(1)) / np.where(denom > 0, denom, 1), 0.0)
    out = preds.output[k].astype(np.float64)
    return np.array([score(metric, preds.y[i], out[i]) for i in idx])


def examples_term(a: Row, b: Row, n_boot: int = 400, seed: int = 0) -> float | None:
    """Var(g_a - g_b) from a paired bootstrap over test examples (see the module docstring), or None
    where a row keeps no predictions, the rows were not scored on the same test examples, or a row
    has a single unit (then its shared and own parts cannot be told apart)."""
    if not (a.predictions and b.predictions):
        return None
    digests = {p.test for r in (a, b) for p in r.predictions.values()}
    if len(digests) != 1:
        return None
    n = len(next(iter(a.predictions.values())).y)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    sa, sb = _resampled_units(a, idx), _resampled_units(b, idx)
    if sa.shape[1] < 2 or sb.shape[1] < 2:
        return None
    cov = np.cov(np.concatenate([sa, sb], 1), rowvar=False)
    na = sa.shape[1]
    within = lambda m: m[~np.eye(len(m), dtype=bool)].mean()  # noqa: E731  mean covariance of distinct units
    return max(0.0, within(cov[:na, :na]) + within(cov[na:, na:]) - 2 * cov[:na, na:].mean())


def compare(a: Row, b: Row, n_boot: int = 400, seed: int = 0, v_test: float | None = None) -> Comparison:
    """mean(a) - mean(b) with its 95 % interval and whether it is a claim (module docstring).
    v_test: the test-set term where it is known otherwise (a mean over columns: the sum of the
    columns' terms over the number of columns squared, their test sets being independent); None:
    from the rows' predictions."""
    ua, ub = units(a.scores), units(b.scores)
    delta = statistics.fmean(v for per in a.scores.values() for v in per.values()) - \
        statistics.fmean(v for per in b.scores.values() for v in per.values())
    few = [f"{len(u)} {'pretraining' if r.pretrained else 'probe'} seed{'s' if len(u) > 1 else ''}"
           for r, u in ((a, ua), (b, ub)) if len(u) < MIN_UNITS]
    if len(ua) < 2 or len(ub) < 2:
        return Comparison(delta, note=f"no interval: {' and '.join(few)}, whose seed noise is not measured")
    if a.pretrained and b.pretrained and set(ua) == set(ub):
        d = [ua[k] - ub[k] for k in ua]
        v_seed, df_seed = statistics.variance(d) / len(d), len(d) - 1
    else:
        va, vb = statistics.variance(ua.values()) / len(ua), statistics.variance(ub.values()) / len(ub)
        v_seed = va + vb
        df_seed = v_seed ** 2 / (va ** 2 / (len(ua) - 1) + vb ** 2 / (len(ub) - 1)) if v_seed > 0 else len(ua) + len(ub) - 2
    v_test = examples_term(a, b, n_boot, seed) if v_test is None else v_test
    half = (float(sps.t.ppf(0.975, df_seed)) ** 2 * v_seed + float(sps.norm.ppf(0.975)) ** 2 * (v_test or 0.0)) ** 0.5
    lo, hi = delta - half, delta + half
    excludes = lo > 0 or hi < 0
    note = "" if not few else f"no claim: {' and '.join(few)} (a claim needs {MIN_UNITS})"
    return Comparison(delta, lo, hi, df_seed, claim=excludes and not few, test_term=v_test is not None, note=note)
