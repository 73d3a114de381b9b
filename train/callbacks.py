"""Training policies as callbacks, each with the state it keeps across a resume.

The step loop (train/trainer.py) calls, in this order, `before_step` (an exit code ends the run
before the step) and `after_step` with the step's metrics (device tensors; a callback may add
to them; an exit code ends the run). `state_dict` / `load_state_dict` put a callback's state in
the checkpoint under its name, so an interrupted run resumes exactly where it was. `t` is the
Trainer (train/trainer.py; not imported here, which imports this).
"""
from __future__ import annotations

import json
import sys
import time
import torch

from data_pipeline.validation import Averager
from dnachunker.fileio import write_text

from . import checkpoint, distributed
from .signals import StopFlag

EXIT_REQUEUE = 75
EXIT_NONFINITE = 3
RESTARTS = "restarts.json"


class Callback:
    name = ""

    def before_step(self, t) -> int | None:
        return None

    def after_step(self, t, m: dict) -> int | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Requeue(Callback):
    """On a stop signal (on any rank): the newest step checkpointed, a stop that completed no step
    counted in <out_dir>/restarts.json (train.pretrain refuses to start after too many), exit 75."""
    name = "requeue"

    def __init__(self, stop: StopFlag):
        self.flag = stop

    def before_step(self, t) -> int | None:
        if not distributed.any_flag(self.flag.signum is not None, t.d.device):
            return None
        saved = t.step == t.last_saved
        path = checkpoint.step_dir(t.ckpt_root, t.step) if saved else t.save()
        if t.d.main:
            t.bar.close()
            progress = t.step > t.start_step
            stops = 0 if progress else restarts(t.out).get("stops_without_progress", 0) + 1
            last = f"{self.flag.name} at step {t.step}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
            write_text(t.out / RESTARTS, json.dumps({"stops_without_progress": stops, "last": last}))
            where = (f"checkpoint {path} saved" if not saved else
                     f"step {t.step} was already checkpointed ({path})" if t.step else "no step to checkpoint yet")
            print(f"{self.flag.name}: {where}; exiting with code {EXIT_REQUEUE} (a restart resumes from here)"
                  + ("" if progress else f"; no step completed since start ({stops} such stop(s) in a row)"),
                  file=sys.stderr, flush=True)
        t.tracker.finish("KILLED")
        return EXIT_REQUEUE


def restarts(out) -> dict:
    path = out / RESTARTS
    return json.loads(path.read_text()) if path.is_file() else {}


class Throughput(Callback):
    """Base pairs per second of each step (train/bp_per_s) and the tokens seen (resumed)."""
    name = "throughput"

    def __init__(self, bp_per_step: int):
        self.bp_per_step, self.tokens_seen = bp_per_step, 0
        self.last, self.run = time.perf_counter(), Averager()

    def after_step(self, t, m: dict) -> None:
        now = time.perf_counter()
        self.tokens_seen += self.bp_per_step
        m["bp_per_s"] = self.bp_per_step / (now - self.last)
        self.run.add({"train/bp_per_s": m["bp_per_s"]})
        self.last = now

    def state_dict(self) -> dict:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state: dict) -> None:
        self.tokens_seen = state["tokens_seen"]


def _reads(t) -> bool:
    """Steps where the host reads device counters: logging and checkpoint steps (no sync between)."""
    return t.step % t.cfg.tracking.log_every == 0 or t.step == t.cfg.max_steps or t.step % t.cfg.checkpoint.every == 0


class NonFiniteGuard(Callback):
    """Counts, on the device, steps that were non-finite (loss or gradient norm, on any rank) or
    skipped by the optimizer; the host reads the counters at logging and checkpoint steps and
    stops the run (exit 3) after `max_nonfinite` in a row."""
    name = "nonfinite"

    def __init__(self, max_in_a_row: int, device: torch.device):
        self.max_in_a_row = max_in_a_row
        self.run, self.worst, self.total = (torch.zeros((), dtype=torch.long, device=device) for _ in range(3))
        self.read_total = 0  # the total as of the last read, on the host

    def after_step(self, t, m: dict) -> int | None:
        bad = ~(torch.isfinite(m["loss"]) & torch.isfinite(m["grad_norm"]))
        if not t.engine.was_step_applied():  # DeepSpeed's own (host) verdict
            bad = torch.ones_like(bad)
        bad = distributed.any_on_device(bad.long())
        self.run = (self.run + 1) * bad
        self.worst = torch.maximum(self.worst, self.run)
        self.total = self.total + bad
        if not _reads(t):
            return None
        worst, self.read_total = torch.stack([self.worst, self.total]).tolist()  # one host sync
        self.worst = self.run.clone()
        if worst < self.max_in_a_row:
            return None
        if t.d.main:
            t.bar.close()
            print(f"error: {worst} non-finite steps in a row (by step {t.step}); stopping. Lower optim.lr, check "
                  f"the data, or resume from an earlier checkpoint.", file=sys.stderr)
        t.tracker.finish("FAILED")
        return EXIT_NONFINITE

    def state_dict(self) -> dict:
        run, total = torch.stack([self.run, self.total]).tolist()
        return {"in_a_row": run, "total": total}

    def load_state_dict(self, state: dict) -> None:
        self.run = torch.full_like(self.run, state["in_a_row"])
        self.worst, self.total = self.run.clone(), torch.full_like(self.total, state["total"])
        self.read_total = state["total"]


class MetricsLog(Callback):
    """Means over each `tracking.log_every` steps to the tracker (after NonFiniteGuard, whose
    read it reports), and the progress bar's loss."""
    name = "log"

    def __init__(self):
        self.window = Averager()

    def after_step(self, t, m: dict) -> None:
        self.window.add({f"train/{k}": v for k, v in m.items()})
        if t.step % t.cfg.tracking.log_every and t.step != t.cfg.max_steps:
            return
        logged = self.window.pop()
        logged.update({"train/lr": t.engine.get_lr()[0], "train/tokens_seen": t.part(Throughput).tokens_seen,
                       "train/nonfinite_steps": t.part(NonFiniteGuard).read_total})
        t.tracker.log(logged, t.step)
        t.bar.set_postfix(loss=f"{logged['train/loss']:.3f}", bp_s=f"{logged['train/bp_per_s']:.3g}")


class Cadence(Callback):
    """Before the last step: an intermediate export at each of `export_steps` (checkpoint,
    validation, <out_dir>/exports/step<N>/; kept from an earlier start of the run), else
    validation every `val_every` steps; a checkpoint every `checkpoint.every` steps."""
    name = "cadence"

    def after_step(self, t, m: dict) -> None:
        cfg, step = t.cfg, t.step
        if step >= cfg.max_steps:
            return
        if step in cfg.export_steps:
            dest = t.out / "exports" / f"step{step:06d}"
            if not distributed.broadcast((dest / "summary.json").is_file()):  # rank 0's file system decides
                summary = t.export(t.checkpoint(), dest, t.validate())
                if t.d.main:
                    write_text(dest / "summary.json", json.dumps(summary, indent=1))
        elif cfg.val_every and step % cfg.val_every == 0:
            t.validate()
        if step % cfg.checkpoint.every == 0 and t.last_saved != step:
            t.save()
