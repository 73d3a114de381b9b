"""The trainer: its parts built once (resume, data, model and DeepSpeed engine, tracker,
policies), one optimizer step, and the loop that hands each step to the policies
(train/callbacks.py).

One resume state over named parts: a checkpoint's trainer state holds the data loader's
position under "data" and each policy's state under its name in "callbacks".
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import torch

from data_pipeline.loader import PretrainLoader
from data_pipeline.validation import Averager, step_metrics, validation_means
from dnachunker.configlib import redact, to_yaml
from dnachunker.fileio import write_text

from . import build, checkpoint, distributed, optim, safe_load
from .callbacks import RESTARTS, Cadence, Callback, MetricsLog, NonFiniteGuard, Requeue, Throughput
from .config import TrainConfig
from .distributed import SetupError
from .resume import Resume
from .signals import StopFlag
from .tracking import Tracker


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _forward(engine, b: dict):
    """The model on a batch; `valid` only where the batch has padding (the collate knows): without
    it the model knows there is none and skips asking the device."""
    return engine(b["input_ids"], b["valid"] if b["padded"] else None, b["labels"], b["weight"], b.get("boundaries"),
                  b["species"])


class Trainer:
    def __init__(self, cfg: TrainConfig, d: distributed.Dist, stop: StopFlag):
        from tqdm import tqdm

        self.cfg, self.d = cfg, d
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        resume = Resume.choose(cfg, self.ckpt_root, d)
        cfg.grad_accum = optim.grad_accum(cfg, d.world_size)
        build.resolve_tokenization(cfg, d)
        if d.main:
            write_text(self.out / "config.yaml", to_yaml(cfg) + resume.note())
        resume.open(d)
        cuts = self._loaders()  # the data first: a wrong data.root fails before the model and DeepSpeed
        self.engine = self._engine(cuts, resume)
        self.step = self.last_saved = resume.state.get("step", 0)  # step 0 is the seeded initialisation
        self.start_step = self.step
        self.tracker = self._tracker(resume)
        bp_per_step = self.train_loader.global_batch * cfg.grad_accum * self.train_loader.split.length
        self.callbacks: list[Callback] = [Requeue(stop), Throughput(bp_per_step),
                                          NonFiniteGuard(cfg.max_nonfinite, d.device), MetricsLog(), Cadence()]
        for cb in self.callbacks:
            if cb.name in (states := resume.callback_states()):
                cb.load_state_dict(states[cb.name])
        self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc="pretrain", disable=not d.main,
                        dynamic_ncols=True)
        if d.main:
            print(f"threads per rank: torch {torch.get_num_threads()}, data loader workers "
                  f"{cfg.data.num_workers}", flush=True)

    def _loaders(self):
        """The training and validation loaders, checked against the model config -> the fixed cuts
        of a fitted tokenization (None for the learned one)."""
        cfg, dc, d = self.cfg, self.cfg.data, self.d
        try:
            cuts = build.fitted_tokenization(cfg)
        except (FileNotFoundError, ValueError) as e:
            raise SetupError(f"tokenization_from: {e}") from None
        loader = functools.partial(PretrainLoader, dc.root, micro_batch_size=dc.micro_batch_size, rank=d.rank,
                                   world_size=d.world_size, seed=dc.seed, mask_prob=dc.mask_prob,
                                   tokenization=cuts, repeat_weight=dc.repeat_weight)
        self.train_loader = loader("train", num_workers=dc.num_workers, train=True, rc_augment=dc.rc_augment)
        if self.train_loader.split.length > cfg.model.max_len:
            raise SetupError(f"{dc.root}: windows of {self.train_loader.split.length} bp are "
                             f"longer than model.max_len={cfg.model.max_len}; the export would tell embed and "
                             f"score-variants to use windows the model never saw. Set model.max_len >= "
                             f"{self.train_loader.split.length}, or shard with a shorter window.length")
        self.val_loader = loader("valid", num_workers=0, train=False)
        genomes = self.train_loader.split.genomes
        if cfg.model.species and cfg.model.species != genomes:
            raise SetupError(f"model.species {cfg.model.species} must be the genomes of {dc.root} in its corpus.json "
                             f"order: {genomes or 'it is a single shard set, not a corpus'}")
        return cuts

    def _engine(self, cuts, resume: Resume):
        """The model (warm-started from `init_from` on a fresh start) in a DeepSpeed engine, loaded
        from the checkpoint on a resume, with the loader's position and the RNGs."""
        import deepspeed

        cfg, d = self.cfg, self.d
        model = build.init_model(cfg)
        model.tokenization = cuts
        if resume.path is None and cfg.init_from:  # warm start: the export's weights, a fresh optimizer
            try:
                model.load_weights(cfg.init_from)
            except ValueError as e:
                raise SetupError(f"init_from: {e}") from None
            if d.main:
                print(f"weights from {cfg.init_from} (init_from); optimizer, schedule and data order start afresh",
                      file=sys.stderr)
        engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=optim.param_groups(model, cfg.optim.weight_decay),
            config=optim.deepspeed_config(cfg, resume.universal),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, optim.lr_lambda(cfg)))
        engine.checkpoint_engine = safe_load.checkpoint_engine(engine._config)  # loads run no code
        if resume.path is not None:
            engine.load_checkpoint(str(resume.load_dir), tag=resume.tag, load_module_strict=True)
            optim.apply_optim(engine, cfg)
            self.train_loader.load_state_dict(resume.state["data"])
            if not resume.universal:
                checkpoint.load_rng(resume.path, d.rank)
            if d.main:
                print(f"resumed from {resume.path} at step {resume.state['step']}", file=sys.stderr)
        return engine

    def _tracker(self, resume: Resume) -> Tracker:
        """The MLflow run: the checkpoint's own, or after a rollback a new one tagged with the run
        it branches from (steps after the rollback point are a new history)."""
        state = resume.state
        run_id = None if resume.rollback else state.get("mlflow_run_id")
        tags = {"dnachunker.rollback_of": state.get("mlflow_run_id") or "",
                "dnachunker.resumed_from": resume.path.name if resume.path else "scratch"} if resume.rollback else None
        tracker = Tracker(self.d.main, self.cfg, run_id=run_id, tags=tags)
        if resume.changes:
            tracker.tag(f"dnachunker.changed_at_step_{self.step}", "; ".join(resume.changes))
        return tracker

    def part(self, kind: type) -> Callback:
        return next(cb for cb in self.callbacks if isinstance(cb, kind))

    def train_step(self, data) -> dict[str, torch.Tensor]:
        """One optimizer step (grad_accum micro-batches) -> its mean metrics, as device tensors: the
        step itself waits on the device only where the chunk tensors are sized (one sync per stage)."""
        metrics = Averager()
        for _ in range(self.cfg.grad_accum):
            out = _forward(self.engine, _to(next(data), self.d.device))
            self.engine.backward(out.loss)
            self.engine.step()
            metrics.add(step_metrics(out))
        self.step += 1
        m = metrics.mean()
        grad_norm = self.engine.get_global_grad_norm()  # a float, a device tensor, or None
        m["grad_norm"] = (grad_norm.detach().float().reshape(()) if torch.is_tensor(grad_norm) else
                          torch.full((), float("nan") if grad_norm is None else grad_norm, device=self.d.device))
        return m

    def run(self, data) -> int:
        """Steps to `max_steps`, each handed to the policies (an exit code from one ends the run),
        then the final checkpoint, validation, export and summary -> the exit code."""
        while self.step < self.cfg.max_steps:
            for cb in self.callbacks:
                if (code := cb.before_step(self)) is not None:
                    return code
            m = self.train_step(data)
            self.bar.update()
            for cb in self.callbacks:
                if (code := cb.after_step(self, m)) is not None:
                    return code
        return self.finish()

    def finish(self) -> int:
        final = self.checkpoint()
        self.bar.close()
        valid = self.validate()
        if self.d.main:
            summary = {**self.export(final, self.out / "export", valid, self.part(Throughput).run.pop()),
                       "torch_threads": torch.get_num_threads(), "data_workers": self.cfg.data.num_workers}
            write_text(self.out / "summary.json", json.dumps(summary, indent=1))
            print(_summary_line(self.step, summary, self.out, self.tracker), file=sys.stderr)
            (self.out / RESTARTS).unlink(missing_ok=True)
        self.tracker.finish("FINISHED")
        return 0

    def save(self) -> Path:
        """A checkpoint of this step: the engine, the loader's position and every policy's state."""
        state = {"data": self.train_loader.state_dict(), "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks},
                 "mlflow_run_id": self.tracker.run_id, "config": to_yaml(self.cfg)}
        state = distributed.broadcast(state)  # rank 0 holds the MLflow run id
        self.last_saved = self.step
        return checkpoint.save(self.engine, self.ckpt_root, self.step, state, self.cfg.checkpoint.keep)

    def checkpoint(self) -> Path:
        """This step's checkpoint, saved unless it already is."""
        return self.save() if self.last_saved != self.step else checkpoint.step_dir(self.ckpt_root, self.step)

    def validate(self) -> dict[str, float]:
        """valid/ means over `val_batches` batches, over every rank (data_pipeline.validation),
        logged at this step."""
        self.engine.eval()
        try:
            valid = validation_means(functools.partial(_forward, self.engine), self.val_loader, self.cfg.val_batches,
                                     self.d.device, lambda values: distributed.means(values, self.d.device))
        finally:
            self.engine.train()
        self.tracker.log(valid, self.step)
        return valid

    def export(self, ckpt: Path, dest: Path, valid: dict, extra: dict | None = None) -> dict:
        """Rank 0: the checkpoint's weights -> `dest` with a model card; -> the summary it records."""
        if not self.d.main:
            return {}
        summary = {"step": self.step, **valid, **(extra or {}), "tokens_seen": self.part(Throughput).tokens_seen,
                   "nonfinite_steps": self.part(NonFiniteGuard).state_dict()["total"],
                   "mlflow_run_id": self.tracker.run_id}
        card = {**summary, **self.train_loader.split.provenance(), "repeat_weight": self.cfg.data.repeat_weight}
        build.export(self.cfg, ckpt, dest, card)
        return summary


def _summary_line(step: int, summary: dict, out: Path, tracker) -> str:
    """The run's last words: how far it went, how good it is, where everything is."""
    loss = summary.get("valid/mlm_loss")
    where = ", ".join(str(out / f) for f in ("metrics.jsonl", "summary.json", "train.log") if (out / f).exists())
    return (f"finished {step} steps ({summary.get('tokens_seen', 0):,} tokens)"
            + (f"; validation MLM loss {loss:.4f}, accuracy {summary['valid/mlm_accuracy']:.3f}" if loss else "")
            + f"; weights exported to {out / 'export'}\nmetrics: {where}"
            + (f"; MLflow: {redact(tracker.uri)}, run {tracker.run_id}" if getattr(tracker, "uri", None) else ""))
