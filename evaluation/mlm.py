"""Masked-LM loss of an export on a shard set or corpus split: the pretraining validation
(BERT masking keyed by the seed, soft-masked repeats weighted `repeat_weight`), and on a
multi-genome corpus each genome's own, so that models trained on different data are compared on
the same samples.

    python -m evaluation mlm --model runs/x/export --data data/multispecies_demo [--batches 40]
"""
from __future__ import annotations

import torch

from data_pipeline.loader import PretrainLoader
from data_pipeline.validation import validation_means

from .tasks import EvalDataError


@torch.no_grad()
def mlm_loss(model, root: str, split: str = "valid", batches: int = 40, batch_size: int = 16, seed: int = 0,
             repeat_weight: float = 0.1, device: str = "cpu") -> dict[str, float]:
    """-> {'mlm_loss', 'samples', and per genome '<genome>/mlm_loss', '<genome>/compression_<s>',
    '<genome>/router_compression_<s>'}. A model with a species embedding reads each genome as the
    species of the same name (all of the data's genomes must be among its species)."""
    loader = PretrainLoader(root, split, batch_size, seed=seed, train=False, repeat_weight=repeat_weight,
                            tokenization=model.tokenization)
    species = _species_index(model, loader.split.genomes, root)
    species = species.to(device) if species is not None else None
    model.eval().to(device)

    seen = []

    def forward(b):
        seen.append(b["input_ids"].size(0))
        return model(b["input_ids"], b["valid"], b["labels"], b["weight"], b.get("boundaries"),
                     species[b["species"]] if species is not None else None)
    values = validation_means(forward, loader, batches, device)
    kept = {k.removeprefix("valid/"): v for k, v in values.items()
            if k == "valid/mlm_loss" or (loader.split.genomes and k.count("/") == 2)}
    return kept | {"samples": len(seen) * batch_size}


def _species_index(model, genomes: list[str] | None, root: str) -> torch.Tensor | None:
    """The data's genome index -> the model's species index; None: the model embeds no species,
    or the data is one genome, read as the species the model was given (set_species, --species)."""
    if not model.cfg.species:
        return None
    if genomes is None:
        if why := model.needs_species():
            raise EvalDataError(f"{root}: one genome, and {why}, the genome's (--species)")
        return None
    if missing := [g for g in genomes if g not in model.cfg.species]:
        raise EvalDataError(f"{root}: genome(s) {missing} are not among the model's species {model.cfg.species}")
    return torch.tensor([model.cfg.species.index(g) for g in genomes])
