"""Metrics (numpy) and their registry.

A classification task's model output is a (n, classes) array of class probabilities: metrics on
labels (MCC, multi-class as Gorodkin's; accuracy; macro F1) read its argmax, metrics on scores
(AUROC) read the probabilities. A regression task's output is (n,) predicted values (Pearson,
Spearman); a zero-shot variant-effect task's is (n,) scores (AUROC). METRICS names every metric;
each task type (evaluation.task_types) lists the ones it reports, and a suite names, per task, the
one its table shows and that picks the epoch or hyperparameter on the valid split
(evaluation.suite). Adding a metric is one function and one entry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    c = np.zeros((n, n), dtype=np.int64)
    np.add.at(c, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return c


def mcc(y_true, y_pred, n: int | None = None) -> float:
    n = n or int(max(np.max(y_true), np.max(y_pred))) + 1
    c = confusion(y_true, y_pred, n).astype(np.float64)
    t, p, correct, total = c.sum(1), c.sum(0), np.trace(c), c.sum()
    denom = np.sqrt(total**2 - (p * p).sum()) * np.sqrt(total**2 - (t * t).sum())
    return float((correct * total - (t * p).sum()) / denom) if denom > 0 else 0.0


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def f1_macro(y_true, y_pred, n: int | None = None) -> float:
    n = n or int(max(np.max(y_true), np.max(y_pred))) + 1
    c = confusion(y_true, y_pred, n).astype(np.float64)
    tp = np.diag(c)
    prec = np.divide(tp, c.sum(0), out=np.zeros(n), where=c.sum(0) > 0)
    rec = np.divide(tp, c.sum(1), out=np.zeros(n), where=c.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(n), where=(prec + rec) > 0)
    present = (c.sum(0) + c.sum(1)) > 0
    return float(f1[present].mean())


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def auroc(y_true, probs) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half): binary from the positive class's
    probability; several classes: the mean of one-vs-rest AUROCs over the classes present."""
    y, p = np.asarray(y_true), np.asarray(probs)
    p = p[:, None] if p.ndim == 1 else p
    classes = [1] if p.shape[1] <= 2 else range(p.shape[1])
    out = []
    for c in classes:
        pos = y == c
        npos, nneg = pos.sum(), (~pos).sum()
        if npos and nneg:
            r = _ranks(p[:, min(c, p.shape[1] - 1)])
            out.append((r[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    return float(np.mean(out)) if out else float("nan")


def pearson(y_true, values) -> float:
    y, v = np.asarray(y_true, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(y) < 2 or y.std() == 0 or v.std() == 0:
        return 0.0
    return float(np.corrcoef(y, v)[0, 1])


def spearman(y_true, values) -> float:
    """Pearson correlation of the ranks (ties given their average rank)."""
    return pearson(_ranks(np.asarray(y_true, dtype=np.float64)), _ranks(np.asarray(values, dtype=np.float64)))


@dataclass(frozen=True)
class Metric:
    fn: Callable                     # (y_true, predicted labels, n classes), (y_true, probabilities) or (y_true, values)
    on: str                          # labels | scores | values


METRICS = {
    "mcc": Metric(mcc, "labels"),
    "accuracy": Metric(lambda y, pred, n: accuracy(y, pred), "labels"),
    "f1": Metric(f1_macro, "labels"),
    "auroc": Metric(auroc, "scores"),
    "pearson": Metric(pearson, "values"),
    "spearman": Metric(spearman, "values"),
}


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    return name


def all_metrics(y_true, out, names=("mcc", "accuracy", "f1", "auroc")) -> dict[str, float]:
    """The metrics `names` of one output: class probabilities (n, classes), or values / scores (n,)."""
    out = np.asarray(out, dtype=np.float64)
    result = {}
    for name in names:
        m = METRICS[name]
        result[name] = m.fn(y_true, out.argmax(1), out.shape[1]) if m.on == "labels" else m.fn(y_true, out)
    return result


def score(name: str, y_true, out) -> float:
    """One metric of one output (as all_metrics)."""
    return all_metrics(y_true, out, [name])[name]
