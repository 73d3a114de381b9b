"""The study's design, simulated, to check the comparison rule of evaluation.stats: how often it
claims a difference between two rows drawn from one distribution (the false-positive rate, to be
5 %), and how often it finds a known one (power).

One trial: a test set of `n` examples drawn anew (binary labels, half each), and two rows of
`pretraining` seeds x `probe` seeds, scored by MCC on it. A model's prediction on an example is
right when  mu + z + g + u + h + w + k > 0, where
  z ~ N(0, 1)        the example's difficulty, shared by every model
  g ~ N(0, sd_g)     the row's own per-example pattern: drawn independently for each row, so that
                     under the null the rows get different examples right with the same expected score
  u ~ N(0, sd_u)     a pretraining seed's quality (one per model)
  h ~ N(0, sd_h)     a pretraining seed's own per-example noise
  w ~ N(0, sd_w), k ~ N(0, sd_k)   the same for each probe seed of a model
and row A's mu is raised by `shift` (0: the null). Without pretraining (`pretrained=False` for row
B, a baseline) each probe seed trains a model of its own (its u and h drawn anew) and is a unit.

    python -m evaluation.nullsim                 # the rule's false-positive rate and power, per design
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .metrics import mcc
from .predictions import Predictions
from .stats import Row, compare


@dataclass(frozen=True)
class Design:
    pretraining: int = 3             # pretraining seeds per row
    probe: int = 3                   # probe seeds per model
    n: int = 1000                    # test examples (the study's capped test sets)
    mu: float = 0.9                  # accuracy about 0.79, MCC about 0.58
    sd_g: float = 0.3
    sd_u: float = 0.05
    sd_h: float = 0.3
    sd_w: float = 0.02
    sd_k: float = 0.2
    shift: float = 0.0               # row A's mu minus row B's
    pretrained: bool = True          # row B pretrained (else a baseline: one model, probe seeds as units)


def _row(d: Design, y: np.ndarray, z: np.ndarray, mu: float, rng, pretrained: bool) -> Row:
    g = rng.normal(0, d.sd_g, d.n)
    model = lambda: rng.normal(0, d.sd_u) + rng.normal(0, d.sd_h, d.n)  # noqa: E731  one model's own share
    scores, preds = {}, {}
    for p in range(d.pretraining) if pretrained else [None]:
        base = mu + z + g + (model() if pretrained else 0.0)
        # a probe seed of a row without pretraining trains a model of its own
        right = [base + (0.0 if pretrained else model()) + rng.normal(0, d.sd_w) + rng.normal(0, d.sd_k, d.n) > 0
                 for _ in range(d.probe)]
        pred = np.stack([np.where(r, y, 1 - y) for r in right]).astype(np.int16)
        scores[p] = {q: mcc(y, pred[q], 2) for q in range(d.probe)}
        preds[p] = Predictions(y, np.arange(d.probe), np.eye(2, dtype=np.float16)[pred], "simulated", pred)
    return Row(scores, preds)


def trial(d: Design, rng) -> tuple[Row, Row]:
    """Two rows on one freshly drawn test set: A (mu + shift), B (mu)."""
    y = (np.arange(d.n) % 2).astype(np.int64)
    z = rng.normal(0, 1, d.n)
    return _row(d, y, z, d.mu + d.shift, rng, True), _row(d, y, z, d.mu, rng, d.pretrained)


def claim_rate(d: Design, trials: int = 1000, seed: int = 0, n_boot: int = 200) -> tuple[float, float, float, float]:
    """-> (fraction of trials with a claim, its Monte Carlo standard error, mean MCC difference,
    fraction whose interval excludes 0 whether or not the rows have the units a claim needs)."""
    rng = np.random.default_rng(seed)
    claims, deltas, excludes = [], [], []
    for i in range(trials):
        a, b = trial(d, rng)
        c = compare(a, b, n_boot=n_boot, seed=i)
        claims.append(c.claim)
        deltas.append(c.delta)
        excludes.append(c.lo is not None and (c.lo > 0 or c.hi < 0))
    rate = float(np.mean(claims))
    return rate, (rate * (1 - rate) / trials) ** 0.5, float(np.mean(deltas)), float(np.mean(excludes))


def main() -> None:
    print("| design | shift (margin) | mean MCC difference | interval excludes 0 | claims | Monte Carlo s.e. |\n"
          "|---|---|---|---|---|---|")
    for name, d in [("1 pretraining seed x 3 probe seeds", Design(pretraining=1)),
                    ("2 x 3", Design(pretraining=2)), ("3 x 3", Design()),
                    ("3 x 3 against a baseline", Design(pretrained=False))]:
        for shift in (0.0, 0.1, 0.2):
            rate, se, delta, excludes = claim_rate(replace(d, shift=shift))
            print(f"| {name} | {shift} | {delta:+.3f} | {excludes:.3f} | {rate:.3f} | {se:.3f} |", flush=True)


if __name__ == "__main__":
    main()
