"""The Slurm workflow against a real single-node Slurm (../shared/slurm-local.sh; .ci/run starts
it). Skipped when no Slurm cluster answers. The local-executor sweep runs everywhere."""
import csv
import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from slurm.sweep import main as sweep
from train import checkpoint

from .conftest import ROOT
from .test_train import losses, mlflow_runs, tiny_run

pytestmark = pytest.mark.slow
CPU_JOB = ["--gres=none", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=15:00"]


def _slurm_ready() -> str | None:
    if not shutil.which("sbatch"):
        return "sbatch not found (start a local cluster with ../shared/slurm-local.sh)"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if r.returncode != 0 or not any(s.startswith(("idle", "mixed")) for s in r.stdout.split()):
        return f"no idle Slurm node (sinfo: {r.stdout.strip() or r.stderr.strip()})"
    return None


needs_slurm = pytest.mark.skipif(_slurm_ready() is not None, reason=str(_slurm_ready()))


def sbatch(out, shards, *overrides, wait=True):
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *CPU_JOB, f"--output={out}.log",
           "slurm/pretrain.sh", "configs/pretrain/tiny_chr20.yaml", *tiny_run(out, shards), *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


@needs_slurm
def test_sbatch_pretrain_finishes_with_checkpoint_and_mlflow_run(tmp_path, train_shards):
    out = tmp_path / "run"
    proc = sbatch(out, train_shards, "max_steps=4", "checkpoint.every=2")
    assert proc.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert (out / "checkpoints" / "step_00000004" / "trainer_state.json").is_file()
    assert json.loads((out / "checkpoints" / "step_00000004" / "trainer_state.json").read_text())["world_size"] == 2
    _, runs = mlflow_runs(out)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert (out / "export" / "model.safetensors").is_file()


@needs_slurm
def test_usr1_checkpoints_requeues_and_reproduces_uninterrupted_losses(tmp_path, train_shards):
    common = ("max_steps=12", "checkpoint.every=4")
    ref = sbatch(tmp_path / "ref", train_shards, *common)
    assert ref.wait(timeout=600) == 0
    out = tmp_path / "preempted"
    proc = sbatch(out, train_shards, *common)
    job_id = proc.stdout.readline().strip()  # --parsable prints the id at submission
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step_00000004").exists() and time.time() < deadline:
        time.sleep(0.2)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True)
    assert proc.wait(timeout=600) == 0
    log = (tmp_path / "preempted.log").read_text()
    assert "received SIGUSR1" in log and "requeueing job" in log and "restart 1" in log
    assert "resumed from" in log
    a, b = losses(tmp_path / "ref"), losses(out)  # one MLflow run, continuous steps
    assert sorted(a) == sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)


