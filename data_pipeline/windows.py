"""Stage 2: fixed-length windows, split by chromosome / region / BED, mostly-N windows dropped."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from dnachunker.fileio import atomic_file, write_text
from dnachunker.tokenizer import N

from .annotations import check_against, read_bed
from .config import PipelineConfig
from .errors import DataError
from .genome import GenomeStore

_REGION = re.compile(r"^(.+):(\d+)-(\d+)$")


def split_regions(cfg: PipelineConfig, store: GenomeStore) -> dict[str, list[tuple[str, int, int]]]:
    """{split: [(chrom, start, end)]} in genome order."""
    lengths = store.lengths
    regions: dict[str, list[tuple[str, int, int]]] = {}
    if cfg.splits.bed:
        intervals, extra = read_bed(cfg.splits.bed, extra_columns=1)
        check_against(cfg.splits.bed, intervals, lengths)
        for chrom, ivs in intervals.items():
            for start, end, line in ivs:
                regions.setdefault(extra[line][0], []).append((chrom, start, end))
    else:
        included = [n for n in store.names
                    if re.search(cfg.include, n) and not (cfg.exclude and re.search(cfg.exclude, n))]
        lists = {"train": cfg.splits.train, "valid": cfg.splits.valid, "test": cfg.splits.test}
        named = set()
        for split, entries in lists.items():
            for e in entries:
                m = _REGION.match(e)
                chrom = m.group(1) if m else e
                if e != "*" and chrom not in lengths:
                    raise DataError(f"splits.{split}: '{chrom}' is not a sequence of {cfg.fasta}")
                named.add(chrom)
        for split, entries in lists.items():
            out = regions.setdefault(split, [])
            for e in entries:
                if e == "*":
                    out += [(n, 0, lengths[n]) for n in included if n not in named]
                elif m := _REGION.match(e):
                    start, end = int(m.group(2)), min(int(m.group(3)), lengths[m.group(1)])
                    if start >= end:
                        raise DataError(f"splits.{split}: empty region '{e}'")
                    out.append((m.group(1), start, end))
                else:
                    out.append((e, 0, lengths[e]))
    order = {n: i for i, n in enumerate(store.names)}
    return {s: sorted(r, key=lambda x: (order[x[0]], x[1])) for s, r in regions.items()}


def build_windows(cfg: PipelineConfig) -> Path:
    out = Path(cfg.out)
    store = GenomeStore(out / "genome.zarr")
    L, stride = cfg.window.length, cfg.stride
    arrays, stats = {}, {}
    for split, regions in split_regions(cfg, store).items():
        chroms, starts, dropped = [], [], 0
        for chrom, start, end in regions:
            if end - start < L:
                continue
            s = np.arange(start, end - L + 1, stride, dtype=np.int64)
            is_n = store.seq(chrom, start, end) == N
            if stride == L:  # non-overlapping: count per window directly
                n_count = is_n[: len(s) * L].reshape(len(s), L).sum(1)
            else:
                n_cum = np.concatenate([[0], np.cumsum(is_n, dtype=np.int64)])
                n_count = n_cum[s - start + L] - n_cum[s - start]
            keep = n_count <= cfg.window.max_n_fraction * L
            dropped += int((~keep).sum())
            starts.append(s[keep])
            chroms.append(np.full(int(keep.sum()), store.names.index(chrom), dtype=np.int32))
        arrays[f"{split}_chrom"] = np.concatenate(chroms) if chroms else np.zeros(0, np.int32)
        arrays[f"{split}_start"] = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        stats[split] = {"windows": len(arrays[f"{split}_start"]), "dropped_mostly_n": dropped,
                        "regions": len(regions)}
        if regions and not stats[split]["windows"] and not cfg.allow_empty_splits:
            longest = max(end - start for _, start, end in regions)
            raise DataError(f"{cfg.fasta}: split '{split}' has no window: its {len(regions)} region(s) are at most "
                            f"{longest:,} bp long" + (f" ({dropped:,} windows dropped as mostly N)" if dropped else "")
                            + f", window.length is {L:,}. Use a shorter window.length or other regions, or set "
                            "allow_empty_splits=true if an empty split is what you want")
        print(f"windows {split}: {stats[split]['windows']:,} kept, {dropped:,} dropped (mostly N)")
    with atomic_file(out / "windows.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, names=np.array(store.names), **arrays)
    write_text(out / "windows.json", json.dumps({"length": L, "stride": stride, "splits": stats}, indent=1))
    return out / "windows.npz"
