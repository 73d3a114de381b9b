"""Distributed pretraining on real chr20 shards: ZeRO-2/3, signals, exact and elastic resume,
MLflow continuity, non-finite handling. Ranks are separate processes (as srun starts them)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from train import checkpoint

from .conftest import ROOT, format1_copy

pytestmark = pytest.mark.slow


def tiny_run(out: Path, shards: Path) -> list[str]:
    """Overrides for a fast, fully logged tiny run on the test shards."""
    return [f"out_dir={out}", f"data.root={shards}", "data.micro_batch_size=4", "data.num_workers=1",
            "optim.warmup_steps=3", "val_every=5", "val_batches=2", "tracking.log_every=1",
            "model.max_len=512"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, shards: Path, world: int, *overrides: str) -> list[subprocess.Popen]:
    """Start `world` ranks the way srun does (one process each, rank in the environment)."""
    args = [sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
            *tiny_run(out, shards), *overrides]
    port = _port()
    procs = []
    out.mkdir(parents=True, exist_ok=True)
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "TQDM_DISABLE": "1"}
        log = open(out / f"rank{rank}.log", "ab")
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait(procs, out: Path, timeout=600) -> list[int]:
    codes = [p.wait(timeout=timeout) for p in procs]
    if any(c not in (0, 75, 3) for c in codes):
        pytest.fail(f"ranks exited {codes}:\n" + (out / "rank0.log").read_text()[-4000:])
    return codes


def train(out, train_shards, world, *overrides) -> list[int]:
    return wait(launch(out, train_shards, world, *overrides), out)


def mlflow_runs(out: Path):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dnachunker-pretrain")
    return client, client.search_runs([exp.experiment_id])


def losses(out: Path) -> dict[int, float]:
    client, runs = mlflow_runs(out)
    assert len(runs) == 1, f"{len(runs)} MLflow runs in {out}"
    hist = client.get_metric_history(runs[0].info.run_id, "train/loss")
    steps = [m.step for m in hist]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    return {m.step: m.value for m in hist}


def test_sigterm_checkpoint_and_resume_reproduce_the_uninterrupted_losses(tmp_path, train_shards):
    common = ("max_steps=12", "checkpoint.every=4", "zero_stage=2")
    ref = tmp_path / "ref"
    assert train(ref, train_shards, 2, *common) == [0, 0]
    out = tmp_path / "interrupted"
    procs = launch(out, train_shards, 2, *common)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step_00000004").exists() and time.time() < deadline:
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # one rank only: all ranks must agree to stop
    assert wait(procs, out) == [75, 75]
    latest = (out / "checkpoints" / "latest").read_text()
    state = json.loads((out / "checkpoints" / latest / "trainer_state.json").read_text())
    assert 4 <= state["step"] < 12 and state["data"]["position"] == state["step"] * 8
    per_step = json.loads((ref / "summary.json").read_text())["tokens_seen"] // 12
    assert state["callbacks"]["throughput"] == {"tokens_seen": state["step"] * per_step}
    assert state["callbacks"]["nonfinite"] == {"in_a_row": 0, "total": 0}
    _, runs = mlflow_runs(out)
    assert runs[0].info.status == "KILLED"
    assert train(out, train_shards, 2, *common) == [0, 0]
    a, b = losses(ref), losses(out)
    assert sorted(a) == sorted(b) == list(range(1, 13))  # one run, continuous steps
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)
    _, runs = mlflow_runs(out)
    assert runs[0].info.status == "FINISHED"
    assert "resumed from" in (out / "rank0.log").read_text()
    assert json.loads((out / "summary.json").read_text())["tokens_seen"] == 12 * per_step  # the policies' state resumed
    from dnachunker import DNAChunker
    assert DNAChunker.from_pretrained(out / "export").num_parameters() > 0
    _check_model_card(out, train_shards)


def _check_model_card(out: Path, shards: Path) -> None:
    """export/README.md: Hugging Face metadata, and the run's own numbers (summary.json, manifest)."""
    import yaml

    from dnachunker import DNAChunker
    card = (out / "export" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "dnachunker" and meta["pipeline_tag"] == "fill-mask" and meta["license"]
    assert "dnachunker" in meta["tags"]
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((shards / "manifest.json").read_text())
    assert f"| validation MLM loss | {summary['valid/mlm_loss']:.4f} |" in card
    for s in (0, 1):
        assert f"| {summary[f'valid/compression_{s}']:.4f} |" in card
    assert f"steps: {summary['step']:,}; tokens seen: {summary['tokens_seen']:,}" in card
    assert manifest["source"]["fasta_sha256"] in card
    assert f"| parameters | {DNAChunker.from_pretrained(out / 'export').num_parameters():,} |" in card


def test_two_rank_zero2_checkpoint_resumes_on_one_rank(tmp_path, train_shards):
    out = tmp_path / "elastic"
    assert train(out, train_shards, 2, "max_steps=6", "checkpoint.every=3", "zero_stage=2") == [0, 0]
    two_rank = json.loads((out / "checkpoints" / "step_00000006" / "trainer_state.json").read_text())
    assert two_rank["world_size"] == 2 and two_rank["data"]["position"] == 6 * 8
    assert train(out, train_shards, 1, "max_steps=10", "data.micro_batch_size=8") == [0]
    log = (out / "rank0.log").read_text()
    assert "world size changed (2 -> 1)" in log and "resumed from" in log
    assert (out / "checkpoints" / "step_00000006" / "universal").is_dir()
    final = json.loads((out / "checkpoints" / "step_00000010" / "trainer_state.json").read_text())
    assert final["world_size"] == 1 and final["data"]["position"] == 10 * 8  # data order continued
    steps = losses(out)
    assert sorted(steps) == list(range(1, 11)) and steps[10] < steps[1]


def test_two_rank_zero3_bf16(tmp_path, train_shards):
    out = tmp_path / "z3"
    assert train(out, train_shards, 2, "max_steps=4", "checkpoint.every=2", "zero_stage=3", "precision=bf16") == [0, 0]
    from dnachunker import DNAChunker
    model = DNAChunker.from_pretrained(out / "export")  # fp32 weights gathered from ZeRO-3 shards
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    assert sorted(losses(out)) == [1, 2, 3, 4]
    assert len(list((out / "checkpoints").glob("step_*"))) == 2  # retention: keep=2


def test_bf16_keeps_fp32_parameters_under_autocast_and_bf16_weights_casts_them(tmp_path, train_shards):
    """precision=bf16: the module's parameters stay fp32 (the SSM's A_log, the norms) and the
    forward runs in bf16 (its loss differs from fp32's, slightly); bf16-weights: DeepSpeed's bf16
    mode, every parameter bf16 in the module. Read from each run's checkpoint, unpickling nothing."""
    import torch
    runs = {p: tmp_path / p for p in ("fp32", "bf16", "bf16-weights")}
    for precision, out in runs.items():
        assert train(out, train_shards, 1, "max_steps=2", "checkpoint.every=2", f"precision={precision}") == [0]
    dtypes = {}
    for precision, out in runs.items():
        state = torch.load(out / "checkpoints" / "step_00000002" / "mp_rank_00_model_states.pt", weights_only=True)
        dtypes[precision] = {v.dtype for k, v in state["module"].items() if "A_log" in k or "norm" in k}
    assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.float32}, "bf16-weights": {torch.bfloat16}}
    first = {p: losses(out)[1] for p, out in runs.items()}
    assert first["bf16"] != first["fp32"] and abs(first["bf16"] - first["fp32"]) < 0.05 * first["fp32"], first


