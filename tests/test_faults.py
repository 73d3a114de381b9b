"""What a shared cluster does to a run, reproduced for real: a checkpoint carrying a pickle
payload, a warm start from someone else's export, credentials in a tracking URI, a damaged shard,
a deleted MLflow store, a full disk (a small tmpfs), a read-only out_dir, files from Windows tools,
a VCF named the other way, and a real MLflow tracking server that goes away mid-run."""
import ast
import json
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from dnachunker import DNAChunker, DNAChunkerConfig
from train import checkpoint
from train.lock import LockError, RunLock

from .conftest import CHR20, ROOT, shared_file
from .test_job_control import _logged_steps, _wait_for
from .test_model import CONFIGS
from .test_train import _port, tiny_run

PACKAGES = ("dnachunker", "data_pipeline", "train", "evaluation", "slurm", "bench")


def pretrain(out: Path, shards: Path, *overrides: str, background=False, env=None):
    """One rank of the tiny run, as a user starts it; -> CompletedProcess (or the Popen)."""
    args = [sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
            *tiny_run(out, shards), *overrides]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "2", **(env or {})}
    if background:
        out.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(out.parent / f"{out.name}.err", "wb"))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs: a disk that fills up, or a read-only one."""
    mounted = []

    def mount(size: str, ro: bool = False) -> Path:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if ro else ""), "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip()}): needs root, as CI has")
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)])


def _fill(disk: Path) -> Path:
    """Write zeros into `disk` until it is full."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to flush at close
        try:
            while True:
                fh.write(bytes(1 << 16))
                fh.flush()
        except OSError:
            pass
    return filler


# ---- 1. what is data and what is code -------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_project_never_unpickles_what_it_loads():
    """Every file the project reads itself is read as data: torch.load only with
    weights_only=True, no pickle, no numpy allow_pickle (DeepSpeed's own loads are its own)."""
    bad = []
    for py in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if (name.endswith("torch.load") and kw.get("weights_only") != "True") or name.startswith("pickle.") \
                    or kw.get("allow_pickle") == "True":
                bad.append(f"{py.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_a_checkpoint_whose_files_changed_is_refused_before_anything_is_unpickled(tmp_path, train_shards):
    out = tmp_path / "run"
    assert pretrain(out, train_shards, "max_steps=2", "checkpoint.every=2").returncode == 0
    step = out / "checkpoints" / "step_00000002"
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker))
    for name in ("rng_rank00000.json", "mp_rank_00_model_states.pt"):  # ours, and DeepSpeed's pickle
        copy = tmp_path / "shared" / name / step.name
        shutil.copytree(step, copy)
        (copy / name).write_bytes(payload)
        state = json.loads((copy / checkpoint.STATE).read_text())
        state["files"][name] = len(payload)  # what a hand-edited checkpoint would also change
        (copy / checkpoint.STATE).write_text(json.dumps(state))
        r = pretrain(tmp_path / f"resumed-{name}", train_shards, "max_steps=4", f"checkpoint.resume={copy}")
        assert r.returncode == 2, r.stderr[-2000:]
        assert f"{copy / name}: SHA-256 differs from the one recorded at save: corrupted or edited" in r.stderr
        assert "Traceback" not in r.stderr and not marker.exists()


