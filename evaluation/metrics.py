"""Classification metrics (numpy): MCC (multi-class, Gorodkin), accuracy, macro F1."""
from __future__ import annotations

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


def all_metrics(y_true, y_pred, n: int) -> dict[str, float]:
    return {"mcc": mcc(y_true, y_pred, n), "accuracy": accuracy(y_true, y_pred), "f1": f1_macro(y_true, y_pred, n)}
