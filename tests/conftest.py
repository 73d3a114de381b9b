import gzip
import os
from pathlib import Path

import pytest
import torch

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
