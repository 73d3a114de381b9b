"""The genome -> zarr -> shards pipeline and the training loader, on real genomes."""
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_pipeline.__main__ import main as cli
from data_pipeline.errors import DataError
from dnachunker.fasta import read_fasta
from data_pipeline.loader import PretrainLoader
from data_pipeline.reader import ShardSplit
from data_pipeline.shards import verify
from dnachunker.masking import IGNORE
from dnachunker.tokenizer import BASES, MASK, decode

from .conftest import ROOT, format1_copy, shared_file

CHR20 = "hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz"
YEAST = "ncbi_softmasked_small_chroms/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"
FLY = "ncbi_softmasked_small_chroms/DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz"


def fasta_text(path: Path) -> dict[str, str]:
    """Independent reference parser: plain Python string handling."""
    out, name = {}, None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                name = line[1:].split()[0]
                out[name] = []
            else:
                out[name].append(line.strip())
    return {k: "".join(v) for k, v in out.items()}


def run(*args: str) -> int:
    return cli([*args])


def build(tmp: Path, fasta: str, *overrides: str) -> Path:
    out = tmp / "data"
    assert run("all", f"fasta={fasta}", f"out={out}", "workers=2", *overrides) == 0
    return out


@pytest.fixture(scope="module")
def chr20_data(tmp_path_factory):
    fasta = shared_file(CHR20)
    out = build(tmp_path_factory.mktemp("chr20"), str(fasta), "window.length=2048",
                "splits.train=[chr20:0-50000000]", "splits.valid=[chr20:50000000-63025520]",
                "splits.test=[]", "samples_per_shard=2048")
    return fasta, out


@pytest.fixture(scope="module")
def chr20_ref(chr20_data):
    return fasta_text(chr20_data[0])["chr20"]


def all_samples(out: Path, split: str):
    s = ShardSplit(out, split)
    return [s[i] for i in range(len(s))]


@pytest.mark.slow
def test_chr20_windows_round_trip_to_fasta_and_repeats_match_soft_masking(chr20_data, chr20_ref):
    _, out = chr20_data
    total_rep = total_low = 0
    for split in ("train", "valid"):
        for s in all_samples(out, split):
            m = s["meta"]
            ref = chr20_ref[m["start"]:m["end"]]
            assert m["split"] == split and m["chrom"] == "chr20"
            assert decode(s["bases"]) == ref.upper()
            low = np.frombuffer(ref.encode(), np.uint8) >= ord("a")
            assert np.array_equal(s["repeat"], low)
            total_rep += int(s["repeat"].sum())
            total_low += int(low.sum())
    assert total_rep == total_low and total_rep > 0


@pytest.mark.slow
def test_chr20_mostly_n_windows_are_dropped_and_counted(chr20_data, chr20_ref):
    _, out = chr20_data
    manifest = json.loads((out / "manifest.json").read_text())
    is_n = np.frombuffer(chr20_ref.upper().encode(), np.uint8) == ord("N")
    expected = {}
    for split, (lo, hi) in {"train": (0, 50_000_000), "valid": (50_000_000, 63_025_520)}.items():
        starts = np.arange(lo, hi - 2048 + 1, 2048)
        frac = np.array([is_n[s:s + 2048].mean() for s in starts])
        expected[split] = (int((frac <= 0.5).sum()), int((frac > 0.5).sum()))
    for split, (kept, dropped) in expected.items():
        assert manifest["splits"][split]["samples"] == kept
        assert manifest["splits"][split]["dropped_mostly_n"] == dropped
    assert expected["train"][1] > 0  # chr20 starts with 60 kbp of N
    assert verify(out) == []


def test_yeast_and_fly_pipeline_is_deterministic(tmp_path):
    yeast, fly = shared_file(YEAST), shared_file(FLY)
    for fasta, chrom in ((yeast, "NC_001133.9"), (fly, "NC_004353.4")):
        a = build(tmp_path / f"a_{chrom}", str(fasta), "window.length=1000", "splits.train=['*']",
                  "splits.valid=[]", "splits.test=[]", "samples_per_shard=100")
        b = build(tmp_path / f"b_{chrom}", str(fasta), "window.length=1000", "splits.train=['*']",
                  "splits.valid=[]", "splits.test=[]", "samples_per_shard=100", "workers=1")
        tars = sorted(p.relative_to(a) for p in a.rglob("*.tar"))
        assert len(tars) > 1 and tars == sorted(p.relative_to(b) for p in b.rglob("*.tar"))
        for t in tars:
            assert (a / t).read_bytes() == (b / t).read_bytes()
        ref = fasta_text(fasta)[chrom]
        samples = all_samples(a, "train")
        low = sum(int((np.frombuffer(ref[s["meta"]["start"]:s["meta"]["end"]].encode(), np.uint8)
                       >= ord("a")).sum()) for s in samples)
        assert low == sum(int(s["repeat"].sum()) for s in samples) > 0
        assert all(decode(s["bases"]) == ref[s["meta"]["start"]:s["meta"]["end"]].upper() for s in samples)