def _poison(shards: Path, dest: Path, indices) -> Path:
    """A copy of the shard set whose samples `indices` have NaN loss weights (format 1 shards,
    which store a float16 weight per base, still read), written as a producer would: the manifest
    records the poisoned shards' SHA-256, so only the loss sees the NaN."""
    from dnachunker.fileio import file_sha256
    format1_copy(shards, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    recs = manifest["splits"]["train"]["shards"]
    for i in indices:
        rec = next(r for r in recs if r["first_index"] <= i < r["first_index"] + r["samples"])
        off = rec["offsets"][i - rec["first_index"]] + 3 * 512  # header, bases (512), header
        with open(dest / "train" / rec["name"], "r+b") as fh:
            fh.seek(off)
            fh.write(np.full(512, np.nan, dtype="<f2").tobytes())
        rec["sha256"] = file_sha256(dest / "train" / rec["name"])
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_nonfinite_steps_are_skipped_counted_and_stop_after_k(tmp_path, train_shards):
    from data_pipeline.loader import PretrainLoader
    order = PretrainLoader(str(train_shards), "train", 4, seed=0).order(0)
    bad = _poison(train_shards, tmp_path / "one_bad", [int(order[4 * 2])])  # the first sample of step 3
    for stage in (2, 3):
        out = tmp_path / f"skip{stage}"
        assert train(out, bad, 1, "max_steps=6", "checkpoint.every=100", f"zero_stage={stage}") == [0]
        client, runs = mlflow_runs(out)
        hist = {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, "train/nonfinite_steps")}
        loss = {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, "train/loss")}
        # counted once; later steps are finite, so the NaN gradient never reached the weights
        assert hist[2] == 0 and hist[3] == 1 and hist[6] == 1
        assert np.isnan(loss[3]) and all(np.isfinite(loss[s]) for s in (4, 5, 6))
    all_bad = _poison(train_shards, tmp_path / "all_bad", order[:40].tolist())
    out = tmp_path / "stop"
    assert train(out, all_bad, 1, "max_steps=6", "max_nonfinite=3") == [3]
    assert "3 non-finite steps in a row" in (out / "rank0.log").read_text()