@pytest.mark.slow
def test_a_forged_checkpoint_with_rewritten_hashes_is_refused_and_its_payload_never_runs(tmp_path, train_shards):
    """The attack: a copied checkpoint whose DeepSpeed model file gains a pickle payload (beside
    the real weights, so the file still looks right), its SHA-256 and size rewritten in
    trainer_state.json, and a colleague's YAML that resumes from it. Refused naming the file and
    what it names; the payload never runs."""
    out = tmp_path / "run"
    assert pretrain(out, train_shards, "max_steps=2", "checkpoint.every=2").returncode == 0
    forged = tmp_path / "from-a-colleague" / "step_00000002"
    shutil.copytree(out / "checkpoints" / "step_00000002", forged)
    marker = tmp_path / "payload-ran"
    model_file = forged / "mp_rank_00_model_states.pt"
    state = torch.load(model_file, weights_only=True)
    state["extra"] = _Payload(marker)
    torch.save(state, model_file)
    trainer = json.loads((forged / checkpoint.STATE).read_text())
    trainer["sha256"][model_file.name] = hashlib.sha256(model_file.read_bytes()).hexdigest()
    trainer["files"][model_file.name] = model_file.stat().st_size
    (forged / checkpoint.STATE).write_text(json.dumps(trainer))
    colleague = tmp_path / "colleague.yaml"
    colleague.write_text((out / "config.yaml").read_text().replace("resume: auto", f"resume: {forged}")
                         .replace(str(out), str(tmp_path / "mine")) + "\n")
    assert f"resume: {forged}" in colleague.read_text()
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", str(colleague), "max_steps=4"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"error: {model_file}: refused: loading it would run code (it names posix.system" in r.stderr
    assert "resumed from" not in r.stderr and "Traceback" not in r.stderr and not marker.exists()


@pytest.mark.slow
def test_a_secret_interpolated_from_the_environment_is_recorded_nowhere(tmp_path, train_shards):
    """tracking.run_name: "run-${oc.env:MY_API_TOKEN}" on the command line and the token in a
    config file's value: the run uses it, and no record has it in clear (config.yaml, the
    checkpoint's trainer state, summary.json, the MLflow run name and params, the export's card,
    a sweep.yaml); a password inside an exception's text is redacted in warnings too."""
    token = "tok-5ecret-9f3a7"
    out = tmp_path / "run"
    r = pretrain(out, train_shards, "max_steps=2", "checkpoint.every=2", "tracking.run_name=run-${oc.env:MY_API_TOKEN}",
                 env={"MY_API_TOKEN": token})
    assert r.returncode == 0, r.stderr[-2000:]
    records = [out / "config.yaml", out / "summary.json", out / "checkpoints" / "step_00000002" / checkpoint.STATE,
               out / "export" / "README.md", out / "metrics.jsonl"]
    assert all(p.is_file() and token not in p.read_text() for p in records)
    assert "run_name: run-***" in (out / "config.yaml").read_text()
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("dnachunker-pretrain").experiment_id])[0]
    assert run.info.run_name == "run-***" and token not in json.dumps(run.data.params) + r.stderr
    from dnachunker.configlib import redact, to_yaml
    from studies.config import load_sweep
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("tracking_uri: http://me:${oc.env:MY_API_TOKEN}@mlflow.example:5000\npoints: [{label: a}]\n")
    os.environ["MY_API_TOKEN"] = token
    try:
        text = to_yaml(load_sweep(str(sweep), []))
    finally:
        del os.environ["MY_API_TOKEN"]
    assert token not in text and "http://***@mlflow.example:5000" in text
    assert redact("ConnectionError: http://bob:hunter22@db:5432/x refused") == "ConnectionError: http://***@db:5432/x refused"


@pytest.mark.slow
def test_resuming_another_out_dirs_checkpoint_starts_a_run_that_names_the_old_one(tmp_path, train_shards):
    """The checkpoint's MLflow run lives in the other out_dir's store: one note, a new run in this
    store tagged with the old run's id, every step logged there; no retries, tracking stays on."""
    first = tmp_path / "first"
    assert pretrain(first, train_shards, "max_steps=2", "checkpoint.every=2").returncode == 0
    old = json.loads((first / "summary.json").read_text())["mlflow_run_id"]
    out = tmp_path / "second"
    r = pretrain(out, train_shards, "max_steps=4", f"checkpoint.resume={first / 'checkpoints' / 'step_00000002'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count(f"note: the checkpoint's MLflow run {old} is not in") == 1
    assert "warning: MLflow" not in r.stderr and "resumed from" in r.stderr
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("dnachunker-pretrain").experiment_id])[0]
    assert run.data.tags["dnachunker.continues_run"] == old and run.info.run_id != old
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [3, 4]