def test_shards_are_standard_webdataset(tmp_path):
    import webdataset as wds
    out = build(tmp_path, str(shared_file(YEAST)), "window.length=1000", "splits.train=['*']",
                "splits.valid=[]", "splits.test=[]", "samples_per_shard=50")
    urls = [str(p) for p in sorted((out / "train").glob("*.tar"))]
    ds = wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, empty_check=False)
    streamed = {s["__key__"]: s for s in ds}
    split = ShardSplit(out, "train")
    assert len(streamed) == len(split)
    for i in (0, 7, len(split) - 1):
        key = f"train-{i:09d}"
        assert np.frombuffer(streamed[key]["bases"], np.uint8).tobytes() == split[i]["bases"].tobytes()
        flags = np.unpackbits(np.frombuffer(streamed[key]["repeat"], np.uint8), count=1000).astype(bool)
        assert np.array_equal(flags, split[i]["repeat"]) and split[i]["repeat"].any()
        assert json.loads(streamed[key]["json"]) == split[i]["meta"]
    import tarfile  # and Python's own tar reader sees the same members
    with tarfile.open(urls[0]) as tar:
        assert tar.getnames()[:3] == ["train-000000000.bases", "train-000000000.repeat", "train-000000000.json"]


def test_format_1_shards_are_still_read_and_repeat_weight_is_applied_by_the_loader(tmp_path):
    out = build(tmp_path / "v2", str(shared_file(YEAST)), "window.length=1000", "splits.train=['*']",
                "splits.valid=[]", "splits.test=[]", "samples_per_shard=50")
    old = format1_copy(out, tmp_path / "v1", repeat_weight=0.25)
    v1, v2 = ShardSplit(old, "train"), ShardSplit(out, "train")
    assert v1.format == "dnachunker-shards/1" and v2.format == "dnachunker-shards/3"
    size = {p.name: p.stat().st_size for p in (old / "train").glob("*.tar")}
    # 1 kbp windows: 3.5 kB a sample instead of 5 kB (headers are a large part at this length)
    assert sum(p.stat().st_size for p in (out / "train").glob("*.tar")) < 0.72 * sum(size.values())
    for i in (0, 11, len(v2) - 1):
        assert v1[i]["bases"].tobytes() == v2[i]["bases"].tobytes()
        assert np.array_equal(v1[i]["repeat"], v2[i]["repeat"]) and np.array_equal(v1[i]["weight"] < 1, v2[i]["repeat"])
    b1 = next(iter(PretrainLoader(str(old), "train", 8, train=False)))
    b2 = next(iter(PretrainLoader(str(out), "train", 8, train=False, repeat_weight=0.3)))
    rep = b2["weight"] < 1
    assert rep.any() and torch.equal(b1["weight"] < 1, rep)
    assert set(b1["weight"][rep].tolist()) == {0.25} and set(b2["weight"][rep].tolist()) == {0.30000001192092896}


@pytest.mark.slow
def test_killed_run_leaves_nothing_that_looks_complete_and_resumes(tmp_path):
    fasta = str(shared_file(CHR20))
    args = ["window.length=1024", "splits.train=[chr20:0-30000000]", "splits.valid=[]", "splits.test=[]",
            "samples_per_shard=200", "workers=1"]
    ref = build(tmp_path / "ref", fasta, *args)
    out = tmp_path / "killed"
    shutil.copytree(ref / "genome.zarr", out / "genome.zarr")
    assert run("windows", f"fasta={fasta}", f"out={out}", *args) == 0
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "data_pipeline", "shards", f"fasta={fasta}", f"out={out}", *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((out / "train").glob("*.tar.json"))) < 5 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((out / "train").glob("*.tar"))
    assert 5 <= len(done) < len(list((ref / "train").glob("*.tar"))), "kill came too late to test anything"
    assert not (out / "manifest.json").exists()
    for t in done:  # every shard under its final name is complete
        rec_path = t.with_name(t.name + ".json")
        if rec_path.exists():
            assert hashlib.sha256(t.read_bytes()).hexdigest() == json.loads(rec_path.read_text())["sha256"]
    with open(done[1], "r+b") as fh:  # damage a finished shard: the re-run must rebuild it
        fh.truncate(1000)
    assert run("shards", f"fasta={fasta}", f"out={out}", *args) == 0
    assert verify(out) == []
    for t in (ref / "train").glob("*.tar"):
        assert (out / "train" / t.name).read_bytes() == t.read_bytes()


