"""Pretrain DNAChunker with DeepSpeed ZeRO.

    python -m train.pretrain --config configs/pretrain/tiny_chr20.yaml [key=value ...]
    torchrun --nproc-per-node 2 -m train.pretrain --config ...       # or: srun python -m train.pretrain ...

Exit codes: 0 finished; 75 stopped by SIGTERM/SIGUSR1/SIGUSR2 with the newest step checkpointed
(resumable); 4 refused to start after `max_stops_without_progress` stops in a row that completed no
step (a requeue loop); 3 stopped after `max_nonfinite` non-finite steps in a row; 2 bad config or
data, out_dir in use by another run, or out_dir not shared by all ranks.
"""
from __future__ import annotations

from .signals import StopFlag, early_stop_flag

# Run as a program: catch stop signals before torch and DeepSpeed load (seconds during which a
# signal's default action would kill the process without a checkpoint).
if __name__ == "__main__":
    early_stop_flag()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import dnachunker  # noqa: E402,F401  (before torch: it sets how OpenMP threads wait)
import torch  # noqa: E402

from data_pipeline.errors import DataError  # noqa: E402
from data_pipeline.loader import PretrainLoader  # noqa: E402
from data_pipeline.validation import Averager, step_metrics, validation_means  # noqa: E402
from dnachunker.configlib import redact, to_yaml  # noqa: E402
from dnachunker.errors import describe  # noqa: E402
from dnachunker.fileio import write_text  # noqa: E402
from dnachunker.ops import kernels  # noqa: E402

from . import build, checkpoint, distributed, optim, preflight, safe_load  # noqa: E402

from .config import TrainConfig, load_config, training_changes  # noqa: E402
from .distributed import SetupError  # noqa: E402
from .lock import LockError, RunLock  # noqa: E402
from .tracking import Tracker  # noqa: E402

EXIT_REQUEUE = 75
EXIT_NO_PROGRESS = 4
EXIT_NONFINITE = 3
EXIT_BAD_INPUT = 2
RESTARTS = "restarts.json"


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _forward(engine, b: dict):
    """The model on a batch; `valid` only where the batch has padding (the collate knows): without
    it the model knows there is none and skips asking the device."""
    return engine(b["input_ids"], b["valid"] if b["padded"] else None, b["labels"], b["weight"], b.get("boundaries"),
                  b["species"])


def validate(engine, loader: PretrainLoader, batches: int, d: distributed.Dist) -> dict[str, float]:
    """valid/ means over `batches` batches, over every rank (data_pipeline.validation)."""
    engine.eval()
    try:
        return validation_means(functools.partial(_forward, engine), loader, batches, d.device,
                                lambda values: distributed.means(values, d.device))
    finally:
        engine.train()


