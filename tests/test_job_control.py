"""Job control without Slurm: rollback, stop signals around saves, requeue loops, one run per
out_dir, a shared out_dir, a failing tracking store. Ranks are separate processes, as srun starts
them; what needs Slurm itself is in test_slurm.py."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from train import checkpoint
from train.distributed import device_index, expand_hostlist, slurm_rendezvous
from train.lock import LockError, RunLock

from .conftest import ROOT
from .test_train import _port, launch, mlflow_runs, tiny_run, train, wait

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _logged_steps(out) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if "train/loss" in line]


def test_rollback_sets_newer_checkpoints_aside_and_retains_by_write_order(tmp_path, train_shards):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    assert train(out, train_shards, 1, "max_steps=6", "checkpoint.every=2", "checkpoint.keep=3") == [0]
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_00000002", "step_00000004", "step_00000006"]
    # roll back to step 2 with keep=1: the new step 4 must survive, the old 4 and 6 are set aside
    assert train(out, train_shards, 1, f"checkpoint.resume={ckpts / 'step_00000002'}", "checkpoint.keep=1",
                 "max_steps=4", "checkpoint.every=2") == [0]
    log = (out / "rank0.log").read_text()
    assert "rollback: resuming from step_00000002; 2 newer checkpoint(s) (step_00000004, step_00000006)" in log
    assert (ckpts / "latest").read_text() == "step_00000004"
    assert [p.name for p in ckpts.glob("step_*")] == ["step_00000004"] and checkpoint.is_complete(ckpts / "step_00000004")
    aside = list((ckpts / "set_aside").iterdir())
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == ["step_00000004", "step_00000006"]
    assert checkpoint.read_state(ckpts / "step_00000004")["seq"] > checkpoint.read_state(aside[0] / "step_00000006")["seq"]
    from dnachunker import DNAChunker
    assert DNAChunker.from_pretrained(out / "export").num_parameters() > 0
    # resume=auto continues the new history, not the abandoned step 6
    assert train(out, train_shards, 1, "max_steps=6", "checkpoint.every=2", "checkpoint.keep=1") == [0]
    assert f"resumed from {ckpts / 'step_00000004'}" in (out / "rank0.log").read_text()
    _, runs = mlflow_runs(out)  # the rollback branched into its own MLflow run
    assert len(runs) == 2 and any(r.data.tags.get("dnachunker.resumed_from") == "step_00000002" for r in runs)


def _signal_at_start(out, shards, *overrides, sig=signal.SIGTERM):
    """Start one rank and signal it before it can complete a step (during start-up)."""
    log = out / "rank0.log"
    seen = log.read_text().count("rendezvous") if log.is_file() else 0
    procs = launch(out, shards, 1, *overrides)
    # once the rank reports its rendezvous its handlers are in place, and no step can be done yet
    _wait_for(lambda: log.read_text().count("rendezvous") > seen, what="the rendezvous")
    procs[0].send_signal(sig)
    return wait(procs, out)[0]


def test_stop_right_after_resume_keeps_the_checkpoint_and_restart_loops_end(tmp_path, train_shards):
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "step_00000004"
    assert train(out, train_shards, 1, "max_steps=4", "checkpoint.every=2", "checkpoint.keep=1") == [0]
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    common = ("max_steps=8", "checkpoint.keep=1", "max_stops_without_progress=3")
    for k in (1, 2, 3):
        assert _signal_at_start(out, train_shards, *common) == 75
        log = (out / "rank0.log").read_text()
        assert "step 4 was already checkpointed" in log and f"({k} such stop(s) in a row)" in log
    # the same complete checkpoint, untouched: nothing was deleted or saved again
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before and checkpoint.is_complete(ckpt)
    assert [p.name for p in (out / "checkpoints").glob("step_*")] == ["step_00000004"]
    procs = launch(out, train_shards, 1, *common)
    assert procs[0].wait(timeout=300) == 4
    log = (out / "rank0.log").read_text()
    assert "the last 3 runs stopped before completing a step (SIGTERM at step 4" in log
    assert "not starting again" in log
    # after the cause is fixed: delete the record and the run continues
    (out / "restarts.json").unlink()
    assert train(out, train_shards, 1, *common) == [0]
    assert not (out / "restarts.json").exists()


def test_ranks_that_see_different_out_dirs_are_refused(tmp_path, train_shards):
    """The same out_dir path resolving to different directories on different ranks (a node-local
    disk), here by running rank 1 in another working directory with a relative out_dir."""
    (tmp_path / "node0").mkdir()
    (tmp_path / "node1").mkdir()
    port = str(_port())
    config = tmp_path / "pretrain.yaml"  # relative paths in a config are relative to the working directory
    config.write_text((ROOT / "configs/pretrain/tiny_chr20.yaml").read_text().replace(
        "model: configs/model/tiny.yaml", f"model: {ROOT / 'configs/model/tiny.yaml'}"))
    args = [sys.executable, "-m", "train.pretrain", "--config", str(config), *tiny_run("runs/x", train_shards),
            "max_steps=2"]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(args, cwd=tmp_path / f"node{rank}", env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outputs[0][-2000:]
    assert "out_dir is not one directory shared by all ranks: rank 1 on" in outputs[0]
    assert not (tmp_path / "node0" / "runs" / "x" / "checkpoints").exists()


def test_second_run_on_the_same_out_dir_fails_fast_naming_the_holder(tmp_path, train_shards):
    out = tmp_path / "run"
    first = launch(out, train_shards, 1, "max_steps=1000", "checkpoint.every=1000")
    _wait_for(lambda: len(_logged_steps(out)) >= 1, what="the first run's first step")
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                        *tiny_run(out, train_shards), "max_steps=1000"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 2 and "out_dir is in use by another run" in r.stderr, r.stderr[-2000:]
    assert f"pid {first[0].pid} on" in r.stderr and time.time() - t < 60
    first[0].send_signal(signal.SIGTERM)
    assert wait(first, out) == [75]
    assert not (out / "run.lock").exists()  # released on exit


def test_run_lock_takes_over_only_stale_locks(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "slurm_job": None}))
    lock = RunLock(tmp_path).acquire()  # the holder process has ended
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    with pytest.raises(LockError, match=f"pid {os.getpid()} on"):
        RunLock(tmp_path).acquire()  # alive: refused
    lock.release()
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    (tmp_path / "run.lock").write_text(json.dumps({"host": "othernode", "pid": 1, "slurm_job": "77"}))
    RunLock(tmp_path).acquire().release()  # an earlier incarnation of this requeued job
    (tmp_path / "run.lock").write_text(json.dumps({"host": "othernode", "pid": 1, "slurm_job": "12"}))
    with pytest.raises(LockError, match="Slurm job 12, pid 1 on othernode"):
        RunLock(tmp_path).acquire()
    old = time.time() - 1000
    os.utime(tmp_path / "run.lock", (old, old))
    RunLock(tmp_path, stale_after=300).acquire().release()  # its heartbeat stopped


def test_a_tracking_store_that_fails_mid_run_does_not_stop_training(tmp_path, train_shards):
    out = tmp_path / "run"
    procs = launch(out, train_shards, 1, "max_steps=12", "checkpoint.every=100", "val_every=0",
                   "tracking.retries=2", "tracking.retry_backoff_s=0.1")
    # a step goes to metrics.jsonl before MLflow, so a 4th line means steps 1-3 are in MLflow
    _wait_for(lambda: len(_logged_steps(out)) >= 4, what="four logged steps")
    db = sqlite3.connect(out / "mlflow.db", isolation_level=None, timeout=60)
    db.execute("BEGIN EXCLUSIVE")  # what a stuck lock on a network filesystem looks like to MLflow
    try:
        assert wait(procs, out, timeout=600) == [0]
    finally:
        db.rollback()
        db.close()
    log = (out / "rank0.log").read_text()
    assert f"warning: MLflow tracking at sqlite:///{out.resolve() / 'mlflow.db'} failed 2 times" in log
    assert "training continues without MLflow" in log
    assert sorted(set(_logged_steps(out))) == list(range(1, 13))  # nothing lost: metrics.jsonl has every step
    client, runs = mlflow_runs(out)
    in_mlflow = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert 3 <= len(in_mlflow) < 12
    assert (out / "export" / "model.safetensors").is_file()


def test_slurm_variables_give_ranks_devices_and_a_rendezvous():
    assert expand_hostlist("gpu[01-03,10],login7") == ["gpu01", "gpu02", "gpu03", "gpu10", "login7"]
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "5"}  # a batch script, not a step
    assert slurm_rendezvous(batch) is None
    step = {**batch, "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
            "SLURM_STEP_NODELIST": "node[3-4]"}
    r = slurm_rendezvous(step)
    assert (r["RANK"], r["WORLD_SIZE"], r["LOCAL_RANK"], r["MASTER_ADDR"]) == ("5", "8", "1", "node3")
    assert r["MASTER_PORT"] == slurm_rendezvous({**step, "SLURM_PROCID": "0"})["MASTER_PORT"]
    assert device_index(3, visible=1) == 0   # --gpus-per-task / bound GPUs: the task's only device
    assert device_index(3, visible=8) == 3
    with pytest.raises(RuntimeError, match="only 2 CUDA devices"):
        device_index(3, visible=2)


@pytest.mark.parametrize("binding, localid, visible, device", [
    ("every task sees the node's 8 GPUs", "5", 8, 5),
    ("srun --gpus-per-task=1: each task sees its own", "5", 1, 0),
    ("the site sets CUDA_VISIBLE_DEVICES=6 per task", "5", 1, 0),
    ("two tasks share CUDA_VISIBLE_DEVICES=2,3", "1", 2, 1)])
def test_local_rank_names_the_device_the_task_uses(binding, localid, visible, device):
    """What DeepSpeed reads (LOCAL_RANK, for set_device) is the device the rank binds to, in each
    of Slurm's binding modes: the environment of an srun step, simulated."""
    from train.distributed import bind
    env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "13", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": localid,
           "SLURM_JOB_ID": "9", "SLURM_STEP_NODELIST": "gpu[1-2]"}
    env.update(slurm_rendezvous(env))
    assert env["LOCAL_RANK"] == localid
    assert bind(env, visible) == device and env["LOCAL_RANK"] == str(device), binding


