"""Multi-node behaviour on a real two-node Slurm (SLURM_LOCAL_NODES=2 ../shared/slurm-local.sh, as
.ci/run starts it): node1 and node2 in their own network namespaces, gloo over a real network
hop, a private /scratch on each. Skipped only when the cluster has fewer than two nodes."""
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from studies.sweep import main as sweep
from train import checkpoint

from .conftest import ROOT
from .test_slurm import _job_state, _sacct, _wait_for_steps, sweep_args, tiny_suite
from .test_train import mlflow_runs, tiny_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cores_shared_by_nodes")]


def _nodes() -> list[str]:
    if shutil.which("sinfo") is None:
        return []
    r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True)
    return [n for n, state in (line.split() for line in r.stdout.splitlines())
            if state.startswith(("idle", "mixed"))] if r.returncode == 0 else []


needs_two_nodes = pytest.mark.skipif(len(_nodes()) < 2, reason="needs a two-node Slurm: SLURM_LOCAL_NODES=2 "
                                                                 "../shared/slurm-local.sh")
# the same global batch (8 windows a step) however the ranks are laid out
COMMON = ("global_batch_size=8", "data.micro_batch_size=4", "val_every=0")


def submit(out: Path, shards, nodes: int, tasks_per_node: int, *overrides, log: Path | None = None) -> subprocess.Popen:
    cmd = ["sbatch", "--parsable", "--wait", f"--nodes={nodes}", f"--ntasks-per-node={tasks_per_node}", "--gres=none",
           "--cpus-per-task=1", "--time=15:00", f"--output={log or f'{out}.log'}", "slurm/pretrain.sh",
           "configs/pretrain/tiny_chr20.yaml", *tiny_run(out, shards), *COMMON, *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, out: Path) -> str:
    assert proc.wait(timeout=900) == 0, Path(f"{out}.log").read_text()[-4000:]
    return Path(f"{out}.log").read_text()


def step_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.fixture(scope="module")
def two_node_reference(tmp_path_factory, train_shards):
    """An uninterrupted 12-step run on 2 nodes x 1 task."""
    out = tmp_path_factory.mktemp("multinode") / "ref"
    proc = submit(out, train_shards, 2, 1, "max_steps=12", "checkpoint.every=4")
    job = proc.stdout.readline().strip()
    log = finish(proc, out)
    assert "rendezvous node1:" in log and "2 rank(s), gloo" in log
    assert _sacct(job, "NodeList") == "node[1-2]" and _job_state(job) == "COMPLETED"
    assert checkpoint.read_state(out / "checkpoints" / "step_00000012")["world_size"] == 2
    _, runs = mlflow_runs(out)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert (out / "export" / "model.safetensors").is_file()
    return out


@needs_two_nodes
def test_two_nodes_one_task_equal_one_node_two_tasks(tmp_path, train_shards, two_node_reference):
    out = tmp_path / "one_node"
    proc = submit(out, train_shards, 1, 2, "max_steps=12", "checkpoint.every=4")
    job = proc.stdout.readline().strip()
    finish(proc, out)
    assert "," not in _sacct(job, "NodeList") and "[" not in _sacct(job, "NodeList")  # both ranks on one node
    a, b = step_losses(two_node_reference), step_losses(out)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-6)


@needs_two_nodes
def test_time_limit_signal_requeues_and_resumes_on_both_nodes(tmp_path, train_shards, two_node_reference):
    out = tmp_path / "preempted"
    proc = submit(out, train_shards, 2, 1, "max_steps=12", "checkpoint.every=4")
    job = proc.stdout.readline().strip()
    _wait_for_steps(out, 5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    log = finish(proc, out)
    assert "requeueing job" in log and "restart 1:" in log and "resumed from" in log
    assert log.count("2 rank(s), gloo") == 2 and _sacct(job, "NodeList") == "node[1-2]"
    a, b = step_losses(two_node_reference), step_losses(out)
    assert sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-6)


