"""Atomic, self-validating checkpoints on top of DeepSpeed's.

<root>/step_00001000/   DeepSpeed files (model, ZeRO optimizer shards), rng_rank*.json and
                        trainer_state.json (step, write order `seq`, data position, MLflow run id,
                        world size, the resolved config, the size of every file as *every* rank
                        saw it: the completeness check, and the SHA-256 of every file)
<root>/latest           name of the newest checkpoint, written last
<root>/set_aside/<time>-from-<name>/   checkpoints newer than a rollback point (never deleted)

A checkpoint is saved under .tmp-step_N by all ranks; each rank then lists what it sees there,
rank 0 checks that the views agree and that every rank's optimizer shard and RNG state is
present, writes the trainer state and renames the directory; `latest` is replaced after that.
A complete checkpoint is never removed before its replacement is complete. Retention keeps the
newest `keep` by write order, and never the one `latest` names or the only complete one.
resume=auto takes the newest complete checkpoint (a truncated or half-copied one is skipped).
Resuming from an older checkpoint (rollback), or starting afresh in a directory that has
checkpoints, moves the newer ones to set_aside/ and says so, so two histories never mix.
A checkpoint written by W ranks is loaded on W' != W ranks through DeepSpeed's universal format
(converted once with ds_to_universal --inject_missing_state, kept in <ckpt>/universal).

Trust: DeepSpeed's own files are pickles, which DeepSpeed loads with torch.load(weights_only=False),
so a forged one could run code. Resuming therefore reads every pickle of the checkpoint with
torch.load(weights_only=True) and an allow-list of DeepSpeed's checkpoint classes first
(train/safe_load.py), refusing a file that names anything else before DeepSpeed opens any, and
DeepSpeed's checkpoint engine loads the same way. It also verifies every file's SHA-256 against the
one recorded at save, which catches corruption and edits (the record sits in the same folder, so
it is no defence against forgery, which the safe load is). What this module writes itself is JSON.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dnachunker.errors import describe
from dnachunker.fileio import atomic_directory, file_sha256, write_text

from . import distributed, safe_load

STATE = "trainer_state.json"
UNIVERSAL = "universal"
SET_ASIDE = "set_aside"
TMP_PREFIX = ".tmp-step_"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def _sizes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))
            if p.is_file() and UNIVERSAL not in p.relative_to(path).parts}


def _missing_rank_files(files, world: int) -> list[str]:
    """Per-rank files a checkpoint of `world` ranks must have: one ZeRO optimizer shard and one
    RNG state per rank."""
    shards = [f for f in files if f.endswith("optim_states.pt")]
    missing = [_rng_file(r) for r in range(world) if _rng_file(r) not in files]
    if len(shards) != world:
        missing.append(f"{world - len(shards)} of {world} ZeRO optimizer shards")
    return missing


def is_complete(path: Path) -> bool:
    try:
        state = json.loads((path / STATE).read_text())
        files = state["files"]
        return (all((path / f).is_file() and (path / f).stat().st_size == n for f, n in files.items())
                and not _missing_rank_files(files, state["world_size"]))
    except (OSError, ValueError, KeyError):
        return False


def read_state(path: Path) -> dict:
    return json.loads((path / STATE).read_text())


def _seq(path: Path) -> int:
    """Write order (checkpoints from before it was recorded: their step)."""
    state = read_state(path)
    return state.get("seq", state["step"])


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under root, oldest written first."""
    return sorted((p for p in root.glob("step_*") if is_complete(p)), key=_seq)


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
        if not is_complete(path):
            print(f"warning: skipping incomplete checkpoint {path}", file=sys.stderr)
    complete = complete_checkpoints(root)
    return complete[-1] if complete else None


def prepare_root(root: Path, resume: Path | None) -> list[Path]:
    """Rank 0, at start-up, with the out_dir lock held: remove the temporary directories of
    interrupted saves, and set aside every checkpoint written after `resume` (all of them when
    starting afresh). Returns the checkpoints set aside."""
    for old in root.glob(".replaced-step_*"):  # a save stopped between its two renames
        final = root / old.name[len(".replaced-"):]
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"removed {tmp} (a save that did not finish)", file=sys.stderr)
    if not root.is_dir():
        return []
    if resume is not None and resume.resolve().parent == root.resolve():
        newer = [p for p in complete_checkpoints(root) if _seq(p) > _seq(resume)]
    else:  # afresh, or from another run's checkpoint: everything here belongs to another history
        newer = [p for p in root.glob("step_*") if p.is_dir()]
    if not newer:
        return []
    dest = root / SET_ASIDE / f"{time.strftime('%Y%m%dT%H%M%S')}-from-{resume.name if resume else 'scratch'}"
    dest.mkdir(parents=True)
    for p in sorted(newer):
        os.replace(p, dest / p.name)
    if resume is not None:
        write_text(root / "latest", resume.name)
    else:
        (root / "latest").unlink(missing_ok=True)
    print(f"rollback: {'resuming from ' + resume.name if resume else 'starting afresh'}; {len(newer)} newer "
          f"checkpoint(s) ({', '.join(p.name for p in sorted(newer))}) moved to {dest} (not deleted)", file=sys.stderr)
    return newer