def _consumed(loader, steps):
    it = iter(loader)
    return [next(it) for _ in range(steps)]


@pytest.fixture(scope="module")
def yeast_data(tmp_path_factory):
    return build(tmp_path_factory.mktemp("yeast"), str(shared_file(YEAST)), "window.length=512",
                 "splits.train=['*']", "splits.valid=[]", "splits.test=[]", "samples_per_shard=64")


def test_loader_covers_an_epoch_on_2_ranks_x_2_workers_without_duplicates(yeast_data):
    loaders = [PretrainLoader(str(yeast_data), "train", micro_batch_size=3, rank=r, world_size=2,
                              seed=7, num_workers=2) for r in range(2)]
    steps = loaders[0].steps_per_epoch()
    seen = [torch.cat([b["index"] for b in _consumed(l, steps)]).tolist() for l in loaders]
    assert len(seen[0]) == len(seen[1]) == 3 * steps  # equal work per rank: no DDP hang
    allseen = seen[0] + seen[1]
    n = loaders[0].n
    assert len(set(allseen)) == len(allseen) == n - n % 6
    assert set(allseen) == set(loaders[0].order(0)[: n - n % 6].tolist())


def resumes_exactly(root: str, keys: tuple[str, ...]) -> list[dict]:
    """12 steps in one go against 5, a checkpoint and 7 more in a fresh loader (no workers): the same
    batches. -> the uninterrupted batches."""
    ref = _consumed(PretrainLoader(root, "train", 4, seed=1, num_workers=2), 12)
    first = PretrainLoader(root, "train", 4, seed=1, num_workers=2)
    _consumed(first, 5)
    resumed = PretrainLoader(root, "train", 4, seed=1, num_workers=0)
    resumed.load_state_dict(first.state_dict())
    for a, b in zip(ref[5:], _consumed(resumed, 7)):
        for k in keys:
            assert torch.equal(a[k], b[k]), k  # same samples, same masks, same augmentation
    return ref


