import dnachunker  # noqa: F401  (first: it sets how OpenMP threads wait, before torch loads)

import gzip  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# The kernel tier (tests/test_kernels.py) runs mamba-ssm's Triton kernels on CPU through the Triton
# interpreter, which has to be chosen before triton is first imported (DeepSpeed imports it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DNACHUNKER_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHR20 = DATA / "hg19_chr20_softmasked" / "chr20.hg19.softmasked.fa.gz"


def shared_file(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real DNA test data not found at {path} (set DNACHUNKER_SHARED_DATA)")
    return path


@pytest.fixture
def cores_shared_by_nodes(monkeypatch):
    """The local Slurm's nodes share this machine's cores. Jobs on both nodes at once oversubscribe
    them, and OpenMP threads that spin while they wait then make a tiny step up to 80x slower (91
    against 7,400 bp/s). Jobs submitted from a test inherit this environment (sbatch exports it)."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def chr20_indexed(tmp_path_factory, chr20_prefix) -> dict:
    """The first 400 kbp of chr20 (upper case) as plain FASTA and as its bgzipped, faidx-indexed
    copy (what `samtools faidx` makes), and its text."""
    import pysam
    text = chr20_prefix[:400_000].upper()
    d = tmp_path_factory.mktemp("ref")
    plain = d / "chr20.fa"
    plain.write_text(">chr20\n" + "\n".join(text[i:i + 60] for i in range(0, len(text), 60)) + "\n")
    pysam.tabix_compress(str(plain), str(d / "chr20.fa.gz"))
    pysam.faidx(str(d / "chr20.fa.gz"))
    return {"plain": plain, "indexed": d / "chr20.fa.gz", "text": text}


@pytest.fixture(scope="session")
def chr20_prefix() -> str:
    """The first ~2.5 Mbp of soft-masked human chr20 (hg19), as written in the FASTA."""
    path = shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")
    lines = []
    with gzip.open(path, "rt") as fh:
        assert fh.readline().startswith(">")
        for line in fh:
            lines.append(line.strip())
            if len(lines) * 60 > 2_500_000:
                break
    return "".join(lines)


@pytest.fixture(scope="session")
def chr20_windows(chr20_prefix):
    """Non-overlapping N-free windows of real chr20 sequence: windows(length, count)."""
    def windows(length: int, count: int) -> list[str]:
        out, i = [], 0
        while len(out) < count:
            w = chr20_prefix[i:i + length]
            assert len(w) == length, "chr20 prefix exhausted"
            if "N" not in w.upper():
                out.append(w)
            i += length
        return out
    return windows


@pytest.fixture(scope="session")
def train_shards(tmp_path_factory):
    """A small real shard set: chr20:1-4 Mbp for training, 200 kbp for validation, 512-bp windows."""
    from data_pipeline.__main__ import main as pipeline
    out = tmp_path_factory.mktemp("train_data") / "chr20"
    fasta = shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")
    assert pipeline(["all", f"fasta={fasta}", f"out={out}", "window.length=512", "workers=2",
                     "splits.train=[chr20:1000000-4000000]", "splits.valid=[chr20:4000000-4200000]",
                     "splits.test=[]", "samples_per_shard=1024"]) == 0
    return out


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, chr20_windows):
    """A tiny DNAChunker pretrained for a few minutes' worth of CPU on real chr20 windows."""
    from dnachunker import DNAChunker, DNAChunkerConfig
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(ROOT / "configs" / "model" / "tiny.yaml"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    windows = chr20_windows(512, 256)
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        batch = batch_encode(windows[(step * 8) % 256:(step * 8) % 256 + 8])
        ids, labels = bert_mask(batch.input_ids, batch.valid, g)
        loss = model(ids, batch.valid, labels, batch.weight()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.save_pretrained(tmp_path_factory.mktemp("pretrained") / "tiny")


def format1_copy(root: Path, dest: Path, repeat_weight: float = 0.1) -> Path:
    """A copy of a shard set in the previous shard format (dnachunker-shards/1: a float16 loss
    weight per base, repeat_weight baked in), written with Python's tarfile as that version did."""
    import io
    import json
    import shutil
    import tarfile

    import numpy as np

    from dnachunker.fileio import file_sha256
    from data_pipeline.reader import ShardSplit
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("*.tar"))
    manifest = json.loads((root / "manifest.json").read_text())
    for split, info in manifest["splits"].items():
        samples = ShardSplit(root, split)
        for rec in info["shards"]:
            path = dest / split / rec["name"]
            rec["offsets"] = []
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
                for i in range(rec["first_index"], rec["first_index"] + rec["samples"]):
                    s = samples[i]
                    weight = np.where(s["repeat"], np.float16(repeat_weight), np.float16(1)).astype("<f2")
                    rec["offsets"].append(tar.offset)
                    for ext, data in (("bases", s["bases"].tobytes()), ("weight", weight.tobytes()),
                                      ("json", json.dumps(s["meta"], sort_keys=True).encode())):
                        member = tarfile.TarInfo(f"{split}-{i:09d}.{ext}")
                        member.size, member.mode = len(data), 0o444
                        tar.addfile(member, io.BytesIO(data))
            rec["bytes"], rec["sha256"] = path.stat().st_size, file_sha256(path)
            rec.pop("crc32", None)  # per-sample checksums came with format 3
    manifest["format"] = "dnachunker-shards/1"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest
