"""Inference in parts. score-variants: in one process and as a Slurm array on the two-node local
cluster with an element requeued mid-way; the merge equals a single run (scores to 1e-5: the parts
batch the variants differently, and CPU matrix products round differently with the batch's size);
another job's parts and missing parts are refused, and nothing half-merged appears. tracks and
embed: the merge equals one run (embed's chunk means to float64 summation order)."""
import os
import subprocess
import time

import numpy as np
import pytest

from .conftest import ROOT
from .test_inference import _cli
from .test_slurm import _sacct, needs_slurm
from .test_variants import _variants, _vcf

pytestmark = pytest.mark.slow


def _table(path):
    rows = [ln.split("\t") for ln in path.read_text().splitlines()]
    return rows[0], rows[1:]


def _same(a, b):
    """Two score tables: identical but for the last digits of the log-probabilities."""
    (head_a, rows_a), (head_b, rows_b) = _table(a), _table(b)
    assert head_a == head_b and len(rows_a) == len(rows_b)
    numeric = [head_a.index(c) for c in ("score", "ref_logp", "alt_logp")]
    for x, y in zip(rows_a, rows_b):
        assert [v for i, v in enumerate(x) if i not in numeric] == [v for i, v in enumerate(y) if i not in numeric]
        np.testing.assert_allclose([float(x[i]) for i in numeric], [float(y[i]) for i in numeric], atol=1e-5)


@pytest.fixture
def job(tmp_path, pretrained, chr20_indexed):
    vcf = _vcf(tmp_path / "v.vcf", _variants(chr20_indexed["text"], np.random.default_rng(3), 12))
    args = ["score-variants", "--model", pretrained, "--vcf", vcf, "--fasta", chr20_indexed["indexed"], "--context", 512]
    _cli(*args, "--out", tmp_path / "single.tsv")
    return args


def test_parts_in_one_process_merge_to_the_single_run_and_refuse_another_jobs_parts(tmp_path, job):
    _cli(*job, "--out", tmp_path / "p.tsv", "--parts", 3)
    _same(tmp_path / "single.tsv", tmp_path / "p.tsv")
    r = _cli(*job, "--out", tmp_path / "p.tsv", "--parts", 3, "--unmasked", ok=False)
    assert "p.tsv.parts: holds parts of another job (part_00000_of_00003.json differs in unmasked)" in r.stderr
    (tmp_path / "q.tsv.parts").mkdir()
    _cli(*job, "--out", tmp_path / "q.tsv", "--parts", 3, "--part", 1)
    r = _cli(*job, "--out", tmp_path / "q.tsv", "--parts", 3, "--merge", ok=False)
    assert "2 of 3 parts not done (0, 2)" in r.stderr and not (tmp_path / "q.tsv").exists()