@pytest.mark.slow
def test_init_from_an_export_warm_starts_with_the_exports_model_and_a_fresh_optimizer(tmp_path, train_shards):
    first = tmp_path / "colleague"
    assert pretrain(first, train_shards, "max_steps=4", "checkpoint.every=4").returncode == 0
    out = tmp_path / "mine"
    r = pretrain(out, train_shards, f"init_from={first / 'export'}", "model.target_ratio=[0.4,0.4]", "max_steps=1",
                 "optim.lr=1e-12", "checkpoint.every=1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the model section is the export's (model.target_ratio: [0.4, 0.4] -> [0.5, 0.5])" in r.stderr
    assert "optimizer, schedule and data order start afresh" in r.stderr
    assert json.loads((out / "summary.json").read_text())["step"] == 1  # its own step count
    theirs, mine = (DNAChunker.from_pretrained(p / "export").state_dict() for p in (first, out))
    assert all(torch.allclose(theirs[k], mine[k], atol=1e-8) for k in theirs)  # lr 1e-12: the weights it started from
    fresh = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml"))
    assert not torch.equal(fresh.head.weight, mine["head.weight"])
    r = pretrain(tmp_path / "bad", train_shards, f"init_from={first}", "max_steps=1")
    assert r.returncode == 2 and "not an export (needs config.yaml and model.safetensors" in r.stderr


# ---- 2, 3, 7: what the project writes --------------------------------------------------------

def test_an_exports_config_is_bounded_and_checked_against_its_weights_before_anything_is_built(tmp_path,
                                                                                              pretrained):
    """A config that asks for 4000 layers of width 8192 is refused at load with the bound it breaks,
    in well under a second and without growing; one that fits the bounds but not the weights is
    refused naming the tensor; so are weights holding NaN or Inf, from Python and the commands."""
    import resource
    import time

    from safetensors.torch import load_file, save_file
    export = tmp_path / "export"
    shutil.copytree(pretrained, export)
    config = (export / "config.yaml").read_text()
    (export / "config.yaml").write_text(config.replace("main_layers: 2", "main_layers: 4000")
                                        .replace("- 64\n", "- 8192\n", 1))
    rss, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    with pytest.raises(ValueError, match="main_layers: must be in \\[1,512\\], got 4000"):
        DNAChunker.from_pretrained(export)
    assert time.time() - t0 < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # KiB
    (export / "config.yaml").write_text(config.replace("main_layers: 2", "main_layers: 3"))
    with pytest.raises(ValueError, match="do not fit this version's model; missing: main.blocks.2.attn"):
        DNAChunker.from_pretrained(export)  # a layer the weights do not have: named
    (export / "config.yaml").write_text(config.replace("  d_state: 16", "  d_state: 32"))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor stages\.0\.\S+ has shape \[\d+(, \d+)*\], "
                                         r"where config.yaml's model has"):
        DNAChunker.from_pretrained(export)
    (export / "config.yaml").write_text(config)
    for bad in (float("nan"), float("inf")):
        state = load_file(str(pretrained / "model.safetensors"))
        state["head.weight"][3, 2] = bad
        save_file(state, str(export / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(ValueError, match="tensor head.weight holds NaN or infinite values \\(1 of"):
            DNAChunker.from_pretrained(export)
    (tmp_path / "s.fa").write_text(">s\nACGTACGTAC\n")
    r = cli("dnachunker_cli", "embed", "--model", str(export), "--fasta", str(tmp_path / "s.fa"), "--out",
            str(tmp_path / "e.npz"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {export / 'model.safetensors'}: tensor head.weight holds NaN or infinite values (1 of 224): refusing "
        "weights that would give NaN embeddings and scores"], r.stderr
    assert not (tmp_path / "e.npz").exists()


def test_a_killed_saves_temporary_weights_are_removed_by_the_next_save(tmp_path):
    """A save killed mid-way leaves a hidden .<name>.tmp-* directory holding whole weights; the next
    save of the same export removes it (and writes its own complete set)."""
    export = tmp_path / "export"
    stale = tmp_path / ".export.tmp-k1ll3d"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(bytes(1 << 20))
    DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml")).save_pretrained(export)
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["export"]


def test_save_pretrained_replaces_only_its_own_files_readable_by_the_umask(tmp_path, monkeypatch):
    export = tmp_path / "export"
    export.mkdir()
    (export / "NOTES.md").write_text("my notes")
    (export / "results.csv").write_text("a,b\n")
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml"))
    old = os.umask(0o022)
    try:
        model.save_pretrained(export)
        assert (export / "NOTES.md").read_text() == "my notes" and (export / "results.csv").is_file()
        assert DNAChunker.from_pretrained(export).num_parameters() == model.num_parameters()
        assert oct(export.stat().st_mode & 0o777) == "0o755"
        assert {oct(p.stat().st_mode & 0o777) for p in export.iterdir()} == {"0o644"}
        os.umask(0o002)
        model.save_pretrained(tmp_path / "group")
        assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "group").iterdir()} == {"0o664"}
    finally:
        os.umask(old)
    from dnachunker.export import hf as hf_export

    def broken(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(hf_export, "write", broken)
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    with pytest.raises(OSError):
        model.save_pretrained(export)
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before  # untouched, no temporary left
    assert not list(tmp_path.glob(".export.tmp-*"))


# ---- 8, 9: the tracking store and the lock ----------------------------------------------------

def test_an_empty_lock_is_judged_by_its_age(tmp_path):
    (tmp_path / "run.lock").write_text("")  # what a full disk at start-up leaves
    with pytest.raises(LockError, match="empty or unreadable and was written 0 s ago.*taken over once untouched for 60 s"):
        RunLock(tmp_path).acquire()
    old = time.time() - 100
    os.utime(tmp_path / "run.lock", (old, old))
    lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()


@pytest.mark.slow
def test_a_deleted_mlflow_store_is_noticed_once_and_metrics_jsonl_keeps_every_step(tmp_path, train_shards):
    out = tmp_path / "run"
    proc = pretrain(out, train_shards, "max_steps=16", "checkpoint.every=100", "val_every=0", background=True)
    _wait_for(lambda: len(_logged_steps(out)) >= 3, what="three logged steps")
    (out / "mlflow.db").unlink()
    assert proc.wait(timeout=600) == 0
    err = (tmp_path / "run.err").read_text()
    assert err.count(f"the MLflow store {out / 'mlflow.db'} was deleted or moved") == 1
    assert f"every metric is in {out / 'metrics.jsonl'}" in err
    assert sorted(set(_logged_steps(out))) == list(range(1, 17))


# ---- 4: damaged shards stop training, naming the shard and the sample ---------------------------

@pytest.mark.slow
def test_training_on_a_damaged_shard_stops_naming_it(tmp_path, train_shards):
    from data_pipeline.loader import PretrainLoader
    from data_pipeline.reader import ShardSplit

    from .test_data_pipeline import _flip_a_base
    data = tmp_path / "data"
    shutil.copytree(train_shards, data)
    first = int(PretrainLoader(str(data), "train", 4).order(0)[0])  # the first sample the run reads
    split = ShardSplit(data, "train")
    shard = int(np.searchsorted(split.first, first, side="right") - 1)
    offset = split.shards[shard]["offsets"][first - int(split.first[shard])] + 512  # inside its bases
    _flip_a_base(split.paths[shard], at=offset / split.shards[shard]["bytes"])
    r = pretrain(tmp_path / "run", data, "max_steps=4", "checkpoint.every=1000", "val_every=0")
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"{split.paths[shard]}: sample {first} (byte " in r.stderr
    assert "CRC-32 differs from the shard record" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run" / "export").exists()


# ---- 9, 10: full disks, read-only directories ---------------------------------------------------

@pytest.mark.slow
def test_embed_on_a_full_disk_leaves_the_previous_output_whole(tmp_path, pretrained, tmpfs):
    """Embeddings and their names are one file written at once: a full disk leaves the previous
    output as it was (2 rows with their 2 names), not a new array beside old names."""
    disk = tmpfs("256k")
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nACGTACGTAC\n>b\nTTGACCATGA\n")
    out = disk / "e.npz"
    assert cli("dnachunker_cli", "embed", "--model", pretrained, "--fasta", fasta, "--out", out).returncode == 0
    before = out.read_bytes()
    fasta.write_text(">c\n" + "ACGT" * 3000 + "\n")
    filler = _fill(disk)
    r = cli("dnachunker_cli", "embed", "--model", pretrained, "--fasta", fasta, "--out", out)
    assert r.returncode == 2 and "No space left on device (the disk is full" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and out.read_bytes() == before
    assert np.load(out)["names"].tolist() == ["a", "b"] and sorted(p.name for p in disk.iterdir()) == ["e.npz", "filler"]
    filler.unlink()


@pytest.mark.slow
def test_a_full_disk_at_start_up_leaves_no_lock_and_the_next_start_runs(tmp_path, train_shards, tmpfs):
    disk = tmpfs("64m")
    filler = _fill(disk)
    r = pretrain(disk / "run", train_shards, "max_steps=1")
    assert r.returncode == 2 and "No space left on device" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (disk / "run" / "run.lock").exists()
    filler.unlink()
    r = pretrain(disk / "run", train_shards, "max_steps=1", "checkpoint.every=1")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_an_error_and_leaves_nothing_that_looks_complete(tmp_path, train_shards,
                                                                                               tmpfs):
    disk = tmpfs("1m")  # room for the run's small files, not for a checkpoint (~2.8 MB)
    out = disk / "run"
    r = pretrain(out, train_shards, "max_steps=4", "checkpoint.every=2",
                 f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"error: {out / 'checkpoints' / '.tmp-step_00000002'}: writing the checkpoint of step 2 failed" in r.stderr
    assert "a full disk?" in r.stderr and "Traceback" not in r.stderr
    assert not list((out / "checkpoints").glob("*step_*")) and not (out / "export").exists()
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_a_full_disk_while_sharding_is_an_error_and_leaves_no_manifest(tmpfs):
    disk = tmpfs("200k")
    r = cli("data_pipeline", "all", f"fasta={shared_file('ncbi_softmasked_small_chroms/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz')}",
            f"out={disk / 'yeast'}", "window.length=512", "splits.train=['*']", "splits.valid=[]", "splits.test=[]",
            "workers=2", "samples_per_shard=64")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: " in r.stderr and "No space left on device (the disk is full" in r.stderr
    assert "Traceback" not in r.stderr and not (disk / "yeast" / "manifest.json").exists()


@pytest.mark.slow
def test_a_read_only_out_dir_is_an_error(tmp_path, train_shards, tmpfs):
    disk = tmpfs("1m", ro=True)
    r = pretrain(disk / "run", train_shards, "max_steps=1")
    assert r.returncode == 2 and f"error: {disk / 'run'}: Read-only file system" in r.stderr, r.stderr[-2000:]
    r = cli("data_pipeline", "all", f"fasta={CHR20}", f"out={disk / 'chr20'}")
    assert r.returncode == 2 and "Read-only file system" in r.stderr and "Traceback" not in r.stderr


def test_robustness_with_a_missing_bpe_is_an_error(tmp_path):
    r = cli("evaluation", "robustness", "--bpe", tmp_path / "nope", "--fasta", shared_file(
        "ncbi_softmasked_small_chroms/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"), "--count", "2")
    assert r.returncode == 2 and f"error: {tmp_path / 'nope'}: tokenization 'bpe' but no bpe.json" in r.stderr


# ---- 11: inputs from the wild ------------------------------------------------------------------

def test_a_fasta_with_a_byte_order_mark_reads_as_without(tmp_path):
    from dnachunker.fasta import read_fasta
    text = ">a desc\nACGTNacgt\n>b\nGGCC\n"
    (tmp_path / "plain.fa").write_text(text)
    (tmp_path / "bom.fa").write_bytes(b"\xef\xbb\xbf" + text.encode())
    plain, bom = (list(read_fasta(tmp_path / f)) for f in ("plain.fa", "bom.fa"))
    assert [(n, c.tolist(), s.tolist()) for n, c, s in bom] == [(n, c.tolist(), s.tolist()) for n, c, s in plain]


def test_a_csv_task_with_a_byte_order_mark(tmp_path, chr20_windows):
    from evaluation.formats import load_task
    rows = "".join(f"{s},{i % 2},{'test' if i < 4 else 'train'}\r\n" for i, s in enumerate(chr20_windows(100, 12)))
    (tmp_path / "task.csv").write_bytes(b"\xef\xbb\xbf" + ("sequence,label,split\r\n" + rows).encode())
    task = load_task("csv", tmp_path / "task.csv")
    assert len(task.train) == 8 and len(task.test) == 4


@pytest.mark.slow
def test_embed_and_score_variants_take_windows_files_and_say_which_naming_matches(tmp_path, pretrained, chr20_prefix):
    seqs = [chr20_prefix[1_000_000 + 300 * i:1_000_000 + 300 * i + 300] for i in range(3)]
    (tmp_path / "seqs.csv").write_bytes(b"\xef\xbb\xbf" + ("name,sequence\r\n" + "".join(
        f"s{i},{s}\r\n" for i, s in enumerate(seqs))).encode())
    r = cli("dnachunker_cli", "embed", "--model", pretrained, "--csv", tmp_path / "seqs.csv", "--name-column", "name",
            "--out", tmp_path / "csv.npz")
    assert r.returncode == 0, r.stderr[-2000:]
    ref = tmp_path / "ref.fa"
    ref.write_text(">chr20\n" + chr20_prefix[1_000_000:1_010_000] + "\n")
    (tmp_path / "crlf.bed").write_bytes(b"".join(f"chr20\t{300 * i}\t{300 * i + 300}\tb{i}\t0\t-\r\n".encode()
                                                 for i in range(3)))
    r = cli("dnachunker_cli", "embed", "--model", pretrained, "--bed", tmp_path / "crlf.bed", "--fasta", ref,
            "--out", tmp_path / "bed.npz")
    assert r.returncode == 0, r.stderr[-2000:]
    shapes = [np.load(tmp_path / f"{name}.npz")["embeddings"].shape for name in ("csv", "bed")]
    assert shapes == [(3, 32), (3, 32)]
    vcf = tmp_path / "ensembl.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n" + "".join(
        f"20\t{p}\tv{p}\t{chr20_prefix[1_000_000 + p - 1].upper()}\tA\n" for p in (1000, 2000)))
    r = cli("dnachunker_cli", "score-variants", "--model", pretrained, "--vcf", vcf, "--fasta", ref, "--out",
            tmp_path / "scores.tsv")
    assert r.returncode == 2 and "none of its chromosomes (20" in r.stderr
    assert "would match with 'chr' added (e.g. 20 -> chr20)" in r.stderr and not (tmp_path / "scores.tsv").exists()


# ---- 12: a real MLflow tracking server ---------------------------------------------------------

@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` (the full package, a test extra) on localhost: (uri, stop)."""
    port = _port()
    log = open(tmp_path / "mlflow-server.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1", "--backend-store-uri",
                             f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
                             str(tmp_path / "artifacts")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        except OSError:
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-2000:]
            return False
    _wait_for(up, timeout=180, what="the MLflow server")

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    yield f"http://127.0.0.1:{port}", stop
    stop()


@pytest.mark.slow
def test_a_sweep_logs_to_a_tracking_server_in_parallel_with_credentials_redacted(tmp_path, train_shards,
                                                                                 mlflow_server, cores_shared_by_nodes):
    from mlflow.tracking import MlflowClient
    uri, _ = mlflow_server
    secret_uri = uri.replace("http://", "http://alice:s3cret-token@")
    out = tmp_path / "sweep"
    train = tiny_run(out / "unused", train_shards)[1:] + ["max_steps=3", "checkpoint.every=100", "val_every=0"]
    r = cli("studies.sweep", "--sweep", "configs/sweep/ablation.yaml", f"out_dir={out}", "evaluation=null",
            "name=server", "parallel=2", f"tracking_uri={secret_uri}", f"overrides={json.dumps(train)}",
            "points=[{label: a}, {label: b, model.ratio_loss: false}]")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = json.loads((out / "jobs.json").read_text())
    (a, b) = [(j["started"], j["ended"]) for j in jobs]
    assert a[0] < b[1] and b[0] < a[1]  # the two points ran (and logged) at the same time
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dnachunker-sweep-server").experiment_id])
    children = [x for x in runs if "mlflow.parentRunId" in x.data.tags]
    assert len(children) == 2
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
        assert run.data.params["tracking.tracking_uri"] == uri.replace("http://", "http://***@")
    written = [*(out / p / "config.yaml" for p in ("p00_base", "p01_ratio_loss-False")), out / "sweep.yaml",
               *(out / "p00_base" / "checkpoints").glob("step_*/trainer_state.json")]
    assert len(written) == 4 and all("s3cret" not in f.read_text() for f in written)


@pytest.mark.slow
def test_a_resumed_run_appends_to_its_server_run_and_survives_the_server_going_away(tmp_path, train_shards,
                                                                                   mlflow_server):
    from mlflow.tracking import MlflowClient
    uri, stop = mlflow_server
    out = tmp_path / "run"
    track = [f"tracking.tracking_uri={uri}", "checkpoint.every=2", "val_every=0"]
    assert pretrain(out, train_shards, "max_steps=2", *track).returncode == 0
    run_id = json.loads((out / "summary.json").read_text())["mlflow_run_id"]
    proc = pretrain(out, train_shards, "max_steps=24", *track, "checkpoint.every=100", background=True)
    _wait_for(lambda: max(_logged_steps(out), default=0) >= 6, what="step 6")
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert steps[:2] == [1, 2] and max(steps) >= 3  # the resumed run appends to the same run
    stop()
    assert proc.wait(timeout=600) == 0
    err = (tmp_path / "run.err").read_text()
    assert err.count(f"warning: MLflow tracking at {uri} failed") == 1 and "training continues without MLflow" in err
    assert sorted(set(_logged_steps(out))) == list(range(1, 25))
