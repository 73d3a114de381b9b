"""A study end to end, locally: pretrain -> export -> probe suite -> paper-shaped tables with the
random-initialisation control row; killed and resumed without redoing finished work; a failing
point is a row, not the end of the study."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import ROOT
from .test_slurm import tiny_suite
from .test_train import tiny_run

pytestmark = pytest.mark.slow


def test_study_end_to_end_with_control_row_failure_row_and_resume_after_a_kill(tmp_path, train_shards):
    out = tmp_path / "study"
    train = tiny_run(out / "unused", train_shards)[1:] + [f"model={ROOT / 'configs/model/tiny.yaml'}", "max_steps=3",
                                                          "checkpoint.every=100", "val_every=0"]
    args = [sys.executable, "-m", "studies.sweep", "--sweep", "configs/sweep/ablation.yaml", f"out_dir={out}",
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
    assert list(rows) == ["w/o ratio loss", "DNAChunker", "broken", "random init (control)", "k-mer LR (baseline)",
                          "CNN (baseline)"]
    for label in ("w/o ratio loss", "DNAChunker", "random init (control)", "k-mer LR (baseline)", "CNN (baseline)"):
        row = rows[label]
        assert row["status"] == "ok" and -1 <= float(row["overall_mcc"]) <= 1
        assert all(row[f"mcc/{c}"] for c in ("histone", "enhancers"))
    assert rows["random init (control)"]["tokens_seen"] == "0" and float(rows["DNAChunker"]["tokens_seen"]) > 0
    assert "pretrain failed (exit 2" in rows["broken"]["status"] and "eval skipped" in rows["broken"]["status"]
    study = (out / "study.md").read_text()
    assert ("| configuration | valid MLM loss | main-network positions / bp | training MFLOP / bp | histone | enhancers "
            "| overall | pretraining seeds | tokens | status |") in study
    flops = json.loads((first / "flops.json").read_text())  # measured on the final export
    assert flops["flops_per_bp"] > 0 and 0 < flops["main_positions_per_bp"] <= 1
    assert "| k-mer LR (baseline) |" in study and "Against the best baseline of each column" in study
    assert "| random init (control) |" in study and " ± " in study
    assert "The paper's numbers" in study and "| DNAChunker |  |  | 0.390 |" in study
    assert (out / "mcc_by_configuration.png").stat().st_size > 1000
    # the control's weights are the untrained model: the same initialisation as every pretraining run
    from dnachunker import DNAChunker
    from train.config import load_config
    from train.build import init_model
    control = DNAChunker.from_pretrained(out / "control" / "export")
    fresh = init_model(load_config(out / "control" / "config.yaml", []))
    assert all((a == b).all() for a, b in zip(control.state_dict().values(), fresh.state_dict().values()))
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dnachunker-sweep-tiny_ablation").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"study.md", "results.csv"}
    assert sum("eval/overall_mcc" in r.data.metrics for r in runs) == 3


def test_scaling_study_two_seeds_baseline_rows_and_a_rerun_that_redoes_nothing(tmp_path, train_shards):
    """Budgets: each point exported and probed at steps 2 and 4; two pretraining seeds; the k-mer
    baseline as a row; the across-seed table, comparisons and scaling curve; then the same command
    again runs no job that had finished."""
    from evaluation.stats import mean_std
    out = tmp_path / "scaling"
    train = tiny_run(out / "unused", train_shards)[1:] + [f"model={ROOT / 'configs/model/tiny.yaml'}",
                                                          "checkpoint.every=100", "val_every=0"]
    args = [sys.executable, "-m", "studies.sweep", "--sweep", "configs/sweep/ablation.yaml", f"out_dir={out}",
            f"evaluation={tiny_suite(tmp_path)}", "name=tiny_scaling", f"overrides={json.dumps(train)}",
            "points=[{label: DNAChunker}]", "seeds=[0,1]", "budgets=[2,4]", "baselines=[kmer_lr]", "control=false"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    points = [out / f"p00_base__seed-{s}" for s in (0, 1)]
    for p in points:  # the intermediate export carries its own tokens and validation
        step2 = json.loads((p / "exports" / "step000002" / "summary.json").read_text())
        assert step2["step"] == 2 and step2["tokens_seen"] == json.loads((p / "summary.json").read_text())["tokens_seen"] / 2
        assert (p / "eval" / "step000002" / "histone.json").is_file() and (p / "eval" / "histone.json").is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["label"], r["seed"], r["step"]) for r in rows] == [
        ("DNAChunker", "0", "2"), ("DNAChunker", "0", "4"), ("DNAChunker", "1", "2"), ("DNAChunker", "1", "4"),
        ("k-mer LR (baseline)", "", "")]
    # the study's table: DNAChunker at 4 steps, its std across the two pretraining seeds
    per_seed = {s: {e["seed"]: e["mcc"] for e in json.loads((p / "eval" / "histone.json").read_text())["rows"]}
                for s, p in enumerate(points)}
    mean, std, kind = mean_std(per_seed)
    assert kind == "pretraining seeds" and std != mean_std({0: per_seed[0]})[1]
    study = (out / "study.md").read_text()
    header = next(x for x in study.splitlines() if x.startswith("| configuration |")).split(" | ")
    line = next(x for x in study.splitlines() if x.startswith("| DNAChunker |")).split(" | ")
    assert line[header.index("histone")] == f"{mean:.3f} ± {std:.3f}" and line[header.index("pretraining seeds")] == "2"
    losses = [json.loads((p / "summary.json").read_text())["valid/mlm_loss"] for p in points]
    assert line[header.index("valid MLM loss")] == f"{np.mean(losses):.4f} ± {np.std(losses, ddof=1):.4f}"
    assert "| k-mer LR (baseline) |" in study and "| – (no pretraining) |" in study
    assert "Against the best baseline of each column" in study and "seed-level t interval" in study
    assert "No arrow for DNAChunker: fewer than 3 pretraining seeds" in study
    assert "↑" not in study.replace("↑ / ↓:", "") and "↓" not in study.replace("↑ / ↓:", "")  # the legend only
    scaling = (out / "scaling.md").read_text()
    assert scaling.count("| DNAChunker |") == 2  # two budgets; nothing extrapolated
    assert (out / "scaling.png").stat().st_size > 5000
    evaluated = lambda: {f: f.stat().st_mtime_ns for f in out.rglob("*.json")  # noqa: E731
                         if "eval" in f.relative_to(out).parts}
    kept = evaluated()
    assert len(kept) == 2 * 2 * 2 + 2  # points x budgets x columns, and the baseline's columns

    # a study stopped part-way: one evaluation missing. --report tabulates what exists, runs nothing
    gone = points[1] / "eval" / "step000002" / "histone.json"
    gone.unlink()
    jobs_written = (out / "jobs.json").stat().st_mtime_ns
    r = subprocess.run(args + ["--report"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 1 and (out / "jobs.json").stat().st_mtime_ns == jobs_written, r.stderr[-3000:]
    status = {(x["point"], x["step"]): x["status"] for x in csv.DictReader(open(out / "results.csv"))}
    assert status[(points[1].name, "2")] == "eval step000002 not finished"
    assert "(4 finished so far)" in (out / "study.md").read_text()
    # the same command again: only the missing evaluation runs
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [j for j in json.loads((out / "jobs.json").read_text()) if j["name"].endswith("/pretrain")]
    now = evaluated()
    assert now.keys() == kept.keys() and [f for f in now if now[f] != kept[f]] == [gone]
    # publishing: what describes the study, no weights
    from studies.publish import publish
    published = {str(f.relative_to(tmp_path / "pub")) for f in publish(out, tmp_path / "pub")}
    assert {"study.md", "scaling.md", "scaling.png", "results.csv", "sweep.yaml", "jobs.json",
            "points/p00_base__seed-1/exports/step000002/summary.json",
            "points/kmer_lr/eval/histone.json", "points/p00_base__seed-0/eval/step000002/enhancers.json",
            "points/p00_base__seed-0/eval/step000002/enhancers.preds.npz", "points/p00_base__seed-0/flops.json"} <= published
    assert not [f for f in published if f.endswith((".safetensors", ".pt", ".db"))]
    # a fresh clone continues a published study: its points copied back are taken as recorded
    again = tmp_path / "again"
    shutil.copytree(tmp_path / "pub" / "points", again)
    old = again / "p00_base__seed-0" / "eval" / "histone.json"  # recorded before SuiteTask had `metric`
    record = json.loads(old.read_text())
    del record["task"]["metric"]
    old.write_text(json.dumps(record))
    r = subprocess.run([a if not a.startswith("out_dir=") else f"out_dir={again}" for a in args],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "taken as recorded (no weights, every evaluation present): p00_base__seed-0, p00_base__seed-1" in r.stderr
    assert "is not in sqlite" in r.stderr  # their MLflow runs stayed in the first study's store
    assert [j["name"] for j in json.loads((again / "jobs.json").read_text())] == ["kmer_lr/eval"]
    assert (again / "results.csv").read_text() == (out / "results.csv").read_text()


def test_match_flops_scales_each_rows_steps_to_the_reference_rows_compute(tmp_path, train_shards):
    """match_flops: the 6-mer row (fewer main-network positions per bp) gets more steps, as many as
    make its training FLOPs at initialisation equal DNAChunker's at each budget."""
    from studies.config import SweepConfig
    from studies.points import resolve
    from train.config import load_config
    from train.flops import at_init
    train = tiny_run(tmp_path / "unused", train_shards)[1:] + [f"model={ROOT / 'configs/model/tiny.yaml'}"]
    cfg = SweepConfig(name="m", config=str(ROOT / "configs/pretrain/tiny_chr20.yaml"), overrides=train,
                      points=[{"label": "DNAChunker"}, {"label": "6-mer", "model.tokenization": "kmer",
                                                         "model.tokenization_args.k": 6}],
                      budgets=[10, 40], evaluation=None, match_flops="DNAChunker").validate()
    points = {p.label: p for p in resolve(cfg, tmp_path / "out", [])}
    record = json.loads((tmp_path / "out" / "flops_match.json").read_text())
    per_step = {r["label"]: r["flops_per_step_per_window_bp"] for r in record.values()}
    assert per_step["6-mer"] < per_step["DNAChunker"]  # 6-mer hands the main network 1 position in 6
    steps = round(40 * per_step["DNAChunker"] / per_step["6-mer"])
    kmer, dc = points["6-mer"].cfg, points["DNAChunker"].cfg
    assert (dc.max_steps, dc.export_steps) == (40, [10])
    assert kmer.max_steps == steps > 40 and kmer.optim.decay_steps == steps
    assert kmer.export_steps == [round(10 * per_step["DNAChunker"] / per_step["6-mer"])]
    # the recorded number is what a fresh measurement of that row at initialisation gives
    again = at_init(load_config(ROOT / "configs/pretrain/tiny_chr20.yaml",
                                [*train, "model.tokenization=kmer", "model.tokenization_args.k=6",
                                 f"out_dir={tmp_path / 'again'}"]))
    assert again["flops_per_bp"] == pytest.approx(record[points["6-mer"].name]["flops_per_bp"])
    with pytest.raises(Exception, match="no point is labelled 'BPE'"):
        SweepConfig(points=[{"label": "DNAChunker"}], match_flops="BPE").validate()
