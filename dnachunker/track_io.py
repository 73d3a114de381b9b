"""Genome-browser files from streamed pieces: one bigWig per per-base track (dnachunker.tracks)
and one BED of the learned chunks per stage, in reference coordinates.

Regions are 0-based half-open (chrom, start, end), given in any order; they are written sorted in
the FASTA's sequence order, as bigWig requires, and overlapping ones are merged.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import InputError
from .fasta import open_maybe_gzip

Region = tuple[str, int, int]


def parse_region(text: str, lengths: dict[str, int]) -> Region:
    """'chr20:1,000,001-1,010,000' (1-based, inclusive, as samtools) or 'chr20' (all of it)."""
    m = re.fullmatch(r"([^:\s]+)(?::([\d,]+)-([\d,]+))?", text.strip())
    if not m or m[1] not in lengths:
        raise InputError(f"--region {text}: " + ("not chrom or chrom:start-end" if not m else
                                                 f"{m[1]} is not in the FASTA (it has {', '.join(list(lengths)[:5])}...)"))
    if m[2] is None:
        return m[1], 0, lengths[m[1]]
    start, end = int(m[2].replace(",", "")) - 1, int(m[3].replace(",", ""))
    if not 0 <= start < end <= lengths[m[1]]:
        raise InputError(f"--region {text}: outside {m[1]} (1-{lengths[m[1]]:,}) or empty")
    return m[1], start, end


def read_bed_regions(path: str | Path, lengths: dict[str, int]) -> list[Region]:
    out = []
    with open_maybe_gzip(Path(path)) as fh:
        for line_no, raw in enumerate(fh, 1):
            f = raw.decode(errors="replace").rstrip("\r\n").split("\t")
            if not f[0] or f[0].startswith(("#", "track", "browser")):
                continue
            if len(f) < 3 or not f[1].isdigit() or not f[2].isdigit():
                raise InputError(f"{path}:{line_no}: a BED line needs chrom, start and end (integers)")
            chrom, start, end = f[0], int(f[1]), int(f[2])
            if chrom not in lengths or not 0 <= start < end <= lengths[chrom]:
                raise InputError(f"{path}:{line_no}: {chrom}:{start}-{end} is not within a sequence of the FASTA")
            out.append((chrom, start, end))
    if not out:
        raise InputError(f"{path}: no regions")
    return out


def sorted_regions(regions: list[Region], lengths: dict[str, int]) -> list[Region]:
    """In the FASTA's order, overlapping or touching regions merged."""
    order = {c: i for i, c in enumerate(lengths)}
    out: list[Region] = []
    for chrom, start, end in sorted(regions, key=lambda r: (order[r[0]], r[1])):
        if out and out[-1][0] == chrom and start <= out[-1][2]:
            out[-1] = (chrom, out[-1][1], max(end, out[-1][2]))
        else:
            out.append((chrom, start, end))
    return out


class TrackWriter:
    """bigWig per track (<dir>/<track>.bw) and BED per stage (<dir>/chunks_<s>.bed), filled region
    by region and piece by piece (pieces of one region in order)."""

    def __init__(self, directory: Path, lengths: dict[str, int], tracks: list[str], stages: int):
        import pyBigWig
        self.bw = {}
        for t in tracks:
            self.bw[t] = pyBigWig.open(str(directory / f"{t}.bw"), "w")
            self.bw[t].addHeader(list(lengths.items()), maxZooms=10)
        self.bed = [open(directory / f"chunks_{s}.bed", "w") for s in range(stages)]
        for s, fh in enumerate(self.bed):
            fh.write(f'track name=chunks_{s} description="DNAChunker stage-{s} chunks" useScore=0\n')
        self.open_chunk: list[int | None] = [None] * stages

    def add(self, chrom: str, offset: int, piece) -> None:
        """A piece of the region starting at `offset` on `chrom`."""
        at = offset + piece.lo
        for name, values in piece.tracks.items():
            finite = np.isfinite(values)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
            for a, b in zip(edges[::2], edges[1::2]):  # runs of finite values (logp_ref is NaN at N)
                self.bw[name].addEntries(chrom, at + int(a), values=values[a:b].astype(np.float64).tolist(), span=1,
                                         step=1)
        for s, starts in enumerate(piece.chunk_starts):
            for start in (starts + offset).tolist():
                self._chunk(s, chrom, start)

    def _chunk(self, s: int, chrom: str, start: int | None) -> None:
        """Close stage s's open chunk at `start` (None: at the region's end, given as the start) and open one there."""
        if self.open_chunk[s] is not None:
            lo = self.open_chunk[s]
            self.bed[s].write(f"{chrom}\t{lo}\t{start}\t{start - lo}bp\t0\t.\n")
        self.open_chunk[s] = start

    def end_region(self, chrom: str, end: int) -> None:
        for s in range(len(self.bed)):
            self._chunk(s, chrom, end)
            self.open_chunk[s] = None

    def close(self) -> None:
        for bw in self.bw.values():
            bw.close()
        for fh in self.bed:
            fh.close()


def split_regions(regions: list[Region], n: int) -> list[list[Region]]:
    """Sorted regions -> n parts of consecutive whole regions, balanced by base pairs (a part may be
    empty when there are fewer regions than parts: tile long ones with a BED to get more)."""
    total = sum(e - s for _, s, e in regions)
    parts: list[list[Region]] = [[] for _ in range(n)]
    done = 0
    for chrom, start, end in regions:
        parts[min(n - 1, done * n // max(total, 1))].append((chrom, start, end))
        done += end - start
    return parts


def merge_tracks(dest: Path, part_dirs: list[Path], lengths: dict[str, int], tracks: list[str], stages: int) -> None:
    """The parts' bigWig intervals and BED lines, in part order, into one set of files in `dest`."""
    import pyBigWig
    writer = TrackWriter(dest, lengths, tracks, stages)
    try:
        for d in part_dirs:
            for name in tracks:
                src = pyBigWig.open(str(d / f"{name}.bw"))
                for chrom in lengths:
                    if not (iv := src.intervals(chrom)):
                        continue
                    starts = np.array([x[0] for x in iv])
                    values = np.array([x[2] for x in iv])
                    cuts = np.flatnonzero(np.diff(starts) != 1) + 1  # runs of consecutive bases
                    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(iv)]):
                        writer.bw[name].addEntries(chrom, int(starts[a]), values=values[a:b].tolist(), span=1, step=1)
                src.close()
            for s, fh in enumerate(writer.bed):
                with open(d / f"chunks_{s}.bed") as src:
                    next(src)  # the part's track line
                    fh.writelines(src)
    finally:
        writer.close()


def chunk_starts_in(bed: Path, chrom: str, start: int, end: int) -> np.ndarray:
    """Chunk starts within [start, end) of chrom from a chunks BED (read until past the range)."""
    out, seen = [], False
    with open(bed) as fh:
        for line in fh:
            f = line.split("\t")
            if f[0] != chrom or len(f) < 3:
                if seen:
                    break
                continue
            seen = True
            if int(f[1]) >= end:
                break
            if int(f[1]) >= start:
                out.append(int(f[1]) - start)
    return np.array(out, dtype=np.int64)
