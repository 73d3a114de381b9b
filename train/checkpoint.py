"""Atomic, self-validating checkpoints on top of DeepSpeed's.

<root>/step_00001000/   DeepSpeed files (model, ZeRO optimizer shards), rng_rank*.pt and
                        trainer_state.json (step, data position, MLflow run id, world size, the
                        resolved config, and the size of every file: the completeness check)
<root>/latest           name of the newest checkpoint, written last

A checkpoint is saved under .tmp-step_N, the trainer state written once every rank has finished,
and the directory renamed; `latest` is replaced after that. resume=auto takes the newest
directory that passes the completeness check, so a truncated or half-copied one is skipped.
A checkpoint written by W ranks is loaded on W' != W ranks through DeepSpeed's universal format
(converted once with ds_to_universal --inject_missing_state, kept in <ckpt>/universal).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dnachunker.fileio import atomic_directory, write_text

STATE = "trainer_state.json"
UNIVERSAL = "universal"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def _sizes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))
            if p.is_file() and UNIVERSAL not in p.relative_to(path).parts}


def is_complete(path: Path) -> bool:
    try:
        state = json.loads((path / STATE).read_text())
        return all((path / f).is_file() and (path / f).stat().st_size == n for f, n in state["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def find_resume(root: Path, resume: str) -> Path | None:
    """resume: 'none', 'auto' (newest complete checkpoint under root, if any) or a path."""
    if resume == "none":
        return None
    if resume != "auto":
        path = Path(resume)
        if not is_complete(path):
            raise ValueError(f"{path}: not a complete checkpoint (missing or truncated files)")
        return path
    for path in sorted(root.glob("step_*"), reverse=True):
        if is_complete(path):
            return path
        print(f"warning: skipping incomplete checkpoint {path}", file=sys.stderr)
    return None


def read_state(path: Path) -> dict:
    return json.loads((path / STATE).read_text())


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save(engine, root: Path, step: int, trainer_state: dict, keep: int) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint directory."""
    rank, world = dist.get_rank(), dist.get_world_size()
    tmp_tag = f".tmp-step_{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / tmp_tag, ignore_errors=True)
    dist.barrier()
    engine.save_checkpoint(str(root), tag=tmp_tag, save_latest=False)
    torch.save(_rng_state(), root / tmp_tag / f"rng_rank{rank:05d}.pt")
    dist.barrier()
    final = step_dir(root, step)
    if rank == 0:
        tmp = root / tmp_tag
        state = {**trainer_state, "step": step, "world_size": world, "files": _sizes(tmp)}
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text(root / "latest", final.name)
        complete = [p for p in sorted(root.glob("step_*")) if is_complete(p)]
        for old in complete[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def prepare_load(path: Path, world_size: int) -> tuple[Path, str, bool]:
    """-> (load_dir, tag, universal). Converts to the universal format when the world size
    changed (rank 0 only; call before deepspeed.initialize, then barrier)."""
    state = read_state(path)
    if state["world_size"] == world_size:
        return path.parent, path.name, False
    return path, UNIVERSAL, True


def convert_universal(path: Path) -> None:
    out = path / UNIVERSAL
    if out.is_dir():  # only ever present complete (atomic rename)
        return
    with atomic_directory(out) as tmp:
        cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(path),
               "--output_folder", str(tmp), "--inject_missing_state", "--num_extract_workers", "1",
               "--num_merge_workers", "1"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{path}: conversion to a universal checkpoint failed:\n{result.stderr[-3000:]}")


def load_rng(path: Path, rank: int) -> bool:
    f = path / f"rng_rank{rank:05d}.pt"
    if not f.is_file():
        return False
    state = torch.load(f, weights_only=False)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    return True
