"""Probes: how per-position states become one feature vector per sequence for a linear head.

A suite task names its probe (`probe:`, default `mean`, the paper's); every table says which
probe a column used. The same probe reads a pretrained model's final hidden states, fine-tuning's
states, and the one-hot baseline's bases (evaluation.baselines: `onehot`), so "what pretraining
adds beyond the bases" is a comparison at the same positions. Registry: PROBES; one class and one
entry add a probe.

  mean     the mean of the states over the real positions (b, L, d) -> (b, d): the paper's linear
           probe. It keeps what is in a sequence, not where.
  window   the states at anchor - flank ... anchor + flank, concatenated in order:
           (b, L, d) -> (b, (2 flank + 1) d). For tasks whose signal sits at a known position,
           declared by the task as `anchor` (a base index from the sequence start, or `center`:
           length // 2); a GUE splice site sits at the centre of its 400 bp window.

`fit_linear_head` trains the head on fixed features (standardised on train; the epoch best on
valid by the task's metric), for the model's probe and the one-hot baseline alike.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .metrics import score
from .tasks import EvalDataError


@dataclass(frozen=True)
class ProbeSpec:
    kind: str = "mean"               # a PROBES name
    anchor: int | str | None = None  # window: a base index, or "center"
    flank: int = 10                  # window: bases either side of the anchor

    @property
    def name(self) -> str:
        """How tables name it: 'mean', 'window center ±10 bp'."""
        return self.kind if self.kind == "mean" else f"{self.kind} {self.anchor} ±{self.flank} bp"


class MeanProbe:
    needs_anchor = False

    def width(self, d: int, spec: ProbeSpec) -> int:
        return d

    def __call__(self, h: torch.Tensor, valid: torch.Tensor, spec: ProbeSpec) -> torch.Tensor:
        v = valid.unsqueeze(-1).to(h.dtype)
        return (h * v).sum(1) / v.sum(1)


class WindowProbe:
    needs_anchor = True

    def width(self, d: int, spec: ProbeSpec) -> int:
        return (2 * spec.flank + 1) * d

    def __call__(self, h: torch.Tensor, valid: torch.Tensor, spec: ProbeSpec) -> torch.Tensor:
        lengths = valid.sum(1)
        centre = lengths // 2 if spec.anchor == "center" else torch.full_like(lengths, int(spec.anchor))
        idx = centre[:, None] + torch.arange(-spec.flank, spec.flank + 1, device=h.device)  # (b, w)
        bad = (idx < 0) | (idx >= lengths[:, None])
        if bad.any():
            i = int(bad.any(1).nonzero()[0])
            raise EvalDataError(f"probe {spec.name}: a sequence of {int(lengths[i])} bp has no base at "
                                f"{int(centre[i]) - spec.flank}..{int(centre[i]) + spec.flank}")
        return h.gather(1, idx[:, :, None].expand(-1, -1, h.shape[-1])).flatten(1)


PROBES = {"mean": MeanProbe(), "window": WindowProbe()}


def probe(spec: ProbeSpec):
    if spec.kind not in PROBES:
        raise ValueError(f"unknown probe {spec.kind!r} (known: {', '.join(PROBES)})")
    return PROBES[spec.kind]


def check(spec: ProbeSpec) -> list[str]:
    """Problems of a probe spec, for config validation."""
    if spec.kind not in PROBES:
        return [f"unknown probe {spec.kind!r} (known: {', '.join(PROBES)})"]
    problems = []
    if PROBES[spec.kind].needs_anchor and not (spec.anchor == "center" or isinstance(spec.anchor, int)):
        problems.append(f"probe {spec.kind} needs the task's anchor: a base index or 'center', got {spec.anchor!r}")
    if spec.flank < 0:
        problems.append(f"flank must be >= 0, got {spec.flank}")
    return problems


def fit_linear_head(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], width: int, tt, metric: str,
                    seed: int, epochs: int, lr: float, batch_size: int, weight_decay: float, device="cpu"
                    ) -> tuple[np.ndarray, float]:
    """x, y: {'train', 'valid', 'test'} features (n, f) and labels -> (the task type's output on test,
    the best valid score). Features standardised with train's mean and std; AdamW; 20 passes per
    epoch (a linear head on fixed features: many cheap passes); the pass best on valid is kept."""
    torch.manual_seed(seed)
    head = nn.Linear(x["train"].shape[1], width).to(device)
    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    norm = lambda v: ((v - mu) / sd).to(device)  # noqa: E731
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state = -2.0, None
    g = torch.Generator().manual_seed(seed)
    for _ in range(max(epochs, 1) * 20):
        for idx in torch.randperm(len(x["train"]), generator=g).split(batch_size):
            loss = tt.loss(head(norm(x["train"][idx])), y["train"][idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            value = score(metric, y["valid"].numpy(), tt.output(head(norm(x["valid"]))).cpu().numpy())
        if value > best:
            best, best_state = value, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    with torch.no_grad():
        return tt.output(head(norm(x["test"]))).cpu().numpy(), best
