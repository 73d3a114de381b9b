"""The validation loop, once: the trainer's periodic validation and `evaluation mlm` both run it.

Means over a number of batches of a loader: the MLM loss (repeat-weighted, as the training loss),
its accuracy, and per stage the achieved and the router's own compression; on a multi-genome
corpus each genome's own too (per_genome.py). Values stay on the device until the end: one host
transfer per call.
"""
from __future__ import annotations

from typing import Callable

import torch

from .per_genome import genome_metrics, genome_sums


class Averager:
    """Running means of metrics, floats or device tensors. Tensors stay on the device until the
    means are popped, and are then read in one transfer: one host sync per pop, not per value."""

    def __init__(self):
        self.sums, self.n = {}, 0

    def add(self, metrics: dict):
        for k, v in metrics.items():
            v = v.detach() if torch.is_tensor(v) else v
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += 1

    def mean(self) -> dict:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}

    def pop(self) -> dict[str, float]:
        out = self.mean()
        self.sums, self.n = {}, 0
        if tensors := [k for k, v in out.items() if torch.is_tensor(v)]:
            out.update(zip(tensors, torch.stack([out[k].double().reshape(()) for k in tensors]).tolist()))
        return out


def step_metrics(out) -> dict[str, torch.Tensor]:
    """A forward pass's metrics as device tensors (read nowhere here)."""
    return {"loss": out.loss, "mlm_loss": out.mlm_loss, "mlm_accuracy": out.mlm_accuracy,
            **{f"ratio_loss_{s}": r for s, r in enumerate(out.ratio_losses)},
            **{f"compression_{s}": st.compression for s, st in enumerate(out.stages)},
            **{f"router_compression_{s}": st.router_compression for s, st in enumerate(out.stages)}}


@torch.no_grad()
def validation_means(forward: Callable[[dict], object], loader, batches: int, device,
                     reduce: Callable[[dict], dict] = lambda values: values) -> dict[str, float]:
    """valid/<metric> (and valid/<genome>/<metric> on a corpus) over `batches` batches of `loader`.

    forward: a batch already on `device` -> the model's output with labels (its loss computed);
    reduce: the means -> the means over every rank (the trainer's all-reduce; default: this process)."""
    genomes = loader.split.genomes
    sums = Averager()
    out = None
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        out = forward(batch)
        sums.add({f"valid/{k}": v for k, v in step_metrics(out).items()
                  if k in ("mlm_loss", "mlm_accuracy") or "compression" in k}
                 | (genome_sums(out, batch, genomes) if genomes else {}))
        if sums.n >= batches:
            break
    if out is None:
        raise ValueError(f"{loader.split.root}: its {loader.split.split} split has no batch to validate on")
    values = reduce(sums.pop())
    return genome_metrics(values, genomes, len(out.stages)) if genomes else values
