"""A sequence task: train/test (and, where the benchmark has one, valid) lists of (sequence,
label), integer classes or real values (evaluation.task_types), and how a valid split is held out
of train where a benchmark has none. The benchmark formats that read tasks: evaluation/formats.py.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field


class EvalDataError(ValueError):
    pass


VALID_SCHEMES = ("stratified", "random")  # how a valid split is held out of train where a benchmark has none


@dataclass
class Task:
    name: str
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    valid: list[tuple[str, int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    type: str = "classification"     # evaluation.task_types
    split_here: bool = False         # True: the source has no test split; test was held out here (seed 0)

    @property
    def n_classes(self) -> int:
        if self.type != "classification":
            return 1
        return max(2, len(self.labels) or 1 + max(y for _, y in self.train + self.test))

    def split_valid(self, seed: int, fraction: float = 0.1, scheme: str = "stratified") -> tuple[list, list]:
        """(train, valid): the benchmark's own valid split, else a split of train by seed: stratified
        by label for classification (scheme `stratified`), or a plain random one (`random`)."""
        if scheme not in VALID_SCHEMES:
            raise ValueError(f"valid split scheme must be one of {', '.join(VALID_SCHEMES)}, got {scheme!r}")
        if self.valid:
            return self.train, self.valid
        rng = random.Random(seed)
        train, valid = [], []
        stratify = self.type == "classification" and scheme == "stratified"
        strata = sorted({y for _, y in self.train}) if stratify else [None]
        for label in strata:
            items = [x for x in self.train if label is None or x[1] == label]
            rng.shuffle(items)
            k = max(1, round(len(items) * fraction))
            valid += items[:k]
            train += items[k:]
        rng.shuffle(train)
        return train, valid
