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
