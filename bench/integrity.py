"""What checking every read of the training data costs, and what the alternative would.

    python -m bench.integrity [--window 8192] [--reads 3000]

Shards of real human chr20 at the hg38 config's window (8 kbp), read at random by index as the
training loader does:

1. per-sample CRC-32 (format 3, checked on every read) against the same reads without it:
   samples/s and the check's share of a read;
2. the alternative, each shard's SHA-256 when a process first opens it (formats 1 and 2): MB/s of
   hashing, and what it would cost the hg38 config (3.9 GB of shards, read at random by 32 loader
   processes: every process opens every shard), projected from the measured rate.
"""
from __future__ import annotations

import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import CHR20

HG38_SHARD_BYTES = 3.9e9   # configs/data/hg38.yaml: chr1-22, X, Y minus valid/test, 8 kbp windows
HG38_PROCESSES = 32        # e.g. 8 ranks x 4 DataLoader workers


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--window", type=int, default=8192, help="window length of the shards (bp)")
    ap.add_argument("--reads", type=int, default=3000, help="random sample reads timed")
    a = ap.parse_args(argv)
    from data_pipeline.config import PipelineConfig
    from dnachunker.fileio import file_sha256
    from data_pipeline.genome import build_genome
    from data_pipeline.reader import ShardSplit
    from data_pipeline.shards import build_shards
    from data_pipeline.windows import build_windows

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PipelineConfig.load(None, [f"fasta={CHR20}", f"out={tmp}", f"window.length={a.window}",
                                         "splits.train=['*']", "splits.valid=[]", "splits.test=[]", "workers=2"])
        for stage in (build_genome, build_windows, build_shards):
            stage(cfg)
        split = ShardSplit(tmp, "train")
        order = np.random.default_rng(0).integers(0, len(split), a.reads)
        for i in order[:200]:  # warm the page cache and the handles
            split[int(i)]

        def reads() -> float:
            t = time.perf_counter()
            for i in order:
                split[int(i)]
            return a.reads / (time.perf_counter() - t)
        checked = max(reads() for _ in range(3))
        crcs = [r.pop("crc32") for r in split.shards]  # the same reader, without the per-sample check
        unchecked = max(reads() for _ in range(3))
        for r, c in zip(split.shards, crcs):
            r["crc32"] = c
        sample = split._read_size
        buf = np.random.default_rng(1).integers(0, 255, sample, dtype=np.uint8).tobytes()
        t = time.perf_counter()
        for _ in range(a.reads):
            zlib.crc32(buf)
        crc_us = (time.perf_counter() - t) / a.reads * 1e6
        shards = sorted(Path(tmp, "train").glob("*.tar"))
        size = sum(p.stat().st_size for p in shards)
        t = time.perf_counter()
        for p in shards:
            file_sha256(p)
        sha_rate = size / (time.perf_counter() - t)
    rows = [{"check": "none", "samples_per_s": unchecked, "vs_unchecked": 1.0},
            {"check": "CRC-32 per sample, every read (format 3)", "samples_per_s": checked,
             "vs_unchecked": checked / unchecked, "check_us_per_sample": crc_us}]
    hashed = HG38_SHARD_BYTES * HG38_PROCESSES
    sha = [{"what": "SHA-256 of whole shards, MB/s (one core)", "value": sha_rate / 1e6},
           {"what": f"hg38: bytes hashed per job start ({HG38_PROCESSES} processes x 3.9 GB)", "value": hashed},
           {"what": "hg38: CPU-seconds hashing per job start (projected)", "value": hashed / sha_rate},
           {"what": "hg38: CPU-seconds of CRC-32 per epoch (projected, all samples once)",
            "value": HG38_SHARD_BYTES / sample * crc_us / 1e6}]
    print(f"chr20, {a.window}-bp windows, {len(split)} samples in {len(shards)} shards ({size / 1e6:.0f} MB); "
          f"{a.reads} random reads")
    print(markdown_table(rows, ["check", "samples_per_s", "vs_unchecked", "check_us_per_sample"]))
    print()
    print(markdown_table(sha, ["what", "value"]))


if __name__ == "__main__":
    main()
