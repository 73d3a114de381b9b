"""Per-example test predictions, kept beside each evaluation JSON (`<column>.preds.npz`), so that a
comparison can resample test examples as well as seeds (evaluation.stats).

One file per task and evaluated model (or baseline):
  y        (n,) the test labels as scored (classes; standardised values for a regression task),
           folds concatenated in fold order where a task is cross-validated
  seeds    (s,) the probe (or fine-tuning, or baseline) seeds, in row order
  output   (s, n) float32 values or scores; classification: (s, n, classes) float16 probabilities
  pred     classification only: (s, n) int16 argmax of the float32 probabilities (what MCC,
           accuracy and F1 read; exact, where float16 could tie)
  test     the sha256 of the test sequences in order: two files pair example by example only
           when it agrees (the same capped subsample, in the same order)
Loaded without unpickling (allow_pickle=False).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnachunker.fileio import atomic_file


def test_digest(sequences: list[str]) -> str:
    h = hashlib.sha256()
    for s in sequences:
        h.update(s.encode() + b"\n")
    return h.hexdigest()


@dataclass
class Predictions:
    y: np.ndarray
    seeds: np.ndarray
    output: np.ndarray
    test: str
    pred: np.ndarray | None = None

    @classmethod
    def collect(cls, y, seeds: list[int], outputs: list[np.ndarray], sequences: list[str]) -> "Predictions":
        """outputs: per seed, the task type's output over all test examples (folds concatenated)."""
        out = np.stack([np.asarray(o) for o in outputs])
        pred = out.argmax(-1).astype(np.int16) if out.ndim == 3 else None
        return cls(np.asarray(y), np.asarray(seeds), out.astype(np.float16 if out.ndim == 3 else np.float32),
                   test_digest(sequences), pred)

    def labels(self) -> np.ndarray:
        """(s, n) what label metrics read: the argmax class per seed (classification only)."""
        if self.pred is None:
            raise ValueError("not a classification task's predictions")
        return self.pred

    def save(self, path: str | Path) -> None:
        arrays = {"y": self.y, "seeds": self.seeds, "output": self.output, "test": np.array(self.test)}
        if self.pred is not None:
            arrays["pred"] = self.pred
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Predictions":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["y"], z["seeds"], z["output"], str(z["test"]), z["pred"] if "pred" in z else None)
