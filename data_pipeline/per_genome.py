"""Validation metrics per genome of a multi-genome corpus (data_pipeline/corpus.py): the MLM loss
(repeat-weighted, as the training loss) and, per stage, the achieved compression (with the
boundaries mask protection forces around [MASK]) and the router's own (its p >= 0.5 decisions
alone, what inference produces), each genome's own.

Sums stay on the device (batch by batch, through the trainer's Averager); the ratios are taken
once, after the one transfer: valid/<genome>/mlm_loss, valid/<genome>/compression_<s>,
valid/<genome>/router_compression_<s>.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dnachunker.masking import IGNORE


def genome_sums(out, batch: dict, genomes: list[str]) -> dict[str, torch.Tensor]:
    """One batch's per-genome numerators and denominators. out: the model's output on `batch`
    (input_ids, labels, weight, valid, species: (b,) genome index)."""
    target = batch["labels"] != IGNORE
    w = batch["weight"].float() * target
    ce = F.cross_entropy(out.logits.float().transpose(1, 2), batch["labels"], ignore_index=IGNORE, reduction="none")
    per_sample = {"mlm_sum": (ce * w).sum(1), "mlm_weight": w.sum(1)}
    for s, st in enumerate(out.stages):
        per_sample[f"chunks_{s}"] = st.boundary.float().sum(1)
        per_sample[f"router_chunks_{s}"] = st.router_boundary.float().sum(1)
        per_sample[f"positions_{s}"] = st.valid.float().sum(1)
    onehot = F.one_hot(batch["species"], len(genomes)).float()  # (b, G)
    return {f"valid/{g}/{k}": v @ onehot[:, i] for k, v in per_sample.items() for i, g in enumerate(genomes)}


def genome_metrics(values: dict[str, float], genomes: list[str], stages: int) -> dict[str, float]:
    """The sums of genome_sums (averaged alike) -> per-genome metrics; the sums are dropped."""
    out = {k: v for k, v in values.items() if not any(k.startswith(f"valid/{g}/") for g in genomes)}
    for g in genomes:
        p = f"valid/{g}/"
        if values.get(p + "mlm_weight", 0) > 0:
            out[p + "mlm_loss"] = values[p + "mlm_sum"] / values[p + "mlm_weight"]
        for s in range(stages):
            if values.get(p + f"positions_{s}", 0) > 0:
                out[p + f"compression_{s}"] = values[p + f"chunks_{s}"] / values[p + f"positions_{s}"]
                out[p + f"router_compression_{s}"] = values[p + f"router_chunks_{s}"] / values[p + f"positions_{s}"]
    return out
