"""`dnachunker pretrain --check`: everything a job needs, in seconds, before the queue; and a run
that stops on the same checks before DeepSpeed starts."""
import subprocess
import sys
import time

import pytest

from .conftest import ROOT
from .test_train import tiny_run

pytestmark = pytest.mark.slow


def check(*args, env=None):
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--check", "--config", "configs/pretrain/tiny_chr20.yaml",
                        *args], cwd=ROOT, capture_output=True, text=True, env=env)
    return r, time.time() - t0


def rows(stdout: str) -> dict[str, list[str]]:
    out = {}
    for line in stdout.splitlines():
        level, what = line[:4].strip(), line[6:18].strip()
        out.setdefault(what, []).append(level)
    return out


def test_a_good_job_passes_every_check_and_says_its_budget(tmp_path, train_shards):
    r, _ = check(*tiny_run(tmp_path / "run", train_shards), "max_steps=100", "--world", "2", "--nodes", "1",
                 "--tasks-per-node", "2", "--gpus-per-node", "2", "--peak-tflops", "100")
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(r.stdout)
    assert set(got) == {"data", "out_dir", "resume", "tracking", "batch", "kernels", "budget", "step time"}
    assert "FAIL" not in r.stdout and "every check passed" in r.stderr
    assert "2 rank(s) x 4 windows x 1 accumulation = 8 windows per step" in r.stdout
    assert "8 windows per step" in r.stdout and "4.1 k tokens per step; 100 steps = 410 k tokens" in r.stdout
    assert "projection, not a measurement" in r.stdout and "at 40% of 100 TFLOP/s" in r.stdout


def test_what_would_fail_on_the_cluster_fails_here_in_seconds(tmp_path, train_shards, tmpfs_dir):
    r, seconds = check(*tiny_run(tmp_path / "run", train_shards), "data.root=/nowhere/hg38")
    assert r.returncode == 2 and seconds < 30 and rows(r.stdout)["data"] == ["FAIL"]
    assert "/nowhere/hg38/manifest.json: no manifest" in r.stdout and "data.root=" in r.stdout
    r, _ = check(*tiny_run(tmpfs_dir / "run", train_shards), "--world", "4", "--nodes", "2")
    assert r.returncode == 2 and "tmpfs" in r.stdout and rows(r.stdout)["out_dir"] == ["FAIL"]
    r, _ = check(*tiny_run(tmp_path / "run", train_shards), "global_batch_size=12", "--world", "8")
    assert r.returncode == 2
    assert "global_batch_size=12 is not a multiple of ranks x data.micro_batch_size = 8 x 4" in r.stdout
    r, _ = check(*tiny_run(tmp_path / "run", train_shards), "--world", "8", "--nodes", "2", "--tasks-per-node", "4",
                 "--gpus-per-node", "8")
    assert r.returncode == 2 and "4 tasks per node for 8 GPUs: run one task per GPU" in r.stdout


def test_a_run_stops_on_those_checks_before_deepspeed_starts(tmp_path, train_shards):
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                        *tiny_run(tmp_path / "run", train_shards), "data.root=/nowhere/hg38"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and time.time() - t0 < 30
    assert r.stderr.strip().splitlines()[-1].startswith("error: /nowhere/hg38/manifest.json: no manifest")
    assert "rendezvous" not in r.stderr and "deepspeed" not in r.stderr.lower()


@pytest.fixture
def tmpfs_dir(tmp_path):
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip()}): needs root, as CI has")
    yield d
    subprocess.run(["umount", "-l", str(d)])

