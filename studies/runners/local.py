"""Run a sweep's jobs as local processes (`cluster=local`): at most `parallel` at once, each with
its share of the cores, in dependency order, with a progress line while they run.

A job is a command with a log file and, optionally, the job it must wait for (`after`): it starts
once that one exits 0, and is skipped (with the reason) when it fails. Every job's start and end
times, exit code and thread budget are returned (the sweep records them in jobs.json).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask, e.g. a Slurm allocation), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_parallel() -> int:
    """One point per GPU; one at a time on a CPU machine (points share nothing but the cores)."""
    import torch
    return max(1, torch.cuda.device_count())


@dataclass
class LocalJob:
    name: str
    argv: list[str]
    log: Path
    after: str | None = None                 # name of a job that must succeed first
    env: dict[str, str] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    returncode: int | None = None
    status: str = "queued"                   # queued | running | ok | failed (exit N) | skipped: ...
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def record(self) -> dict:
        return {"name": self.name, "status": self.status, "returncode": self.returncode, "started": self.started,
                "ended": self.ended, "threads": self.env.get("OMP_NUM_THREADS"), "log": str(self.log)}


def thread_env(parallel: int) -> dict[str, str]:
    """The environment that sizes a job's torch / OpenMP / BLAS threads to its share of the cores."""
    share = str(max(1, cpu_count() // parallel))
    return {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share}


def run(jobs: list[LocalJob], parallel: int, describe: Callable[[LocalJob], str] = lambda j: "",
        every: float = 15.0) -> list[LocalJob]:
    """Run `jobs`, at most `parallel` at once; print a progress line every `every` seconds."""
    by_name = {j.name: j for j in jobs}
    last_report = 0.0
    while True:
        for job in jobs:
            if job.proc is not None and job.returncode is None and job.proc.poll() is not None:
                job.returncode, job.ended = job.proc.returncode, time.time()
                job.status = "ok" if job.returncode == 0 else f"failed (exit {job.returncode}, log {job.log})"
                print(f"[sweep] {job.name}: {job.status}", file=sys.stderr, flush=True)
        for job in jobs:
            dep = by_name.get(job.after) if job.after else None
            if job.status == "queued" and dep is not None and dep.status not in ("queued", "running", "ok"):
                job.status = f"skipped: {dep.name} {dep.status.split(' (')[0]}"
        running = [j for j in jobs if j.status == "running"]
        ready = [j for j in jobs if j.status == "queued" and (j.after is None or by_name[j.after].status == "ok")]
        for job in ready[:max(0, parallel - len(running))]:
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with open(job.log, "ab") as log:
                job.proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **job.env})
            job.started, job.status = time.time(), "running"
            print(f"[sweep] {job.name}: started (log {job.log})", file=sys.stderr, flush=True)
        if all(j.status not in ("queued", "running") for j in jobs):
            return jobs
        if time.time() - last_report >= every:
            last_report = time.time()
            done = sum(j.status not in ("queued", "running") for j in jobs)
            now = "; ".join(f"{j.name} {describe(j)}".strip() for j in jobs if j.status == "running")
            print(f"[sweep] {done}/{len(jobs)} done, {sum(j.status == 'queued' for j in jobs)} queued; "
                  f"running: {now}", file=sys.stderr, flush=True)
        time.sleep(0.5)


class LocalRunner:
    """Each point's pretraining and evaluations as local jobs; records every job in jobs.json.
    Rows without pretraining (baselines, control) go first: minutes each, and a partial study
    shows them."""

    def __call__(self, cfg, points: list, out: Path) -> dict[str, dict[str, str]]:
        from dnachunker.fileio import write_text
        parallel = cfg.parallel or default_parallel()
        env = thread_env(parallel)
        share = int(env["OMP_NUM_THREADS"])
        jobs, by_point = [], {}
        for p in sorted(points, key=lambda p: p.pretrain):
            names = {}
            if p.pretrain and not p.finished():
                workers = min(p.cfg.data.num_workers, share - 1)  # the rest of the share feeds the model
                jobs.append(LocalJob(f"{p.name}/pretrain", [sys.executable, "-m", "train.pretrain", *p.argv,
                                     f"data.num_workers={max(workers, 0)}"], p.out / "pretrain.log", env=env))
                names["pretrain"] = jobs[-1]
            for kind, argv in p.eval_jobs(cfg.evaluation) if cfg.evaluation else []:
                jobs.append(LocalJob(f"{p.name}/{kind}", [sys.executable, "-m", "evaluation", "suite", *argv],
                                     p.out / f"{kind.replace(' ', '_')}.log",
                                     after=names["pretrain"].name if "pretrain" in names else None, env=env))
                names[kind] = jobs[-1]
            by_point[p.name] = names
        points_by_job = {j.name: p for p in points for j in by_point[p.name].values()}
        print(f"[sweep] {cfg.name}: {len(jobs)} local jobs, {parallel} at a time, {share} thread(s) each",
              file=sys.stderr)
        run(jobs, parallel, describe=lambda j: points_by_job[j.name].progress() if j.name.endswith("pretrain") else "")
        write_text(out / "jobs.json", json.dumps([j.record() for j in jobs], indent=1))
        return {p: {k: j.status for k, j in names.items()} for p, names in by_point.items()}
