"""A study end to end, locally: pretrain -> export -> probe suite -> paper-shaped tables with the
random-initialisation control row; killed and resumed without redoing finished work; a failing
point is a row, not the end of the study."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT
from .test_slurm import tiny_suite
from .test_train import tiny_run

pytestmark = pytest.mark.slow


def test_study_end_to_end_with_control_row_failure_row_and_resume_after_a_kill(tmp_path, train_shards):
    out = tmp_path / "study"
    train = tiny_run(out / "unused", train_shards)[1:] + [f"model={ROOT / 'configs/model/tiny.yaml'}", "max_steps=3",
                                                          "checkpoint.every=100", "val_every=0"]
    args = [sys.executable, "-m", "slurm.sweep", "--sweep", "configs/sweep/ablation.yaml", f"out_dir={out}",
            f"evaluation={tiny_suite(tmp_path)}", "name=tiny_ablation",
            f"overrides={json.dumps(train)}",
            "points=[{label: w/o ratio loss, model.ratio_loss: false}, {label: DNAChunker}, "
            "{label: broken, data.root: /nonexistent}]"]
    first = out / "p00_ratio_loss-False"
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "first.log", "wb"), env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.time() + 600
    while not (first / "eval" / "histone.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole study, mid-way: driver and its running jobs
    proc.wait()
    kept = (first / "eval" / "histone.json").stat().st_mtime_ns
    assert not (out / "results.csv").exists()

    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 1, r.stderr[-3000:]  # one row failed; the study still completed
    jobs = {j["name"]: j for j in json.loads((out / "jobs.json").read_text())}
    assert f"{first.name}/pretrain" not in jobs  # finished before the kill: not run again
    assert (first / "eval" / "histone.json").stat().st_mtime_ns == kept  # nor its finished task
    assert "pretraining already finished, not run again: p00_ratio_loss-False" in r.stderr
    rows = {row["label"]: row for row in csv.DictReader(open(out / "results.csv"))}
    assert list(rows) == ["w/o ratio loss", "DNAChunker", "broken", "random init (control)"]
    for label in ("w/o ratio loss", "DNAChunker", "random init (control)"):
        row = rows[label]
        assert row["status"] == "ok" and -1 <= float(row["overall_mcc"]) <= 1
        assert all(row[f"mcc/{c}"] for c in ("histone", "enhancers"))
    assert rows["random init (control)"]["tokens_seen"] == "0" and float(rows["DNAChunker"]["tokens_seen"]) > 0
    assert "pretrain failed (exit 2" in rows["broken"]["status"] and "eval skipped" in rows["broken"]["status"]
    study = (out / "study.md").read_text()
    assert "| configuration | histone | enhancers | overall | tokens | status |" in study
    assert "| random init (control) |" in study and " ± " in study
    assert "The paper's numbers" in study and "| DNAChunker |  |  | 0.390 |" in study
    assert (out / "mcc_by_configuration.png").stat().st_size > 1000
    # the control's weights are the untrained model: the same initialisation as every pretraining run
    from dnachunker import DNAChunker
    from train.config import load_config
    from train.pretrain import init_model
    control = DNAChunker.from_pretrained(out / "control" / "export")
    fresh = init_model(load_config(out / "control" / "config.yaml", []))
    assert all((a == b).all() for a, b in zip(control.state_dict().values(), fresh.state_dict().values()))
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dnachunker-sweep-tiny_ablation").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"study.md", "results.csv"}
    assert sum("eval/overall_mcc" in r.data.metrics for r in runs) == 3
