"""DeepSpeed checkpoints read without running code.

DeepSpeed stores a checkpoint as pickles (torch.save), and loads them with
torch.load(weights_only=False): a pickle may name any callable, and unpickling calls it. Here
every pickle file of a checkpoint is first read with torch.load(weights_only=True), whose
unpickler builds only tensors, plain containers and the classes on SAFE_GLOBALS (the three that
DeepSpeed's ZeRO stages 1-3 store, in fp32 and both bf16 modes); a file naming anything else is
refused, naming the file and the global, before DeepSpeed opens any of them. DeepSpeed's own
checkpoint engine is then replaced by one that loads the same way (`checkpoint_engine`), and
the universal conversion reads only files that passed. Memory-mapped: no tensor is read to check.
"""
from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path

import torch

SAFE_GLOBALS = ("deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.zero.config.ZeroStageEnum",
                "deepspeed.utils.tensor_fragment.fragment_address")


class UnsafeCheckpoint(ValueError):
    """A checkpoint file that would run code, or is not a torch pickle at all."""


def _globals() -> list:
    out = []
    for name in SAFE_GLOBALS:
        module, _, attr = name.rpartition(".")
        out.append(getattr(importlib.import_module(module), attr))
    return out


def load(path: str | Path, map_location=None, mmap: bool = False):
    """torch.load restricted to tensors, containers and SAFE_GLOBALS; UnsafeCheckpoint otherwise."""
    try:
        with torch.serialization.safe_globals(_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e))
        what = f"it names {found[1]}, which is not tensors, plain data or one of DeepSpeed's checkpoint classes" \
            if found else str(e).strip().splitlines()[0][:200]
        raise UnsafeCheckpoint(f"{path}: refused: loading it would run code ({what}); a checkpoint you did not "
                               f"write can carry a payload: start from its export with init_from=<export>") from None
    except (RuntimeError, OSError, EOFError) as e:
        raise UnsafeCheckpoint(f"{path}: not a readable torch checkpoint file ({str(e).strip().splitlines()[0][:200]})"
                               ) from None


def check(files: list[Path]) -> None:
    """Read every file as `load` does (memory-mapped where the file allows), raising on the first refused."""
    for f in files:
        try:
            load(f, map_location="cpu", mmap=True)
        except UnsafeCheckpoint:
            raise
        except Exception:  # a legacy (non-zip) file cannot be memory-mapped: read it whole
            load(f, map_location="cpu")


def pickles(path: Path) -> list[Path]:
    """Every torch pickle of a checkpoint directory (its universal conversion included)."""
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".pt", ".pth", ".bin"))


def checkpoint_engine(config):
    """DeepSpeed's torch checkpoint engine, loading with `load` instead of weights_only=False (for
    engine.checkpoint_engine; DeepSpeed is imported only here)."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class SafeCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            return load(path, map_location=map_location)
    return SafeCheckpointEngine(config)