def main(argv: list[str] | None = None, prog: str = "python -m train.pretrain") -> int:
    from dnachunker.cli import parser as make_parser
    parser = make_parser(prog, __doc__)
    parser.add_argument("--config", help="YAML pretraining config (configs/pretrain/)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    parser.add_argument("--check", action="store_true", help="check everything the run needs (train.preflight), "
                                                                   "print it, exit 0 (all ok) or 2; train nothing")
    parser.add_argument("--world", type=int, default=None, help="with --check: ranks the job will have")
    parser.add_argument("--nodes", type=int, default=None, help="with --check: nodes the job will have")
    parser.add_argument("--gpus-per-node", type=int, default=None, help="with --check: GPUs the job asks per node")
    parser.add_argument("--tasks-per-node", type=int, default=None, help="with --check: tasks per node")
    parser.add_argument("--peak-tflops", type=float, default=None, help="with --check: GPU peak for the step-time "
                                                                        "projection (default: H100 bf16)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="everything on the console; by default the libraries' own output (DeepSpeed's set-up, op "
                             "builds, checkpoint conversion) goes to <out_dir>/train.log")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=100 data.micro_batch_size=4")
    args = parser.parse_intermixed_args(argv)
    stop = early_stop_flag()
    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    env = os.environ
    world = args.world or int(env.get("WORLD_SIZE") or env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
    nodes = args.nodes or int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or 1)
    if args.check:
        findings = preflight.run(cfg, world, nodes, args.gpus_per_node, args.tasks_per_node,
                                 args.peak_tflops and args.peak_tflops * 1e12)
        print("\n".join(map(str, findings)))
        failed = [f for f in findings if f.level == "FAIL"]
        print(f"{len(failed)} check(s) failed" if failed else "every check passed", file=sys.stderr)
        return EXIT_BAD_INPUT if failed else 0
    failed = [f for f in preflight.at_start(cfg, world, nodes) if f.level == "FAIL"]
    if failed:  # before DeepSpeed is set up: seconds, not minutes
        print("\n".join(f"error: {f.detail}" for f in failed), file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.verbose:
        _quiet(Path(cfg.out_dir))
    d = distributed.setup()
    lock = None
    try:
        check_kernels(d)
        lock = _claim_out_dir(cfg, d)
        return _train(cfg, d, stop)
    except (DataError, SetupError, LockError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return EXIT_NO_PROGRESS if isinstance(e, NoProgress) else EXIT_BAD_INPUT
    finally:
        if lock is not None:
            lock.release()
        distributed.teardown()


class NoProgress(SetupError):
    pass


def _quiet(out: Path) -> None:
    """The console keeps this project's lines (on stderr: progress, warnings, errors, the summary);
    standard output, where DeepSpeed, its op builds and zero_to_fp32 print, is appended to
    <out_dir>/train.log, as are the details this project writes there; MLflow logs warnings only."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported, later
    sys.stdout.flush()
    fd = os.open(Path(out) / "train.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.close(fd)


def check_kernels(d: distributed.Dist) -> None:
    """Every rank says which implementation each op runs (dnachunker.ops.kernels); on a CUDA
    device a kernel that did not import stops the run (SetupError naming it and its import error),
    unless DNACHUNKER_KERNELS=torch chose the PyTorch paths."""
    print(f"rank {d.rank} ({d.device}): " + "; ".join(f"{k}: {v}" for k, v in kernels.report().items()), flush=True)
    if d.device.type == "cuda":
        try:
            kernels.require()
        except kernels.KernelError as e:
            raise SetupError(f"rank {d.rank}: {e}") from None


def _claim_out_dir(cfg: TrainConfig, d: distributed.Dist) -> RunLock | None:
    """Collective start-up checks: one run per out_dir (rank 0 takes the lock), one directory
    shared by every rank, and no requeue loop."""
    out = Path(cfg.out_dir)
    lock, error = None, None
    if d.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out).acquire()
        except (LockError, OSError) as e:  # in use; or read-only, full, not permitted
            error = describe(e)
    distributed.raise_if_any(error)
    distributed.check_shared_dir(out)
    if d.main:
        stops = _restarts(out).get("stops_without_progress", 0)
        if stops >= cfg.max_stops_without_progress:
            error = (f"{out / RESTARTS}: the last {stops} runs stopped before completing a step "
                     f"({_restarts(out).get('last')}); not starting again. Usually the job's time limit is "
                     f"shorter than the time-limit signal's lead (--signal=B:USR1@N) plus start-up, or the job "
                     f"is preempted as soon as it starts. Fix that, delete {out / RESTARTS} and resubmit")
    errors = [e for e in distributed.gather(error) if e]
    if errors:
        if lock is not None:
            lock.release()
        raise NoProgress(errors[0])
    return lock


def _restarts(out: Path) -> dict:
    path = out / RESTARTS
    return json.loads(path.read_text()) if path.is_file() else {}


def _train(cfg: TrainConfig, d: distributed.Dist, stop: StopFlag) -> int:
    trainer = Trainer(cfg, d)
    data = iter(trainer.train_loader)
    try:
        return trainer.run(data, stop)
    finally:
        data.close()  # shuts the DataLoader workers down now (they ignore stop signals)
        trainer.bar.close()


class Trainer:
    def __init__(self, cfg: TrainConfig, d: distributed.Dist):
        import deepspeed
        from tqdm import tqdm

        self.cfg, self.d = cfg, d
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        resume, set_aside, error = None, [], None
        if d.main:
            resume = checkpoint.find_resume(self.ckpt_root, cfg.checkpoint.resume)
            changes = training_changes(cfg, checkpoint.read_state(resume), d.world_size) if resume else []
            if changes and not cfg.checkpoint.allow_changes:
                error = (f"{resume}: this run would train differently from the checkpoint ({'; '.join(changes)}). "
                         "Resume with the checkpoint's settings (drop those overrides), or set "
                         "checkpoint.allow_changes=true to continue with the new values (recorded in config.yaml "
                         "and the MLflow run)")
            else:
                if changes:
                    print(f"warning: changed on resume, as allowed: {'; '.join(changes)}", file=sys.stderr)
                set_aside = checkpoint.prepare_root(self.ckpt_root, resume)
        distributed.raise_if_any(error)
        resume, rollback, changes = distributed.broadcast((resume, bool(set_aside), changes if d.main else None))
        self.changes = changes or []
        cfg.grad_accum = optim.grad_accum(cfg, d.world_size)
        build.resolve_tokenization(cfg, d)
        if d.main:
            write_text(self.out / "config.yaml", to_yaml(cfg) + _changes_note(self.changes, resume))
        state, universal = {}, False
        if resume is not None:
            checkpoint.verify(resume)  # before anything of it is unpickled
            state = checkpoint.read_state(resume)
            load_dir, tag, universal = checkpoint.prepare_load(resume, d.world_size)
            if universal and d.main:
                print(f"world size changed ({state['world_size']} -> {d.world_size}): converting {resume} "
                      f"to a universal checkpoint", file=sys.stderr)
                checkpoint.convert_universal(resume)
            torch.distributed.barrier()
            if universal:  # made here from files that passed, and read by DeepSpeed with weights_only=False
                checkpoint.check_safe(resume / checkpoint.UNIVERSAL)

        # the data first: a wrong data.root fails before the model and DeepSpeed are set up
        dc = cfg.data
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
        model = build.init_model(cfg)
        model.tokenization = cuts
        if resume is None and cfg.init_from:  # warm start: the export's weights, a fresh optimizer
            try:
                model.load_weights(cfg.init_from)
            except ValueError as e:
                raise SetupError(f"init_from: {e}") from None
            if d.main:
                print(f"weights from {cfg.init_from} (init_from); optimizer, schedule and data order start afresh",
                      file=sys.stderr)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=optim.param_groups(model, cfg.optim.weight_decay),
            config=optim.deepspeed_config(cfg, universal),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, optim.lr_lambda(cfg)))

        self.engine.checkpoint_engine = safe_load.checkpoint_engine(self.engine._config)  # loads run no code
        self.step = self.last_saved = 0  # step 0 needs no checkpoint: it is the seeded initialisation
        self.counters = {"nonfinite_total": 0, "nonfinite_in_a_row": 0, "tokens_seen": 0}
        if resume is not None:
            self.engine.load_checkpoint(str(load_dir), tag=tag, load_module_strict=True)
            optim.apply_optim(self.engine, cfg)
            self.train_loader.load_state_dict(state["data"])
            self.step = self.last_saved = state["step"]
            self.counters = state["counters"]
            if not universal:
                checkpoint.load_rng(resume, d.rank)
            if d.main:
                print(f"resumed from {resume} at step {self.step}", file=sys.stderr)
        self.start_step = self.step
        # non-finite steps, counted on the device and read with the metrics (no host sync per step)
        self.bad = {k: torch.full((), self.counters[c], dtype=torch.long, device=d.device)
                    for k, c in (("run", "nonfinite_in_a_row"), ("worst", "nonfinite_in_a_row"),
                                 ("total", "nonfinite_total"))}
        # a rollback starts a new MLflow run (tagged with the one it branches from): steps after the
        # rollback point are a new history, and would otherwise be skipped as already logged
        run_id = None if rollback else state.get("mlflow_run_id")
        tags = {"dnachunker.rollback_of": state.get("mlflow_run_id") or "",
                "dnachunker.resumed_from": resume.name if resume else "scratch"} if rollback else None
        self.tracker = Tracker(d.main, cfg, run_id=run_id, tags=tags)
        if self.changes:
            self.tracker.tag(f"dnachunker.changed_at_step_{self.step}", "; ".join(self.changes))
        self.bp_per_step = self.train_loader.global_batch * cfg.grad_accum * self.train_loader.split.length
        self.bar = tqdm(total=cfg.max_steps, initial=self.step, desc="pretrain", disable=not d.main,
                        dynamic_ncols=True)
        if d.main:
            print(f"threads per rank: torch {torch.get_num_threads()}, data loader workers {dc.num_workers}", flush=True)

    def save(self) -> Path:
        self.read_nonfinite()
        state = {"data": self.train_loader.state_dict(), "counters": self.counters,
                 "mlflow_run_id": self.tracker.run_id, "config": to_yaml(self.cfg)}
        state = distributed.broadcast(state)  # rank 0 holds the MLflow run id
        self.last_saved = self.step
        return checkpoint.save(self.engine, self.ckpt_root, self.step, state, self.cfg.checkpoint.keep)

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
        self.count_nonfinite(m)
        return m

    def count_nonfinite(self, m: dict[str, torch.Tensor]) -> None:
        """On the device: was this step non-finite (its loss or gradient norm, on any rank), or
        skipped by the optimizer? Runs of them and their total, read by read_nonfinite."""
        bad = ~(torch.isfinite(m["loss"]) & torch.isfinite(m["grad_norm"]))
        if not self.engine.was_step_applied():  # DeepSpeed's own (host) verdict
            bad = torch.ones_like(bad)
        bad = distributed.any_on_device(bad.long())
        self.bad["run"] = (self.bad["run"] + 1) * bad
        self.bad["worst"] = torch.maximum(self.bad["worst"], self.bad["run"])
        self.bad["total"] = self.bad["total"] + bad

    def read_nonfinite(self) -> int:
        """The non-finite counters to the host (one sync) -> the longest run of non-finite steps
        since the last read."""
        run, worst, total = torch.stack(list(self.bad.values())).tolist()
        self.counters.update(nonfinite_in_a_row=run, nonfinite_total=total)
        self.bad["worst"] = self.bad["run"].clone()
        return worst

    def run(self, data, stop: StopFlag) -> int:
        cfg, d, c = self.cfg, self.d, self.counters
        avg, run_avg = Averager(), Averager()  # logging window; whole run (for summary.json)
        t_last = time.perf_counter()
        while self.step < cfg.max_steps:
            if distributed.any_flag(stop.signum is not None, d.device):
                return self.stop(stop)
            m = self.train_step(data)
            c["tokens_seen"] += self.bp_per_step
            now = time.perf_counter()
            speed = {"train/bp_per_s": self.bp_per_step / (now - t_last)}
            avg.add({**{f"train/{k}": v for k, v in m.items()}, **speed})
            run_avg.add(speed)
            t_last = now
            self.bar.update()
            log = self.step % cfg.tracking.log_every == 0 or self.step == cfg.max_steps
            # the host learns of non-finite steps when it logs or saves (a run of them stops the job)
            worst = self.read_nonfinite() if log or self.step % cfg.checkpoint.every == 0 else 0
            if worst >= cfg.max_nonfinite:
                if d.main:
                    self.bar.close()
                    print(f"error: {worst} non-finite steps in a row (by step {self.step}); "
                          f"stopping. Lower optim.lr, check the data, or resume from an earlier checkpoint.",
                          file=sys.stderr)
                self.tracker.finish("FAILED")
                return EXIT_NONFINITE
            if log:
                logged = avg.pop()
                logged.update({"train/lr": self.engine.get_lr()[0], "train/tokens_seen": c["tokens_seen"],
                               "train/nonfinite_steps": c["nonfinite_total"]})
                self.tracker.log(logged, self.step)
                self.bar.set_postfix(loss=f"{logged['train/loss']:.3f}", bp_s=f"{logged['train/bp_per_s']:.3g}")
            if self.step in cfg.export_steps and self.step < cfg.max_steps:
                self.export_step()
            elif cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.max_steps:
                self.tracker.log(validate(self.engine, self.val_loader, cfg.val_batches, d), self.step)
            if self.step % cfg.checkpoint.every == 0 and self.step < cfg.max_steps and self.last_saved != self.step:
                self.save()
        final = self.save() if self.last_saved != self.step else checkpoint.step_dir(self.ckpt_root, self.step)
        self.bar.close()
        valid = validate(self.engine, self.val_loader, cfg.val_batches, d)
        self.tracker.log(valid, self.step)
        if d.main:
            summary = {**self._export(final, self.out / "export", valid, run_avg.pop()),
                       "torch_threads": torch.get_num_threads(), "data_workers": cfg.data.num_workers}
            write_text(self.out / "summary.json", json.dumps(summary, indent=1))
            print(_summary_line(self.step, summary, self.out, self.tracker), file=sys.stderr)
            (self.out / RESTARTS).unlink(missing_ok=True)
        self.tracker.finish("FINISHED")
        return 0

    def _export(self, ckpt: Path, dest: Path, valid: dict, extra: dict | None = None) -> dict:
        """Rank 0: the checkpoint's weights -> `dest` with a model card; -> the summary it records."""
        c = self.counters
        summary = {"step": self.step, **valid, **(extra or {}), "tokens_seen": c["tokens_seen"],
                   "nonfinite_steps": c["nonfinite_total"], "mlflow_run_id": self.tracker.run_id}
        card = {**summary, **self.train_loader.split.provenance(), "repeat_weight": self.cfg.data.repeat_weight}
        build.export(self.cfg, ckpt, dest, card)
        return summary

    def export_step(self) -> None:
        """An intermediate export (export_steps): checkpoint, validate, <out_dir>/exports/step<N>/
        with its summary.json; kept from an earlier start of the run (a resume does not redo it)."""
        dest = self.out / "exports" / f"step{self.step:06d}"
        if distributed.broadcast((dest / "summary.json").is_file()):  # rank 0's file system decides
            return
        ckpt = self.save() if self.last_saved != self.step else checkpoint.step_dir(self.ckpt_root, self.step)
        valid = validate(self.engine, self.val_loader, self.cfg.val_batches, self.d)
        self.tracker.log(valid, self.step)
        if self.d.main:
            write_text(dest / "summary.json", json.dumps(self._export(ckpt, dest, valid), indent=1))

    def stop(self, stop: StopFlag) -> int:
        """On a stop signal: make sure the newest step is checkpointed (skipping a save of a step
        already saved), count a stop that completed no step, and exit 75."""
        saved = self.step == self.last_saved
        path = checkpoint.step_dir(self.ckpt_root, self.step) if saved else self.save()
        if self.d.main:
            self.bar.close()
            progress = self.step > self.start_step
            record = _restarts(self.out)
            stops = 0 if progress else record.get("stops_without_progress", 0) + 1
            last = f"{stop.name} at step {self.step}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
            write_text(self.out / RESTARTS, json.dumps({"stops_without_progress": stops, "last": last}))
            where = (f"checkpoint {path} saved" if not saved else
                     f"step {self.step} was already checkpointed ({path})" if self.step else "no step to checkpoint yet")
            print(f"{stop.name}: {where}; exiting with code {EXIT_REQUEUE} (a restart resumes from here)"
                  + ("" if progress else f"; no step completed since start ({stops} such stop(s) in a row)"),
                  file=sys.stderr, flush=True)
        self.tracker.finish("KILLED")
        return EXIT_REQUEUE


def _summary_line(step: int, summary: dict, out: Path, tracker) -> str:
    """The run's last words: how far it went, how good it is, where everything is."""
    loss = summary.get("valid/mlm_loss")
    where = ", ".join(str(out / f) for f in ("metrics.jsonl", "summary.json", "train.log") if (out / f).exists())
    return (f"finished {step} steps ({summary.get('tokens_seen', 0):,} tokens)"
            + (f"; validation MLM loss {loss:.4f}, accuracy {summary['valid/mlm_accuracy']:.3f}" if loss else "")
            + f"; weights exported to {out / 'export'}\nmetrics: {where}"
            + (f"; MLflow: {redact(tracker.uri)}, run {tracker.run_id}" if getattr(tracker, "uri", None) else ""))


def _changes_note(changes: list[str], resume: Path | None) -> str:
    """config.yaml's record of what checkpoint.allow_changes let differ from the checkpoint."""
    if not changes:
        return ""
    return f"# changed on resume from {resume} (checkpoint.allow_changes):\n" + "".join(f"#   {c}\n" for c in changes)


if __name__ == "__main__":
    sys.exit(main())
