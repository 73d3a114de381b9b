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
import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import dnachunker  # noqa: E402,F401  (before torch: it sets how OpenMP threads wait)

from data_pipeline.errors import DataError  # noqa: E402
from dnachunker.errors import describe  # noqa: E402
from dnachunker.ops import kernels  # noqa: E402

from . import distributed, preflight  # noqa: E402
from .callbacks import RESTARTS, restarts  # noqa: E402
from .config import TrainConfig, load_config  # noqa: E402
from .distributed import SetupError  # noqa: E402
from .lock import LockError, RunLock  # noqa: E402
from .trainer import Trainer  # noqa: E402

EXIT_NO_PROGRESS = 4
EXIT_BAD_INPUT = 2


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
    <out_dir>/train.log, as are the details this project writes there and the Python warnings that
    libraries raise (deprecations inside torch.distributed, say); MLflow logs warnings only."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported, later
    sys.stdout.flush()
    fd = os.open(Path(out) / "train.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.close(fd)
    ours, shown = str(Path(__file__).resolve().parent.parent), warnings.showwarning

    def to_log(message, category, filename, lineno, file=None, line=None):
        if str(Path(filename).resolve()).startswith(ours) and "site-packages" not in filename:
            return shown(message, category, filename, lineno, file, line)
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", flush=True)
    warnings.showwarning = to_log


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
        stops = restarts(out).get("stops_without_progress", 0)
        if stops >= cfg.max_stops_without_progress:
            error = (f"{out / RESTARTS}: the last {stops} runs stopped before completing a step "
                     f"({restarts(out).get('last')}); not starting again. Usually the job's time limit is "
                     f"shorter than the time-limit signal's lead (--signal=B:USR1@N) plus start-up, or the job "
                     f"is preempted as soon as it starts. Fix that, delete {out / RESTARTS} and resubmit")
    errors = [e for e in distributed.gather(error) if e]
    if errors:
        if lock is not None:
            lock.release()
        raise NoProgress(errors[0])
    return lock


def _train(cfg: TrainConfig, d: distributed.Dist, stop: StopFlag) -> int:
    trainer = Trainer(cfg, d, stop)
    data = iter(trainer.train_loader)
    try:
        return trainer.run(data)
    finally:
        data.close()  # shuts the DataLoader workers down now (they ignore stop signals)
        trainer.bar.close()


if __name__ == "__main__":
    sys.exit(main())
