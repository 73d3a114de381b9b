"""What a run builds from its config: the model at step 0, its tokenization (fitted at the first
start where it must be), and the export of a checkpoint."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from data_pipeline.errors import DataError
from data_pipeline.fitting import fit_tokenization
from dnachunker import DNAChunker, tokenization

from . import distributed
from .config import TrainConfig


def init_model(cfg: TrainConfig) -> DNAChunker:
    """The model at step 0: seeded by `seed`, the same on every rank and in every restart (also
    what a study's random-initialisation control row is made of)."""
    torch.manual_seed(cfg.seed)
    return DNAChunker(cfg.model)


def export(cfg: TrainConfig, ckpt: Path, out: Path, training: dict | None = None) -> Path:
    """fp32 master weights of a checkpoint -> save_pretrained directory with its model card (rank 0)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    with contextlib.redirect_stderr(sys.stdout):  # its progress bar: with its other output
        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt.parent), tag=ckpt.name)
    model = DNAChunker(cfg.model)
    model.load_state_dict(state, strict=True)
    model.tokenization = fitted_tokenization(cfg)  # the cuts travel with the weights
    return model.save_pretrained(out, training, name=Path(cfg.out_dir).name)


def fitted_tokenization(cfg: TrainConfig):
    """The model's tokenization, fitted: read from `tokenization_from` (resolved at start-up)."""
    if cfg.tokenization_from is None:
        return tokenization.build(cfg.model)
    return tokenization.load(cfg.model, cfg.tokenization_from)


def resolve_tokenization(cfg: TrainConfig, d: distributed.Dist) -> None:
    """A tokenization to fit (bpe) with no `tokenization_from`: rank 0 fits it on the train split
    into out_dir at the first start (a restart finds it there); every rank then loads it."""
    if tokenization.build(cfg.model).file is None or cfg.tokenization_from is not None:
        return
    cfg.tokenization_from = str(Path(cfg.out_dir))
    error = None
    if d.main and not (Path(cfg.out_dir) / tokenization.build(cfg.model).file).is_file():
        try:
            fit_tokenization(cfg.model, cfg.data.root, cfg.out_dir)
        except (DataError, ValueError) as e:
            error = str(e)
    distributed.raise_if_any(error)
