"""Windows to analyse and what lies under them: N-free windows drawn from a FASTA or from each
genome of a corpus split, and per-window region masks (repeats from soft-masking, exons from a
GTF) for `eval segment` and `eval robustness`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .tasks import EvalDataError


def fasta_windows(fasta: str, length: int, count: int, seed: int = 0):
    """Real N-free windows of the first record of a FASTA: (sequences with case, record name, starts)."""
    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import N, decode
    name, codes, soft = next(iter(read_fasta(fasta)))
    starts = np.arange(0, len(codes) - length, length)
    ok = [s for s in starts if not (codes[s:s + length] == N).any()]
    pick = sorted(np.random.default_rng(seed).permutation(ok)[:count])
    return [decode(codes[s:s + length], soft[s:s + length]) for s in pick], name, pick, len(codes)


def data_windows(root: str, split: str, count: int, seed: int = 0) -> dict[str, tuple[list[str], list[dict]]]:
    """Up to `count` N-free windows of each genome of a corpus split (a shard set: one group,
    named after its directory), drawn with a fixed seed -> genome -> (sequences with case, metas)."""
    from data_pipeline.corpus import open_split
    from dnachunker.tokenizer import N, decode
    data = open_split(root, split)
    names = data.genomes or [Path(root).name]
    offset = data.offset if data.genomes else [0, len(data)]
    groups = {}
    for g, name in enumerate(names):
        seqs, metas = [], []
        for i in np.random.default_rng(seed).permutation(np.arange(offset[g], offset[g + 1])):
            x = data[int(i)]
            if not (x["bases"] == N).any():
                seqs.append(decode(x["bases"], x["repeat"]))
                metas.append(x["meta"])
            if len(seqs) == count:
                break
        if seqs:
            groups[name] = (seqs, metas)
    return groups


def parse_gtfs(values: list[str], corpus: bool) -> dict[str | None, str]:
    """--gtf values -> {genome or None: GTF}: NAME=PATH for a corpus, one PATH for a FASTA."""
    if not corpus:
        if len(values) > 1:
            raise EvalDataError("--gtf with --fasta: one GTF path (NAME=PATH pairs are for --data)")
        return {None: v for v in values}
    if bad := [v for v in values if "=" not in v]:
        raise EvalDataError(f"--gtf with --data takes GENOME=PATH (which genome's annotation), got {bad[0]!r}")
    return dict(v.split("=", 1) for v in values)


def region_masks(seqs: list[str], metas: list[dict], gtf: str | None) -> dict[str, list[np.ndarray]]:
    """Region masks per window: repeats (soft-masked bases), and exons where a GTF is given."""
    from .analysis import exon_mask
    regions = {"repeat": [np.array([c.islower() for c in s]) for s in seqs]}
    if gtf:
        chrom = [m["chrom"].split("/", 1)[-1] for m in metas]  # the bare name (a corpus prefixes '<genome>/')
        end = max(m["end"] for m in metas)
        masks = {c: exon_mask(gtf, c, end) for c in set(chrom)}
        regions["exon"] = [masks[c][m["start"]:m["end"]] for c, m in zip(chrom, metas)]
    return regions