@needs_slurm
def test_a_slurm_array_with_an_element_requeued_midway_merges_to_the_single_run(tmp_path, job):
    out = tmp_path / "s.tsv"
    env = {**os.environ, "CPUS": "1", "SBATCH_ARGS": "--gres=none --time=10:00", "PARTS_LOGS": str(tmp_path / "logs")}
    r = subprocess.run(["bash", "slurm/parts.sh", "3", *map(str, job), "--out", str(out), "--batch-size", "1"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    array, merge = r.stdout.split("array job ")[1].split()[0], r.stdout.split("merge: job ")[1].split()[0]
    parts = tmp_path / "s.tsv.parts"
    deadline = time.time() + 300
    while not list(parts.glob(".part_00001_of_00003.tmp-*")) and time.time() < deadline:
        assert _sacct(f"{array}_1", "State") not in ("FAILED", "COMPLETED"), list((tmp_path / "logs").glob("*"))
        time.sleep(0.2)
    assert not (parts / "part_00001_of_00003.json").exists(), "element 1 finished before it could be requeued"
    subprocess.run(["scontrol", "requeue", f"{array}_1"], check=True)
    while _sacct(merge, "State") not in ("COMPLETED", "FAILED", "CANCELLED") and time.time() < deadline:
        time.sleep(1)
    assert _sacct(merge, "State") == "COMPLETED", (tmp_path / "logs").glob("*")
    states = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", f"{array}_1", "-o", "State"], capture_output=True,
                            text=True).stdout.split()
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states
    _same(tmp_path / "single.tsv", out)


def test_tracks_in_parts_merge_to_the_same_files_as_one_run(tmp_path, pretrained, chr20_indexed):
    import pyBigWig
    (tmp_path / "r.bed").write_text("".join(f"chr20\t{s}\t{s + 700}\n" for s in (100_000, 150_000, 200_000, 260_000)))
    args = ["tracks", "--model", pretrained, "--fasta", chr20_indexed["indexed"], "--bed", tmp_path / "r.bed", "--window", 512]
    _cli(*args, "--out", tmp_path / "one")
    _cli(*args, "--out", tmp_path / "three", "--parts", 3)
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(p.name for p in (tmp_path / "three").iterdir())
    for s in (0, 1):
        assert (tmp_path / "one" / f"chunks_{s}.bed").read_bytes() == (tmp_path / "three" / f"chunks_{s}.bed").read_bytes()
    for name in ("p_0", "p_1", "entropy", "logp_ref"):
        a, b = (pyBigWig.open(str(tmp_path / d / f"{name}.bw")) for d in ("one", "three"))
        assert a.intervals("chr20") == b.intervals("chr20")


def test_embed_in_parts_cut_inside_sequences_and_chunks_merges_to_one_run(tmp_path, pretrained, chr20_indexed):
    """Two regions (one on the minus strand) in 11 windows, split into 4 parts that begin inside
    sequences and inside chunks; one window per batch, so both runs compute the same numbers."""
    import zarr
    (tmp_path / "r.bed").write_text("chr20\t100000\t103000\ta\t0\t-\nchr20\t200000\t200900\tb\n")
    args = ["embed", "--model", pretrained, "--fasta", chr20_indexed["indexed"], "--bed", tmp_path / "r.bed",
            "--window", 512, "--overlap", 128, "--batch-size", 1]
    _cli(*args, "--out", tmp_path / "one.zarr", "--per-base", "--chunks", 0)
    r = _cli(*args, "--out", tmp_path / "four.zarr", "--per-base", "--chunks", 0, "--parts", 4)
    assert "part 3 of 4: 3 windows" in r.stderr
    one, four = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r") for n in ("one", "four"))
    assert dict(one.attrs) == dict(four.attrs) and one.attrs["names"] == ["a", "b"]
    for i in (0, 1):
        np.testing.assert_array_equal(one[f"per_base/{i}"][:], four[f"per_base/{i}"][:])
        np.testing.assert_array_equal(one[f"chunk_starts/{i}"][:], four[f"chunk_starts/{i}"][:])
        np.testing.assert_allclose(one[f"per_chunk/{i}"][:], four[f"per_chunk/{i}"][:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(one["mean"][:], four["mean"][:], rtol=1e-6, atol=1e-7)
    # means only, into one .npz; another job's parts refused; a merge with parts missing writes nothing
    _cli(*args, "--out", tmp_path / "one.npz")
    _cli(*args, "--out", tmp_path / "two.npz", "--parts", 2)
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-6, atol=1e-7)
        assert a["names"].tolist() == b["names"].tolist() == ["a", "b"]
    r = _cli(*args, "--out", tmp_path / "four.zarr", "--per-base", "--chunks", 1, "--parts", 4, ok=False)
    assert "four.zarr.parts: holds parts of another job (part_00000_of_00004.json differs in chunks)" in r.stderr
    _cli(*args, "--out", tmp_path / "x.zarr", "--parts", 3, "--part", 2)
    r = _cli(*args, "--out", tmp_path / "x.zarr", "--parts", 3, "--merge", ok=False)
    assert "2 of 3 parts not done (0, 1)" in r.stderr and not (tmp_path / "x.zarr").exists()
