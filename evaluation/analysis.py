"""Segmentation analysis: chunk lengths by region type, a view of both stages' boundaries, and
robustness of the boundaries to point mutations (SNVs and 1-bp indels)."""
from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dnachunker.fileio import atomic_file

Segmenter = Callable[[str], np.ndarray]  # sequence -> chunk start positions (bp), sorted, starts at 0


def chunk_lengths(starts: np.ndarray, length: int) -> np.ndarray:
    return np.diff(np.append(starts, length))


def lengths_by_region(starts: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Chunk lengths split by the region type (bool per base) most of the chunk lies in."""
    lens = chunk_lengths(starts, len(region))
    frac = np.add.reduceat(region.astype(np.float64), starts) / lens
    return {"in": lens[frac > 0.5], "out": lens[frac <= 0.5]}


def mutate(seq: str, kind: str, rng: np.random.Generator, margin: int = 10) -> tuple[str, int]:
    """A random SNV, 1-bp insertion or deletion away from the ends -> (mutant, position)."""
    i = int(rng.integers(margin, len(seq) - margin))
    base = "ACGT"[int(rng.integers(4))]
    if kind == "snv":
        base = next(b for b in "ACGT" if b != seq[i].upper()) if base == seq[i].upper() else base
        return seq[:i] + base + seq[i + 1:], i
    if kind == "insertion":
        return seq[:i] + base + seq[i:], i
    if kind == "deletion":
        return seq[:i] + seq[i + 1:], i
    raise ValueError(f"unknown mutation {kind!r}")


def to_reference(starts: np.ndarray, kind: str, pos: int) -> np.ndarray:
    """Map a mutant's boundary positions back to reference coordinates."""
    starts = np.asarray(starts)
    if kind == "insertion":
        starts = starts[starts != pos]  # the inserted base has no reference position
        return np.where(starts > pos, starts - 1, starts)
    if kind == "deletion":
        return np.where(starts >= pos, starts + 1, starts)
    return starts


def boundary_agreement(ref: np.ndarray, mutant: np.ndarray, kind: str, pos: int) -> float:
    """Fraction of boundaries unchanged: |B ∩ B'| / |B ∪ B'| in reference coordinates."""
    a, b = set(np.asarray(ref).tolist()), set(to_reference(mutant, kind, pos).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def robustness(segment: Callable[[list[str]], list[np.ndarray]], seqs: list[str], kind: str,
               seed: int = 0) -> float:
    """Mean boundary agreement between each sequence and one random mutant of it.
    `segment` maps a list of sequences to their boundary arrays (batched, for the model)."""
    rng = np.random.default_rng(seed)
    mutants = [mutate(s, kind, rng) for s in seqs]
    ref = segment(seqs)
    mut = segment([m for m, _ in mutants])
    return float(np.mean([boundary_agreement(r, m, kind, p) for r, m, (_, p) in zip(ref, mut, mutants)]))


def html_view(seq: str, stage_starts: list[np.ndarray], title: str = "DNAChunker segmentation") -> str:
    """One line per stage; chunks alternate colours; soft-masked bases in lowercase."""
    colours = ["#cfe2ff", "#ffe5b4"]
    rows = []
    for s, starts in enumerate(stage_starts):
        ends = np.append(starts[1:], len(seq))
        spans = "".join(f'<span style="background:{colours[i % 2]}" title="{a}-{b} ({b - a} bp)">'
                        f"{html.escape(seq[a:b])}</span>" for i, (a, b) in enumerate(zip(starts, ends)))
        rows.append(f"<p><b>stage {s}</b> ({len(starts)} chunks, mean {len(seq) / len(starts):.2f} bp)<br>"
                    f'<code style="word-break:break-all">{spans}</code></p>')
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<h3>{html.escape(title)}</h3>" + "".join(rows))


def png_view(seq: str, stage_starts: list[np.ndarray], path: Path, region: np.ndarray | None = None,
             region_label: str = "repeat") -> None:
    """Boundary ticks of each stage along the sequence (and a shaded region track)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(stage_starts) + (region is not None)
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.1 * n + 0.6), sharex=True, squeeze=False)
    for s, starts in enumerate(stage_starts):
        ax = axes[s, 0]
        ax.vlines(starts, 0, 1, linewidth=0.6)
        ax.set_ylabel(f"stage {s}", rotation=0, ha="right", va="center")
        ax.set_yticks([])
    if region is not None:
        ax = axes[-1, 0]
        ax.fill_between(np.arange(len(region)), 0, region.astype(float), step="mid", alpha=0.5)
        ax.set_ylabel(region_label, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1, 0].set_xlim(0, len(seq))
    axes[-1, 0].set_xlabel("position (bp)")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def exon_mask(gtf: str | Path, chrom: str, length: int) -> np.ndarray:
    """Bases covered by an 'exon' feature of `chrom` in a GTF (gz accepted)."""
    from dnachunker.fasta import open_maybe_gzip
    mask = np.zeros(length, dtype=bool)
    with open_maybe_gzip(Path(gtf)) as fh:
        for raw in fh:
            f = raw.decode().split("\t")
            if len(f) > 4 and f[0] == chrom and f[2] == "exon":
                mask[int(f[3]) - 1:int(f[4])] = True
    return mask
