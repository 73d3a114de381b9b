"""Job control and sweeps against a real Slurm (../shared/slurm-local.sh; .ci/run starts a two-node
one and fails if it cannot): signals, requeue loops, srun rendezvous, dependent evaluation jobs.
Skipped only where no Slurm answers; the local sweep runs everywhere. Multi-node: test_multinode.py."""
import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from studies.runners.local import cpu_count
from studies.sweep import main as sweep
from train import checkpoint

from .conftest import ROOT, shared_file
from .test_train import tiny_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("cores_shared_by_nodes")]
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


def _sacct(job_id: str, field: str) -> str:
    """One field of a job's allocation from accounting ("" while it has no record)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", field], capture_output=True, text=True).stdout
    return out.split()[0] if out.strip() else ""


def _job_state(job_id: str) -> str:
    """Final state of a job from accounting, once its processes are gone: after `scancel` the job
    and its steps are CANCELLED at once (and `sbatch --wait` returns) while the processes still have
    KillWait seconds to checkpoint; squeue shows the job COMPLETING until they have exited."""
    running = {"RUNNING", "PENDING", "REQUEUED", "COMPLETING"}
    deadline = time.time() + 60
    while time.time() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        state = _sacct(job_id, "State")
        if state and state not in running and not running & set(queued.split()):
            return state
        time.sleep(0.5)
    pytest.fail(f"job {job_id} not over after 60 s (sacct: {state!r}, squeue: {queued.strip()!r})")


def _wait_for_steps(out, n, timeout=300):
    deadline = time.time() + timeout
    path = out / "metrics.jsonl"
    while time.time() < deadline:
        if path.is_file() and sum("train/loss" in line for line in path.read_text().splitlines()) >= n:
            return
        time.sleep(0.2)
    pytest.fail(f"{out}: fewer than {n} logged steps after {timeout} s")


@needs_slurm
def test_bash_pretrain_sh_checks_on_the_login_node_then_submits(tmp_path, train_shards):
    """`bash slurm/pretrain.sh` checks what the job needs with the world size its request gives and
    submits only then: a wrong data.root is said in seconds and nothing is queued; a good run is
    submitted with the same options and trains."""
    bad = subprocess.run(["bash", "slurm/pretrain.sh", *CPU_JOB, "--parsable", "configs/pretrain/tiny_chr20.yaml",
                          *tiny_run(tmp_path / "bad", train_shards), "data.root=/nonexistent"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "FAIL  data" in bad.stdout and "/nonexistent/manifest.json" in bad.stdout
    assert "not submitted: fix what failed above" in bad.stderr and not bad.stdout.strip().isdigit()
    out = tmp_path / "good"
    good = subprocess.run(["bash", "slurm/pretrain.sh", *CPU_JOB, "--parsable", "--wait", f"--output={out}.log",
                           "configs/pretrain/tiny_chr20.yaml", *tiny_run(out, train_shards), "max_steps=2",
                           "checkpoint.every=2", "val_every=0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "ok    batch         2 rank(s) x 4 windows" in good.stdout and "every check passed" in good.stderr
    job = good.stdout.strip().splitlines()[-1]
    assert job.isdigit() and _job_state(job) == "COMPLETED" and (out / "export" / "model.safetensors").is_file()


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
    limit shorter than the signal's lead): after 2 such stops it refuses to start, and the job ends."""
    out = tmp_path / "run"
    proc = sbatch(out, train_shards, "max_steps=500", "max_stops_without_progress=2")
    job_id = proc.stdout.readline().strip()
    log = tmp_path / "run.log"
    for restart in range(2):
        deadline = time.time() + 300  # the ranks have met (their handlers are in place), no step is done yet
        while (log.read_text() if log.is_file() else "").count("rendezvous") <= restart and time.time() < deadline:
            time.sleep(0.1)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True)
    proc.wait(timeout=600)
    text = log.read_text()
    assert text.count("requeueing job") == 2 and "restart 2:" in text
    assert "the last 2 runs stopped before completing a step (SIGUSR1 at step 0" in text
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


TINY_SUITE = """name: tiny
seeds: [0, 1]
max_train: 60
max_test: 40
epochs: 1
tasks:
  - {column: histone, format: gue, path: ../shared/data/gue_from_DeepGene/EMP/H3}
  - {column: enhancers, format: gbseq, path: ../shared/data/ai4h_hub_gb_nt/enhancers_cohn}
"""