def test_a_checkpoint_from_before_the_callbacks_resumes_their_counters():
    from train.resume import Resume
    old = Resume(state={"step": 3, "counters": {"tokens_seen": 96, "nonfinite_in_a_row": 1, "nonfinite_total": 2}})
    assert old.callback_states() == {"throughput": {"tokens_seen": 96}, "nonfinite": {"in_a_row": 1, "total": 2}}
    assert Resume().callback_states() == {}


def _fake_checkpoint(root, step, world=1, shards=None):
    d = checkpoint.step_dir(root, step)
    d.mkdir(parents=True)
    files = {f"rng_rank{r:05d}.json": 10 for r in range(world)}
    files.update({f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt": 100 for r in range(world if shards is None else shards)})
    for name, size in files.items():
        (d / name).write_bytes(b"x" * size)
    (d / checkpoint.STATE).write_text(json.dumps({"step": step, "seq": step, "world_size": world, "files": files}))
    return d


def test_resume_auto_ignores_truncated_unfinished_and_partial_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (5, 10):
        _fake_checkpoint(root, step)
    _fake_checkpoint(root, 20, world=4, shards=2)  # 2 of 4 optimizer shards, all listed files present
    (root / ".tmp-step_00000015").mkdir()  # interrupted while saving
    assert checkpoint.find_resume(root, "auto") == checkpoint.step_dir(root, 10)
    with open(checkpoint.step_dir(root, 10) / "rng_rank00000.json", "r+b") as fh:
        fh.truncate(5)
    assert checkpoint.find_resume(root, "auto") == checkpoint.step_dir(root, 5)
    (checkpoint.step_dir(root, 5) / checkpoint.STATE).unlink()
    assert checkpoint.find_resume(root, "auto") is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        checkpoint.find_resume(root, str(checkpoint.step_dir(root, 10)))


def test_retention_follows_write_order_and_spares_latest(tmp_path):
    root = tmp_path / "checkpoints"
    for step, seq in ((6, 1), (2, 2), (4, 3)):  # step 2 and 4 written after a rollback from 6
        d = _fake_checkpoint(root, step)
        state = json.loads((d / checkpoint.STATE).read_text())
        (d / checkpoint.STATE).write_text(json.dumps({**state, "seq": seq}))
    (root / "latest").write_text("step_00000002")
    assert [p.name for p in checkpoint.retain(root, keep=1)] == ["step_00000006"]
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000002", "step_00000004"]


def test_bad_config_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                        f"out_dir={tmp_path}", "zero_stage=4"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "zero_stage: must be in [1,3], got 4" in r.stderr
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "nope.yaml"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "nope.yaml: pretraining config file not found" in r.stderr


def test_training_step_waits_on_the_device_only_to_size_chunks(tmp_path, train_shards):
    """Host syncs made by our code in 4 more training steps (and one more logging interval): the
    model sizes its chunk tensors once per stage per micro-batch; metrics and the non-finite check
    stay on the device and are read once per logging interval."""
    def count(steps: int) -> dict[str, int]:
        out = tmp_path / f"s{steps}"
        args = [sys.executable, "-m", "tests.sync_counter", str(tmp_path / f"{steps}.json"), "--",
                "--config", "configs/pretrain/tiny_chr20.yaml", *tiny_run(out, train_shards), f"max_steps={steps}",
                "tracking.log_every=4", "val_every=0", "checkpoint.every=100", "data.num_workers=0"]
        r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads((tmp_path / f"{steps}.json").read_text())
    a, b = count(4), count(8)
    more = {k: b.get(k, 0) - a.get(k, 0) for k in b if b.get(k, 0) != a.get(k, 0)}
    stages = 2
    chunks = sum(v for k, v in more.items() if k.startswith("dnachunker/modules/chunking.py"))
    assert chunks == 4 * stages, more  # one per stage per micro-batch: inherent
    assert sum(more.values()) - chunks <= 2, more  # the metrics and the non-finite counters, once per log


def test_a_run_is_quiet_by_default_ends_with_a_summary_and_says_everything_with_v(tmp_path, train_shards):
    """The console: the rendezvous, one progress bar and a summary (steps, tokens, validation loss,
    the export and where the metrics are); DeepSpeed's and the export's own output goes to
    <out_dir>/train.log, and with -v to the console."""
    def run(out, *extra):
        return subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                               *tiny_run(out, train_shards), "max_steps=3", "checkpoint.every=3", *extra], cwd=ROOT,
                              capture_output=True, text=True)
    quiet = run(tmp_path / "q")
    assert quiet.returncode == 0 and quiet.stdout == ""
    lines = [x for x in quiet.stderr.replace("\r", "\n").splitlines() if x.strip() and not x.startswith("pretrain:")]
    assert [x.split()[0] for x in lines] == ["rendezvous", "finished", "metrics:"], lines
    assert "3 steps (6,144 tokens); validation MLM loss" in lines[1] and f"{tmp_path / 'q' / 'export'}" in lines[1]
    assert str(tmp_path / "q" / "metrics.jsonl") in lines[2] and "mlflow.db" in lines[2]
    log = (tmp_path / "q" / "train.log").read_text()
    assert "Setting accelerator to CPU" in log and "Reconstructed fp32 state dict" in log and "rank 0 (cpu)" in log
    loud = run(tmp_path / "v", "-v")
    assert "Setting accelerator to CPU" in loud.stdout + loud.stderr and not (tmp_path / "v" / "train.log").exists()


def test_quiet_sends_library_warnings_to_the_log_and_keeps_ours_on_the_console(tmp_path):
    code = (f"from pathlib import Path\nfrom train.pretrain import _quiet\n_quiet(Path({str(tmp_path)!r}))\n"
            "exec(compile('import warnings; warnings.warn(\"deprecated thing\", FutureWarning)', "
            "'/venv/lib/python3.11/site-packages/torch/distributed/c10d_logger.py', 'exec'))\n"
            f"exec(compile('import warnings; warnings.warn(\"ours\")', {str(ROOT / 'dnachunker' / 'x.py')!r}, 'exec'))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "train.log").read_text()
    assert "deprecated thing" in log and "deprecated thing" not in r.stderr
    assert "ours" in r.stderr and "ours" not in log