@needs_two_nodes
def test_checkpoints_move_between_two_nodes_and_one(tmp_path, train_shards):
    """2 nodes -> 1 node and 1 node -> 2 nodes: the data position continues, nothing repeated."""
    for first, second in ((2, 1), (1, 2)):  # nodes, one task each
        out = tmp_path / f"from{first}to{second}"
        finish(submit(out, train_shards, first, 1, "max_steps=4", "checkpoint.every=4"), out)
        before = checkpoint.read_state(out / "checkpoints" / "step_00000004")
        assert before["world_size"] == first and before["data"]["position"] == 4 * 8
        log = finish(submit(out, train_shards, second, 1, "max_steps=8", "checkpoint.every=4"), out)
        after = checkpoint.read_state(out / "checkpoints" / "step_00000008")
        assert f"world size changed ({first} -> {second})" in log and "resumed from" in log
        assert after["data"]["position"] == 8 * 8 and after["data"]["epoch"] == before["data"]["epoch"] == 0
        assert sorted(step_losses(out)) == list(range(1, 9))


@needs_two_nodes
def test_a_node_local_out_dir_is_refused_at_start(tmp_path, train_shards):
    out = Path("/scratch") / f"dnachunker-test-{os.getpid()}"  # exists on each node, a different disk on each
    log = tmp_path / "scratch.log"
    proc = submit(out, train_shards, 2, 1, "max_steps=4", log=log)
    assert proc.wait(timeout=600) != 0
    text = log.read_text()
    # refused before any rank starts: tmpfs is never shared between nodes (test_job_control runs the collective
    # check behind it, which catches a node-local disk of another type)
    assert f"{out} (tmpfs at /scratch): 2 nodes write checkpoints here; it must be a filesystem every node sees" in text
    assert "training exited with code 2" in text


@needs_two_nodes
def test_a_dead_node_ends_the_job_and_the_next_submission_resumes(tmp_path, train_shards):
    out = tmp_path / "node_failure"
    proc = submit(out, train_shards, 2, 1, "max_steps=40", "checkpoint.every=4")
    job = proc.stdout.readline().strip()
    _wait_for_steps(out, 6)
    killed = _kill_training_on("slnode2")
    t = time.time()
    proc.wait(timeout=300)
    assert time.time() - t < 150, "the job did not end within srun's wait"  # srun --wait=120, no hang
    assert killed and _job_state(job) in ("FAILED", "CANCELLED", "NODE_FAIL")
    ckpts = out / "checkpoints"
    for d in ckpts.glob("step_*"):  # whatever is named like a checkpoint is complete
        assert checkpoint.is_complete(d), d
    assert not (out / "export").exists() and not (out / "summary.json").exists()
    newest = checkpoint.find_resume(ckpts, "auto")
    log = finish(submit(out, train_shards, 2, 1, "max_steps=12", "checkpoint.every=4"), out)
    assert f"resumed from {newest}" in log and (out / "export" / "model.safetensors").is_file()


def _kill_training_on(netns: str) -> list[int]:
    """SIGKILL the training process (not its DataLoader workers) inside a node's namespace."""
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    cmd = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in pids if Path(f"/proc/{p}/cmdline").exists()}
    parent = {p: Path(f"/proc/{p}/stat").read_text().split()[3] for p in cmd}
    victims = [int(p) for p, c in cmd.items() if b"train.pretrain" in c and b"train.pretrain" not in cmd.get(parent[p], b"")]
    for p in victims:
        os.kill(p, signal.SIGKILL)
    return victims


@needs_two_nodes
def test_a_sweep_lands_on_both_nodes_with_dependent_evaluation(tmp_path, train_shards):
    out = tmp_path / "sweep"
    rc = sweep(sweep_args(out, train_shards, "name=twonodes", "cluster=slurm", f"evaluation={tiny_suite(tmp_path)}",
                          "control=false", "baselines=[]", "grid={model.target_ratio: [[0.4, 0.5], [0.6, 0.5]]}",
                          "slurm.time_min=15", "slurm.eval_time_min=15", "slurm.cpus_per_task=2"))  # a whole node each
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" and r["overall_mcc"] for r in rows)
    arrays = [p.name.split("_")[0] for p in (out / "submitit").glob("*_submission.sh")
              if "dnachunker-twonodes-eval" not in p.read_text()]
    r = subprocess.run(["sacct", "-n", "-P", "-j", arrays[0], "-o", "JobID,NodeList"], capture_output=True, text=True)
    nodes = {line.split("|")[1] for line in r.stdout.split() if "." not in line.split("|")[0]}
    assert {"node1", "node2"} <= nodes, r.stdout