def test_resolved_model_is_recorded_and_a_changed_model_is_refused_on_resume(tmp_path, train_shards):
    out = tmp_path / "run"
    assert train(out, train_shards, 1, "max_steps=2", "checkpoint.every=2", "model.target_ratio=[0.4,0.5]") == [0]
    for text in ((out / "config.yaml").read_text(),
                 checkpoint.read_state(out / "checkpoints" / "step_00000002")["config"]):
        assert "target_ratio:\n  - 0.4\n  - 0.5" in text and "max_len: 512" in text and "configs/model" not in text
    client, runs = mlflow_runs(out)
    assert runs[0].data.params["model.target_ratio"] == "[0.4, 0.5]"
    procs = launch(out, train_shards, 1, "max_steps=4", "model.target_ratio=[0.4,0.5]", "model.ratio_loss_weight=0.1")
    assert procs[0].wait(timeout=300) == 2
    assert "model.ratio_loss_weight: 0.03 -> 0.1" in (out / "rank0.log").read_text()
    assert train(out, train_shards, 1, "max_steps=4", "model.target_ratio=[0.4,0.5]", "model.ratio_loss_weight=0.1",
                 "checkpoint.allow_changes=true") == [0]
    assert "warning: changed on resume, as allowed: model.ratio_loss_weight: 0.03 -> 0.1" in (out / "rank0.log").read_text()