def retain(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints by write order; never the one
    `latest` names, never the newest. Returns what was deleted."""
    complete = complete_checkpoints(root)
    latest = (root / "latest").read_text().strip() if (root / "latest").is_file() else None
    doomed = [p for p in complete[:-max(keep, 1)] if p.name != latest]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank:05d}.json"


def _bytes(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _rng_state() -> dict:
    """Every RNG of this rank as JSON (no pickle: loading it runs no code)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": _bytes(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = _bytes(torch.cuda.get_rng_state())
    return state


def _hashes(path: Path, files) -> dict[str, str]:
    """Collective: SHA-256 of `files` under path, each rank hashing its share."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {f: file_sha256(path / f) for f in sorted(files)[rank::world]}
    return {f: h for part in distributed.gather(mine) for f, h in part.items()}


def verify(path: Path) -> None:
    """Collective: every file of the checkpoint against the SHA-256 recorded at save; raises
    SetupError naming the first file that differs (corrupted or edited), before any is loaded."""
    state = read_state(path)
    recorded = state.get("sha256")
    error = None
    if recorded is None:
        error = (f"{path}: no SHA-256 recorded (written by an earlier version of DNAChunker); it cannot be "
                 f"verified, and is not resumed. Start afresh, or from its weights with init_from=<export>")
    else:
        now = _hashes(path, recorded)
        changed = sorted(f for f in recorded if now.get(f) != recorded[f])
        if changed:
            error = (f"{path / changed[0]}: SHA-256 differs from the one recorded at save: corrupted or edited "
                     f"({len(changed)} file(s) changed: {', '.join(changed[:5])}); not resuming from it. Resume from "
                     f"another checkpoint with checkpoint.resume=<path>, or checkpoint.resume=none")
    distributed.raise_if_any(error if dist.get_rank() == 0 else None)
    check_safe(path)


def check_safe(path: Path) -> None:
    """Collective: every pickle of the checkpoint read without running code (train/safe_load.py),
    each rank its share; raises SetupError naming the first refused file."""
    rank, world = dist.get_rank(), dist.get_world_size()
    error = None
    try:
        safe_load.check(safe_load.pickles(path)[rank::world])
    except safe_load.UnsafeCheckpoint as e:
        error = str(e)
    distributed.raise_if_any(error)


def save(engine, root: Path, step: int, trainer_state: dict, keep: int) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint directory."""
    rank, world = dist.get_rank(), dist.get_world_size()
    tmp = root / f"{TMP_PREFIX}{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    failed = None
    try:
        engine.save_checkpoint(str(root), tag=tmp.name, save_latest=False)
        write_text(tmp / _rng_file(rank), json.dumps(_rng_state()))
    except (OSError, RuntimeError) as e:  # a full disk surfaces as either (torch.save: RuntimeError)
        reason = describe(e) if isinstance(e, OSError) else str(e).strip().splitlines()[0]
        failed = (f"{tmp}: writing the checkpoint of step {step} failed on rank {rank} ({reason}; a full disk?). "
                  f"Nothing of it is kept; the newest complete checkpoint stays the one to resume from")
    errors = [e for e in distributed.gather(failed) if e]
    if errors:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise distributed.SetupError(errors[0])
    views = distributed.gather(_sizes(tmp))  # what every rank sees of the checkpoint
    hashes = _hashes(tmp, views[0])
    final = step_dir(root, step)
    error = None
    if rank == 0:
        differ = [r for r, v in enumerate(views) if v != views[0]]
        missing = _missing_rank_files(views[0], world)
        if differ or missing:
            error = (f"{tmp}: incomplete checkpoint: " + (f"ranks {differ} see other files than rank 0" if differ
                     else "missing " + ", ".join(missing)) + "; out_dir must be one directory shared by all ranks")
        else:
            seqs = [_seq(p.parent) for p in root.rglob(STATE)]  # set-aside checkpoints included
            state = {**trainer_state, "step": step, "seq": max(seqs, default=0) + 1, "world_size": world,
                     "files": views[0], "sha256": hashes}
            (tmp / STATE).write_text(json.dumps(state, indent=1))
            old = root / f".replaced-{final.name}"
            if final.exists():  # keep the complete one until its replacement is in place
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            write_text(root / "latest", final.name)
            retain(root, keep)
    distributed.raise_if_any(error)
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
    f = path / _rng_file(rank)
    if not f.is_file():
        return False
    state = json.loads(f.read_text())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_tensor(state["cuda"]))
    return True
