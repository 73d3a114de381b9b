"""Task types: what a task's labels are, how a head is trained on them, what its output is, and the
metrics that read it. A suite task names its type (default classification) and one of the type's
metrics. Adding a type is one entry here (and its metrics in evaluation.metrics).

  classification    integer labels; a linear head with one logit per class, cross-entropy; output:
                    class probabilities (n, classes); MCC, accuracy, macro F1, AUROC
  regression        real-valued labels (one track, as DNALongBench's per-sequence targets),
                    standardised on the train split before training (the correlations do not
                    change); a linear head with one output, mean squared error; output: values (n,);
                    Pearson, Spearman
  variant_effect    zero-shot, nothing trained: a VCF whose INFO holds LABEL=0|1 and the reference
                    FASTA; output: -(log P(alt) - log P(ref)) per SNV (dnachunker.variants), higher =
                    the model finds the alternative allele less likely; AUROC against the labels
                    (evaluation.zero_shot)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _integer(text: str) -> int:
    label = int(text)
    if label < 0:
        raise ValueError(f"negative label {label}")
    return label


def _real(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"label {text!r} is not a finite number")
    return value


@dataclass(frozen=True)
class TaskType:
    metrics: tuple[str, ...]         # evaluation.metrics names it reports; the first is the default
    parse: Callable[[str], object]   # a label as written in a table -> its value (ValueError when bad)
    trained: bool = True             # False: zero-shot, scored without a head
    target: torch.dtype = torch.long
    standardise: bool = False        # z-score the labels with the train split's mean and std first
    width: Callable = lambda n_classes: n_classes                  # head outputs
    loss: Callable = F.cross_entropy                                # (head output, targets) -> loss
    output: Callable = lambda logits: logits.softmax(-1)            # head output -> what the metrics read
    sklearn: Callable | None = None                                 # (C, seed) -> a linear estimator (k-mer baseline)

    def predict(self, estimator, x: np.ndarray, width: int) -> np.ndarray:
        """A fitted scikit-learn estimator's output, shaped as the head's."""
        if self.target != torch.long:
            return estimator.predict(x)
        out = np.zeros((len(x), width))  # columns for classes absent from the training labels: 0
        out[:, estimator.classes_] = estimator.predict_proba(x)
        return out


def _logistic(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c, max_iter=2000, random_state=seed)


def _ridge(c: float, seed: int):
    from sklearn.linear_model import Ridge
    return Ridge(alpha=1.0 / c)


TASK_TYPES = {
    "classification": TaskType(("mcc", "accuracy", "f1", "auroc"), _integer, sklearn=_logistic),
    "regression": TaskType(("pearson", "spearman"), _real, target=torch.float32, standardise=True, width=lambda n: 1,
                           loss=lambda out, y: F.mse_loss(out.squeeze(-1), y), output=lambda out: out.squeeze(-1),
                           sklearn=_ridge),
    "variant_effect": TaskType(("auroc",), _integer, trained=False),
}


def task_type(name: str) -> TaskType:
    if name not in TASK_TYPES:
        raise ValueError(f"unknown task type {name!r} (known: {', '.join(TASK_TYPES)})")
    return TASK_TYPES[name]
