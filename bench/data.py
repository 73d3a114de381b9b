"""Data throughput on the real human chr20 (63 Mbp, 19 MB gzipped).

    python -m bench.data [--window 1024] [--workers 2]

1. FASTA -> zarr -> windows -> shards (whole pipeline, `workers` processes) against plain gzip
   decompression of the same file (zlib, one pass): bp/s and their ratio; shard bytes per base.
   Then the genome stage alone at blosc-zstd levels 1, 3, 5 and 9: time and store size.
2. The training loader's samples/s with 0 and 2 DataLoader workers against what a training step
   of the tiny model consumes (samples/s, batch 8 x window).
"""
from __future__ import annotations

import json
import tempfile
import time
import zlib
from pathlib import Path

import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import CHR20, ROOT


def gunzip_seconds(path: Path) -> float:
    t = time.perf_counter()
    d = zlib.decompressobj(31)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            d.decompress(chunk)
    return time.perf_counter() - t


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--window", type=int, default=1024, help="window length of the shards (bp)")
    ap.add_argument("--workers", type=int, default=2, help="sharding processes")
    ap.add_argument("--batches", type=int, default=100, help="loader batches timed")
    a = ap.parse_args(argv)
    from data_pipeline.config import PipelineConfig
    from data_pipeline.genome import build_genome
    from data_pipeline.loader import PretrainLoader
    from data_pipeline.shards import build_shards
    from data_pipeline.windows import build_windows

    bp = 63_025_520
    gz = min(gunzip_seconds(CHR20) for _ in range(3))
    rows = [{"stage": "gzip decompression (zlib)", "seconds": gz, "Mbp_per_s": bp / gz / 1e6, "vs_gzip": 1.0}]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PipelineConfig.load(None, [f"fasta={CHR20}", f"out={tmp}", f"window.length={a.window}",
                                         "splits.train=[chr20:0-58000000]", "splits.valid=[chr20:58000000-63025520]",
                                         "splits.test=[]", f"workers={a.workers}", "samples_per_shard=4096"])
        total = 0.0
        for name, stage in (("FASTA -> zarr", build_genome), ("windows", build_windows), ("shards", build_shards)):
            t = time.perf_counter()
            stage(cfg)
            dt = time.perf_counter() - t
            total += dt
            rows.append({"stage": name, "seconds": dt, "Mbp_per_s": bp / dt / 1e6, "vs_gzip": gz / dt})
        rows.append({"stage": "whole pipeline", "seconds": total, "Mbp_per_s": bp / total / 1e6, "vs_gzip": gz / total})
        shard_bytes = sum(p.stat().st_size for p in Path(tmp).glob("*/*.tar"))
        windowed = sum(json.loads(p.read_text())["samples"] for p in Path(tmp).glob("*/*.tar.json")) * a.window
        rows[-2]["bytes_per_bp"] = shard_bytes / windowed

        levels = []  # what the genome store's blosc-zstd level costs
        for level in (1, 3, 5, 9):
            with tempfile.TemporaryDirectory() as ztmp:
                t = time.perf_counter()
                build_genome(PipelineConfig.load(None, [f"fasta={CHR20}", f"out={ztmp}", f"zarr_clevel={level}"]))
                dt = time.perf_counter() - t
                size = sum(p.stat().st_size for p in Path(ztmp).rglob("*") if p.is_file())
            levels.append({"zstd_level": level, "seconds": dt, "vs_gzip": gz / dt, "store_MB": size / 1e6})

        loader_rows = []
        for workers in (0, 2):
            loader = PretrainLoader(tmp, "train", 8, num_workers=workers)
            it = iter(loader)
            next(it)
            t = time.perf_counter()
            for _ in range(a.batches):
                next(it)
            dt = time.perf_counter() - t
            it.close()
            loader_rows.append({"consumer": f"loader, {workers} workers", "samples_per_s": 8 * a.batches / dt})
        from dnachunker import DNAChunker, DNAChunkerConfig
        model = DNAChunker(DNAChunkerConfig.load(ROOT / "configs" / "model" / "tiny.yaml", f"max_len={a.window}"))
        opt = torch.optim.AdamW(model.parameters())
        batches = [b for _, b in zip(range(4), PretrainLoader(tmp, "train", 8))]

        def step(b):
            loss = model(b["input_ids"], b["valid"], b["labels"], b["weight"]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        step(batches[0])
        t = time.perf_counter()
        for b in batches[1:]:
            step(b)
        train_rate = 8 * 3 / (time.perf_counter() - t)
        loader_rows.append({"consumer": "tiny model training step", "samples_per_s": train_rate})
        for r in loader_rows:
            r["vs_training"] = r["samples_per_s"] / train_rate
    print(markdown_table(rows, ["stage", "seconds", "Mbp_per_s", "vs_gzip", "bytes_per_bp"]))
    print()
    print(markdown_table(levels, ["zstd_level", "seconds", "vs_gzip", "store_MB"]))
    print()
    print(markdown_table(loader_rows, ["consumer", "samples_per_s", "vs_training"]))


if __name__ == "__main__":
    main()
