"""An export: a directory a trained model is saved to and loaded from. Tensors and text only.

  config.yaml, model.safetensors   the native files (the model config, the weights)
  bpe.json, ...                    the fitted tokenization's file, if it has one
  config.json, tokenizer*.json     what Hugging Face Transformers reads (export.hf)
  README.md                        the model card (export.card)

Every check runs before a model is built: the files are there, the config is bounded, the config's
shapes match the weights' header, the parameter names match this version's, no NaN.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .. import tokenization
from ..config import DNAChunkerConfig
from ..fileio import replace_files
from . import hf
from .card import model_card

# parameters earlier versions had, and why they are gone (an old export or checkpoint is refused)
REMOVED = {"norm.weight": "the second final norm after the stage-0 decoder's own (DNAChunker.norm) was removed: "
                          "the decoder's final norm is the only one, as in H-Net"}


def save(model: nn.Module, directory: str | Path, training: dict | None = None, name: str | None = None,
         remote_code: bool = False) -> Path:
    """Write config.yaml + model.safetensors (+ the fitted tokenization's file, e.g. bpe.json), the
    Hugging Face files (export.hf; with remote_code, its two Python files for the Hub too) and the
    model card README.md (with what `training` tells: export.card) into `directory`, replacing only
    those files (others there stay, but Python files of an earlier export are removed); the weights
    go in last (dnachunker.fileio.replace_files)."""
    for stale in hf.REMOTE_CODE if not remote_code else ():
        (Path(directory) / stale).unlink(missing_ok=True)
    with replace_files(directory, last="model.safetensors") as tmp:
        (tmp / "README.md").write_text(model_card(model.cfg, model.num_parameters(), name or Path(directory).name,
                                                  training, remote_code))
        (tmp / "config.yaml").write_text(model.cfg.to_yaml())
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.tokenization.save(tmp)
        hf.write(tmp, model.cfg, remote_code)  # what Transformers' Auto classes read
    return Path(directory)


def load(cls, directory: str | Path, map_location: str | torch.device = "cpu"):
    """cls (DNAChunker) built from the export at `directory`, its weights and tokenization loaded."""
    directory = Path(directory)
    for name in ("config.yaml", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: not a DNAChunker export (missing {name})" + _export_hint(directory))
    cfg = DNAChunkerConfig.load(directory / "config.yaml")  # bounded: builds nothing absurd
    check_shapes(cfg, directory / "model.safetensors", cls)  # before anything is built
    model = cls(cfg)
    load_weights(model, directory, map_location)
    model.tokenization = tokenization.load(model.cfg, directory)
    return model.to(map_location)


def load_weights(model: nn.Module, directory: str | Path, map_location: str | torch.device = "cpu") -> None:
    """The weights of an export into `model` (model.safetensors: tensors only, no code), names checked."""
    weights = Path(directory) / "model.safetensors"
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as e:
        raise ValueError(f"{weights}: cannot read weights: {e}") from None
    check_state_keys(model, state.keys(), weights)
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{weights}: tensor {name} holds NaN or infinite values "
                             f"({int((~torch.isfinite(t)).sum())} of {t.numel()}): refusing weights that "
                             "would give NaN embeddings and scores")
    model.load_state_dict(state, strict=True)


def _export_hint(directory: Path) -> str:
    """What a user probably meant when pointing at a training run or one of its checkpoints."""
    if (directory / "export" / "model.safetensors").is_file() or (directory / "checkpoints").is_dir():
        return f": that is a training run's out_dir; use {directory / 'export'}"
    if (directory / "trainer_state.json").is_file():
        return (f": that is a DeepSpeed checkpoint (code, not weights: it is loaded only to resume training); "
                f"use <out_dir>/export, here {directory.parent.parent / 'export'}")
    return ""


def check_shapes(cfg: DNAChunkerConfig, weights: Path, build) -> None:
    """The shapes config.yaml's model would have (built on the meta device: no memory) against the
    safetensors header (read without its tensors): a config that does not fit its weights is
    refused, naming the tensor, before anything is built for real."""
    from safetensors import safe_open
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{weights}: cannot read weights: {e}") from None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build(cfg).state_dict().items()}
    for k in sorted(set(found) & set(expected)):
        if found[k] != expected[k]:
            raise ValueError(f"{weights}: tensor {k} has shape {list(found[k])}, where config.yaml's model has "
                             f"{list(expected[k])}: the config and the weights do not belong together")


def check_state_keys(model: nn.Module, keys, source) -> None:
    """Refuse weights whose parameter names differ from the model's, naming what changed."""
    expected, found = set(model.state_dict()), set(keys)
    if expected == found:
        return
    gone = [f"{k} ({REMOVED[k]})" if k in REMOVED else k for k in sorted(found - expected)]
    missing = sorted(expected - found)
    raise ValueError(f"{source}: these weights do not fit this version's model"
                     + (f"; not in the model: {', '.join(gone)}" if gone else "")
                     + (f"; missing: {', '.join(missing)}" if missing else "")
                     + ". They were written by an earlier DNAChunker or for another config: retrain, or load "
                       "them with the version that wrote them")