def tiny_suite(tmp_path) -> Path:
    shared_file("gue_from_DeepGene/EMP/H3")
    shared_file("ai4h_hub_gb_nt/enhancers_cohn")
    path = tmp_path / "suite.yaml"
    path.write_text(TINY_SUITE)
    return path


def sweep_args(out, shards, *extra) -> list[str]:
    train = tiny_run(out / "unused", shards)[1:]  # everything but out_dir (set per point)
    return ["--sweep", "configs/sweep/alpha_depth.yaml", f"out_dir={out}", "evaluation=null",
            f"overrides={json.dumps(train + ['max_steps=3', 'checkpoint.every=100', 'val_every=0'])}", *extra]


def _intervals_overlap(jobs) -> int:
    """The most jobs that ran at the same time (from their recorded start and end times)."""
    events = sorted([(j["started"], 1) for j in jobs] + [(j["ended"], -1) for j in jobs])
    most = now = 0
    for _, delta in events:
        now += delta
        most = max(most, now)
    return most


def test_local_sweep_caps_running_points_and_sizes_their_threads(tmp_path, train_shards):
    out = tmp_path / "sweep"
    # [0.5, 0.5] next to [0.3, 0.5]: the plots' x axis once crashed sorting such values
    rc = sweep(sweep_args(out, train_shards, "name=local", "parallel=2",
                          "grid={model.target_ratio: [[0.3, 0.5], [0.5, 0.5]], model.main_layers: [1, 2]}"))
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["model.target_ratio"] for r in rows] == ["[0.3, 0.5]", "[0.3, 0.5]", "[0.5, 0.5]", "[0.5, 0.5]"]
    assert all(r["status"] == "ok" and float(r["valid/mlm_loss"]) > 0 and 0 < float(r["valid/compression_0"]) <= 1
               and float(r["train/bp_per_s"]) > 0 for r in rows)
    jobs = json.loads((out / "jobs.json").read_text())
    assert len(jobs) == 4 and _intervals_overlap(jobs) == 2  # never 3 or 4 at once
    share = max(1, cpu_count() // 2)
    assert all(j["threads"] == str(share) for j in jobs)
    for r in rows:  # the budget reached the training processes
        summary = json.loads((out / r["point"] / "summary.json").read_text())
        assert summary["torch_threads"] == share and summary["data_workers"] == min(1, share - 1)
    assert (out / "metrics_vs_target_ratio.png").stat().st_size > 1000
    assert (out / "metrics_vs_main_layers.png").stat().st_size > 1000
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dnachunker-sweep-local").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and len([r for r in runs if r.data.tags.get("mlflow.parentRunId")]) == 4


@needs_slurm
def test_slurm_study_runs_evaluations_as_jobs_that_depend_on_pretraining(tmp_path, train_shards):
    out = tmp_path / "sweep"
    rc = sweep(sweep_args(out, train_shards, "name=slurm", "cluster=slurm", f"evaluation={tiny_suite(tmp_path)}",
                          "grid={model.target_ratio: [[0.5, 0.5]]}", "slurm.time_min=15", "slurm.eval_time_min=15",
                          "slurm.cpus_per_task=1", "baselines=[kmer_lr]"))
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["label"] for r in rows] == ["p00_target_ratio-0.5_0.5", "random init (control)", "k-mer LR (baseline)"]
    assert all(r["status"] == "ok" and float(r["overall_mcc"]) > -1 for r in rows)
    scripts = {p.name.split("_")[0]: p.read_text() for p in (out / "submitit").glob("*_submission.sh")}
    evals = {job: text for job, text in scripts.items() if "dnachunker-slurm-eval" in text}
    dependent = {job: text.split("--dependency=afterok:")[1].split()[0] for job, text in evals.items()
                 if "--dependency=afterok:" in text}
    assert len(evals) == 3 and len(dependent) == 1  # the control's and the baseline's depend on nothing
    (eval_job, pretrain_job), = dependent.items()
    assert _sacct(eval_job, "Start") >= _sacct(pretrain_job, "End")  # ISO times compare as strings
