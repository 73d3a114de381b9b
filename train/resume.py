"""Which checkpoint a run resumes from, and what it takes to open it.

`choose` (every rank, collectively): rank 0 finds the checkpoint (`checkpoint.resume`), refuses a
resume that would train differently unless `checkpoint.allow_changes`, and sets newer checkpoints
aside on a rollback. `open` then checks the files before anything is unpickled and converts to a
universal checkpoint when the world size changed.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from . import checkpoint, distributed
from .config import TrainConfig, training_changes


@dataclasses.dataclass
class Resume:
    path: Path | None = None  # None: a fresh start
    rollback: bool = False  # newer checkpoints were set aside
    changes: list[str] = dataclasses.field(default_factory=list)  # allowed by checkpoint.allow_changes
    state: dict = dataclasses.field(default_factory=dict)  # the trainer state it holds (after open)
    load_dir: Path | None = None
    tag: str | None = None
    universal: bool = False  # resharded for a new world size

    @classmethod
    def choose(cls, cfg: TrainConfig, root: Path, d: distributed.Dist) -> Resume:
        path, set_aside, changes, error = None, [], [], None
        if d.main:
            path = checkpoint.find_resume(root, cfg.checkpoint.resume)
            changes = training_changes(cfg, checkpoint.read_state(path), d.world_size) if path else []
            if changes and not cfg.checkpoint.allow_changes:
                error = (f"{path}: this run would train differently from the checkpoint ({'; '.join(changes)}). "
                         "Resume with the checkpoint's settings (drop those overrides), or set "
                         "checkpoint.allow_changes=true to continue with the new values (recorded in config.yaml "
                         "and the MLflow run)")
            else:
                if changes:
                    print(f"warning: changed on resume, as allowed: {'; '.join(changes)}", file=sys.stderr)
                set_aside = checkpoint.prepare_root(root, path)
        distributed.raise_if_any(error)
        path, rollback, changes = distributed.broadcast((path, bool(set_aside), changes))
        return cls(path, rollback, changes)

    def open(self, d: distributed.Dist) -> Resume:
        if self.path is None:
            return self
        checkpoint.verify(self.path)  # before anything of it is unpickled
        self.state = checkpoint.read_state(self.path)
        self.load_dir, self.tag, self.universal = checkpoint.prepare_load(self.path, d.world_size)
        if self.universal and d.main:
            print(f"world size changed ({self.state['world_size']} -> {d.world_size}): converting {self.path} "
                  f"to a universal checkpoint", file=sys.stderr)
            checkpoint.convert_universal(self.path)
        torch.distributed.barrier()
        if self.universal:  # made here from files that passed, and read by DeepSpeed with weights_only=False
            checkpoint.check_safe(self.path / checkpoint.UNIVERSAL)
        return self

    def note(self) -> str:
        """config.yaml's record of what checkpoint.allow_changes let differ from the checkpoint."""
        if not self.changes:
            return ""
        return (f"# changed on resume from {self.path} (checkpoint.allow_changes):\n"
                + "".join(f"#   {c}\n" for c in self.changes))

    def callback_states(self) -> dict[str, dict]:
        """Each callback's saved state by name; from a checkpoint written before the callbacks
        existed, its "counters" record."""
        if "callbacks" in self.state or not self.state:
            return self.state.get("callbacks", {})
        c = self.state["counters"]
        return {"throughput": {"tokens_seen": c["tokens_seen"]},
                "nonfinite": {"in_a_row": c["nonfinite_in_a_row"], "total": c["nonfinite_total"]}}