def _job_state(job_id: str) -> str:
    """Final state of a job from accounting (the batch step excluded)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True)
        state = r.stdout.strip().split("\n")[0].split()[0] if r.stdout.strip() else ""
        if state and state not in ("RUNNING", "PENDING", "REQUEUED", "COMPLETING"):
            return state
        time.sleep(1)
    return state


def _wait_for_steps(out, n, timeout=300):
    deadline = time.time() + timeout
    path = out / "metrics.jsonl"
    while time.time() < deadline:
        if path.is_file() and sum("train/loss" in line for line in path.read_text().splitlines()) >= n:
            return
        time.sleep(0.2)
    pytest.fail(f"{out}: fewer than {n} logged steps after {timeout} s")


@needs_slurm
@pytest.mark.parametrize("how", ["scancel", "usr1-to-tasks"])
def test_scancel_stops_the_job_for_good_after_a_checkpoint(tmp_path, train_shards, how):
    """Plain `scancel` (SIGTERM) and a USR1 that only the tasks receive both mean: checkpoint and
    stop. Only the time-limit signal to the batch script requeues."""
    out = tmp_path / "run"
    proc = sbatch(out, train_shards, "max_steps=500", "checkpoint.every=500", "val_every=0")
    job_id = proc.stdout.readline().strip()
    _wait_for_steps(out, 3)
    subprocess.run(["scancel", job_id] if how == "scancel" else ["scancel", "--signal=USR1", job_id], check=True)
    proc.wait(timeout=300)
    assert _job_state(job_id) == ("CANCELLED" if how == "scancel" else "FAILED")
    log = (tmp_path / "run.log").read_text()
    assert "restart 1" not in log and "requeueing" not in log
    if how == "usr1-to-tasks":
        assert "training exited with code 75" in log
    latest = (out / "checkpoints" / "latest").read_text()
    assert checkpoint.is_complete(out / "checkpoints" / latest)
    assert checkpoint.read_state(out / "checkpoints" / latest)["step"] >= 3
    time.sleep(3)
    queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
    assert not {"PENDING", "RUNNING", "REQUEUED"} & set(queued.split())


@needs_slurm
def test_a_requeue_loop_without_progress_is_stopped(tmp_path, train_shards):
    """A job signalled for its time limit before it can do a step, restart after restart (a time
    limit shorter than the signal's lead): after 3 such stops it refuses to start, and the job ends."""
    out = tmp_path / "run"
    proc = sbatch(out, train_shards, "max_steps=500", "max_stops_without_progress=3")
    job_id = proc.stdout.readline().strip()
    log = tmp_path / "run.log"
    for restart in range(3):
        deadline = time.time() + 300  # the ranks have met (their handlers are in place), no step is done yet
        while (log.read_text() if log.is_file() else "").count("rendezvous") <= restart and time.time() < deadline:
            time.sleep(0.1)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True)
    proc.wait(timeout=600)
    text = log.read_text()
    assert text.count("requeueing job") == 3 and "restart 3:" in text
    assert "the last 3 runs stopped before completing a step (SIGUSR1 at step 0" in text
    assert "training exited with code 4" in text and _job_state(job_id) == "FAILED"


@needs_slurm
def test_srun_without_master_addr_is_one_job_not_separate_trainings(tmp_path, train_shards):
    out = tmp_path / "run"
    script = tmp_path / "job.sh"
    args = " ".join(f"'{a}'" for a in tiny_run(out, train_shards))
    script.write_text(f"#!/bin/bash\nsrun -c 1 {ROOT / '.venv/bin/python'} -m train.pretrain --config "
                      f"configs/pretrain/tiny_chr20.yaml {args} max_steps=2 checkpoint.every=2\n")
    r = subprocess.run(["sbatch", "--wait", "--parsable", *CPU_JOB, f"--output={tmp_path}/job.log", str(script)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (tmp_path / "job.log").read_text()[-3000:]
    state = checkpoint.read_state(out / "checkpoints" / "step_00000002")
    assert state["world_size"] == 2 and state["data"]["position"] == 2 * 2 * 4
    assert "rendezvous" in (tmp_path / "job.log").read_text()


def _sweep(tmp_path, shards, cluster, *extra):
    out = tmp_path / f"sweep_{cluster}"
    train = tiny_run(out / "unused", shards)[1:]  # everything but out_dir (set per point)
    rc = sweep(["--sweep", "configs/sweep/alpha_depth.yaml", f"out_dir={out}", f"cluster={cluster}",
                f"name={cluster}", f"overrides={json.dumps(train + ['max_steps=3', 'checkpoint.every=100'])}",
                "grid={model.target_ratio: [[0.3, 0.5], [0.6, 0.5]], model.main_layers: [2]}", *extra])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["model.target_ratio"] for r in rows] == ["[0.3, 0.5]", "[0.6, 0.5]"]
    assert all(r["status"] == "ok" and float(r["valid/mlm_loss"]) > 0 and 0 < float(r["valid/compression_0"]) <= 1
               and float(r["train/bp_per_s"]) > 0 for r in rows)
    assert (out / "loss_vs_alpha_depth.png").stat().st_size > 1000
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"dnachunker-sweep-{cluster}")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and len(children) == 2
    return rows


def test_local_sweep_without_slurm(tmp_path, train_shards):
    _sweep(tmp_path, train_shards, "local")


@needs_slurm
def test_submitit_sweep_on_slurm_returns_both_results(tmp_path, train_shards):
    _sweep(tmp_path, train_shards, "slurm", "slurm.time_min=15", "slurm.cpus_per_task=1")