def test_a_resume_that_would_train_differently_is_refused_or_recorded_and_applied(tmp_path, train_shards):
    """The overrides of a careless resume (learning rate, micro-batch, masking, repeat weight) are
    refused with every change named; allowed with checkpoint.allow_changes, they are what trains
    (the logged learning rate follows the new base) and are recorded in config.yaml and the MLflow
    run. A longer max_steps alone is not a change."""
    out = tmp_path / "run"
    assert train(out, train_shards, 1, "max_steps=4", "checkpoint.every=4", "optim.lr=3e-3") == [0]
    careless = ("optim.lr=0.5", "data.micro_batch_size=2", "data.mask_prob=0.5", "data.repeat_weight=1.0")
    procs = launch(out, train_shards, 1, "max_steps=8", *careless)
    assert procs[0].wait(timeout=300) == 2
    log = (out / "rank0.log").read_text()
    for change in ("optim.lr: 0.003 -> 0.5", "data.mask_prob: 0.15 -> 0.5", "data.repeat_weight: 0.1 -> 1.0",
                   "global batch (ranks x data.micro_batch_size x grad_accum): 4 -> 2 windows"):
        assert change in log, log[-2000:]
    assert "checkpoint.allow_changes=true" in log and "resumed from" not in log
    assert train(out, train_shards, 1, "max_steps=6", "optim.lr=3e-3") == [0]  # only longer: resumes
    assert train(out, train_shards, 1, "max_steps=8", "optim.lr=6e-3", "checkpoint.allow_changes=true") == [0]
    text = (out / "config.yaml").read_text()
    assert "lr: 0.006" in text and "# changed on resume from" in text and "#   optim.lr: 0.003 -> 0.006" in text
    client, runs = mlflow_runs(out)
    assert runs[0].data.tags["dnachunker.changed_at_step_6"] == "optim.lr: 0.003 -> 0.006"
    lrs = {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, "train/lr")}
    from train.config import load_config
    from train.optim import lr_lambda
    cfg = load_config("configs/pretrain/tiny_chr20.yaml", tiny_run(out, train_shards)[1:] + ["max_steps=8"])
    # train/lr at step k is the rate after k scheduler steps, base x f(k): step 6 ended the 6-step
    # run's cosine at 3e-3 x min_lr_ratio; step 7 is on the 8-step cosine from the new base
    assert lrs[6] == pytest.approx(3e-3 * cfg.optim.min_lr_ratio) and lrs[7] == pytest.approx(6e-3 * lr_lambda(cfg)(7))