def test_loader_resume_mid_epoch_is_exact_and_elastic(yeast_data):
    root = str(yeast_data)
    resumes_exactly(root, ("input_ids", "labels", "index", "weight"))
    # 2 ranks x 2 -> 1 rank x 3: nothing repeated or skipped within the epoch
    two = [PretrainLoader(root, "train", 2, rank=r, world_size=2, seed=3) for r in range(2)]
    seen = [i for l in two for b in _consumed(l, 10) for i in b["index"].tolist()]
    one = PretrainLoader(root, "train", 3, seed=3)
    one.load_state_dict(two[0].state_dict())
    assert two[0].state_dict() == two[1].state_dict()
    rest = [i for b in _consumed(one, (one.n - 40) // 3) for i in b["index"].tolist()]
    assert one.epoch == 0
    allseen = seen + rest
    assert len(allseen) == len(set(allseen))
    assert len(allseen) >= one.n - 3


def test_masking_and_reverse_complement(yeast_data):
    loader = PretrainLoader(str(yeast_data), "train", 16, seed=0)
    split = ShardSplit(yeast_data, "train")
    batches = _consumed(loader, 20)
    ids = torch.cat([b["input_ids"] for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    sel = labels != IGNORE
    assert 0.14 < sel.float().mean() < 0.16
    assert 0.77 < (ids[sel] == MASK).float().mean() < 0.83
    changed = sel & (ids != MASK) & (ids != labels)
    assert torch.isin(ids[changed], torch.tensor(BASES)).all()
    assert 0.07 < changed.sum() / sel.sum() < 0.11  # 10% random, a quarter of which keep the base
    rev = torch.cat([b["reverse"] for b in batches])
    assert 0.35 < rev.float().mean() < 0.65
    b = batches[0]
    for j in range(4):
        raw = decode(split[int(b["index"][j])]["bases"])
        target = torch.where(b["labels"][j] != IGNORE, b["labels"][j], b["input_ids"][j])
        seq = decode(target.numpy().astype(np.uint8))
        expected = raw[::-1].translate(str.maketrans("ACGT", "TGCA")) if b["reverse"][j] else raw
        assert seq == expected


def _expect_error(tmp_path, fasta_bytes: bytes | None, match: str, *overrides: str, name="g.fa"):
    if fasta_bytes is not None:
        (tmp_path / name).write_bytes(fasta_bytes)
    with pytest.raises(DataError, match=match):
        for _ in read_fasta(tmp_path / name):
            pass
    assert run("genome", f"fasta={tmp_path / name}", f"out={tmp_path / 'o'}", *overrides) == 2
    assert not (tmp_path / "o" / "genome.zarr").exists()


def test_bad_fasta_inputs_give_clear_errors(tmp_path, capsys):
    yeast = shared_file(YEAST).read_bytes()
    _expect_error(tmp_path, yeast[: len(yeast) // 2], r"g\.fa\.gz: truncated gzip", name="g.fa.gz")
    real = gzip.decompress(yeast).split(b"\n")
    bad = b"\n".join(real[:3] + [real[3][:10] + b"X" + real[3][11:]] + real[4:50])
    _expect_error(tmp_path, bad, r"g\.fa:4: invalid character 'X' in record 'NC_001133\.9' \(column 11\)")
    _expect_error(tmp_path, b">empty\n>chr1\n" + b"\n".join(real[1:5]) + b"\n", r"g\.fa:1: empty record 'empty'")
    twice = b"\n".join(real[:5] + [b">NC_001133.9 again"] + real[5:9]) + b"\n"
    _expect_error(tmp_path, twice, r"g\.fa:6: duplicate sequence name 'NC_001133\.9' \(first at line 1\)")
    assert "error:" in capsys.readouterr().err


def test_annotations_rejects_unknown_chromosome_and_parses_repeatmasker(tmp_path):
    fasta = tmp_path / "y.fa"
    ref = fasta_text(shared_file(YEAST))["NC_001133.9"][:20000]
    fasta.write_text(">NC_001133.9\n" + "\n".join(ref[i:i + 60] for i in range(0, len(ref), 60)) + "\n")
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nNC_001133.9\t10\t20\nchrZ\t5\t9\n")
    assert run("genome", f"fasta={fasta}", f"repeats={bed}", f"out={tmp_path / 'o'}") == 2
    with pytest.raises(DataError, match=r"r\.bed:3: chromosome 'chrZ' is not in the FASTA"):
        from data_pipeline.genome import build_genome
        from data_pipeline.config import PipelineConfig
        build_genome(PipelineConfig.load(None, [f"fasta={fasta}", f"repeats={bed}", f"out={tmp_path / 'o'}"]))
    rm = tmp_path / "r.out"
    rm.write_text(
        "   SW   perc perc perc  query        position in query     matching  repeat        position in repeat\n"
        "score   div. del. ins.  sequence     begin   end  (left)   repeat    class/family  begin  end (left)  ID\n\n"
        "  463    1.3  0.6  1.7  NC_001133.9    101   300 (19700) +  (CA)n     Simple_repeat     1  200    (0)  1\n"
        " 1892   11.5  3.1  1.0  NC_001133.9   1001  1500 (18500) C  TY1       LTR/Copia     (2713) 5230  4731  2 *\n")
    out = tmp_path / "rm"
    assert run("all", f"fasta={fasta}", f"repeats={rm}", f"out={out}", "window.length=20000",
               "splits.train=['*']", "splits.valid=[]", "splits.test=[]") == 0
    repeat = ShardSplit(out, "train")[0]["repeat"]
    expected = np.zeros(20000, bool)
    expected[100:300] = expected[1000:1500] = True
    assert np.array_equal(repeat, expected)
    rm.write_text(rm.read_text().replace("(2713)", "2713"))
    from data_pipeline.annotations import read_repeatmasker_out
    with pytest.raises(DataError, match=r"r\.out:5: repeat \(left\) should be a parenthesised count"):
        read_repeatmasker_out(rm)


def test_loader_detects_damaged_shards(yeast_data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(yeast_data, copy)
    victim = sorted((copy / "train").glob("*.tar"))[2]
    with open(victim, "r+b") as fh:
        fh.truncate(4096)
    with pytest.raises(DataError, match=f"{victim.name}: 4096 bytes, the manifest says"):
        PretrainLoader(str(copy), "train", 4)
    assert any("train-000002.tar" in p for p in verify(copy))


def _flip_a_base(shard: Path, at: float = 0.5, to: int | None = None) -> int:
    """XOR 1 into the first T (token 5) from `at` of the way into the shard: T -> G, as a bad
    disk or cable would, or write token `to` there instead. -> the byte's offset."""
    data = bytearray(shard.read_bytes())
    i = data.index(5, int(len(data) * at))
    data[i] = data[i] ^ 1 if to is None else to
    shard.write_bytes(data)
    return i


def _manifest(root: Path, edit) -> None:
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


def test_every_read_is_checked_and_a_damaged_sample_is_named(yeast_data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(yeast_data, copy)
    shard = copy / "train" / "train-000000.tar"
    _flip_a_base(shard)
    split = ShardSplit(copy, "train")
    with pytest.raises(DataError, match=r"train-000000\.tar: sample \d+ \(byte \d+\): CRC-32 differs"):
        [split[i] for i in range(len(split))]
    loader = iter(PretrainLoader(str(copy), "train", 4, num_workers=1, train=False))
    with pytest.raises(DataError, match=r"^\S+train-000000\.tar: sample \d+ \(byte \d+\): CRC-32") as e:
        list(loader)
    assert "Traceback" not in str(e.value)  # the worker's message, not its traceback
    # a token that is no base (a shard written by a broken tool, its checksums made over it)
    shutil.copy(yeast_data / "train" / "train-000000.tar", shard)
    offset = _flip_a_base(shard, to=9)
    rec = json.loads((copy / "manifest.json").read_text())["splits"]["train"]["shards"][0]
    k = int(np.searchsorted(rec["offsets"], offset, side="right") - 1)
    import zlib
    end = rec["offsets"][k + 1]
    _manifest(copy, lambda m: m["splits"]["train"]["shards"][0]["crc32"].__setitem__(
        k, zlib.crc32(shard.read_bytes()[rec["offsets"][k]:end])))
    with pytest.raises(DataError, match=rf"sample {k} \(byte {rec['offsets'][k]}\): token id 9 at position \d+ is not a base"):
        ShardSplit(copy, "train")[k]
    # a shard set without per-sample checksums (format 2): the whole shard against its SHA-256
    _manifest(copy, lambda m: [r.pop("crc32") for s in m["splits"].values() for r in s["shards"]]
              or m.__setitem__("format", "dnachunker-shards/2"))
    with pytest.raises(DataError, match=r"train-000000\.tar: SHA-256 differs from the manifest's"):
        ShardSplit(copy, "train")[0]
    assert ShardSplit(copy, "train")[len(split) - 1]["meta"]["index"] == len(split) - 1  # other shards read


def test_a_hand_edited_manifest_is_refused(yeast_data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(yeast_data, copy)
    original = (copy / "manifest.json").read_text()
    for edit, message in (
            (lambda m: m["splits"]["train"]["shards"][1].__setitem__("name", "train-000000.tar"), "listed twice"),
            (lambda m: m["splits"]["train"]["shards"][1].__setitem__("name", "../../outside.tar"), "not a plain"),
            (lambda m: m["splits"]["train"]["shards"][1].__setitem__("first_index", 3), "do not follow on")):
        (copy / "manifest.json").write_text(original)
        _manifest(copy, edit)
        with pytest.raises(DataError, match=rf"manifest.json: splits.train.shards\[1\]: .*{message}"):
            PretrainLoader(str(copy), "train", 4)


def test_a_split_without_windows_is_an_error_naming_split_window_and_longest_sequence(tmp_path):
    fasta = tmp_path / "short.fa"
    fasta.write_text(">a\n" + "ACGT" * 125 + "\n>b\n" + "ACGTA" * 60 + "\n")  # 500 and 300 bp
    args = ["all", f"fasta={fasta}", f"out={tmp_path / 'out'}", "window.length=1024", "splits.train=[a]",
            "splits.valid=[b]", "splits.test=[]", "workers=1"]
    r = subprocess.run([sys.executable, "-m", "data_pipeline", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "split 'train' has no window: its 1 region(s) are at most 500 bp long" in r.stderr
    assert "window.length is 1,024" in r.stderr and "allow_empty_splits=true" in r.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
    # wanted empty: allowed, and training on it then says why it cannot
    r = subprocess.run([sys.executable, "-m", "data_pipeline", *args, "allow_empty_splits=true"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                        f"out_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'out'}"], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert r.returncode == 2 and "split 'train' has 0 samples" in r.stderr and "Traceback" not in r.stderr
