"""Segmentation analysis: a view of both stages' boundaries, and robustness of the boundaries to
point mutations (SNVs and 1-bp indels). Chunk-length statistics: evaluation.chunk_lengths."""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnachunker.fileio import atomic_file

Segmenter = Callable[[str], np.ndarray]  # sequence -> chunk start positions (bp), sorted, starts at 0


@dataclass(frozen=True)
class Mutation:
    """One kind of point mutation at position i: what it does to a sequence, and where a mutant's
    chunk start lies in reference coordinates."""
    apply: Callable[[str, int, str], str]               # (seq, i, a random base) -> mutant
    to_reference: Callable[[np.ndarray, int], np.ndarray]  # (mutant's starts, i) -> reference's


def _snv(seq: str, i: int, base: str) -> str:
    base = next(b for b in "ACGT" if b != seq[i].upper()) if base == seq[i].upper() else base
    return seq[:i] + base + seq[i + 1:]


def _inserted_to_reference(starts: np.ndarray, i: int) -> np.ndarray:
    starts = starts[starts != i]  # the inserted base has no reference position
    return np.where(starts > i, starts - 1, starts)


MUTATIONS = {
    "snv": Mutation(_snv, lambda starts, i: starts),
    "insertion": Mutation(lambda seq, i, base: seq[:i] + base + seq[i:], _inserted_to_reference),
    "deletion": Mutation(lambda seq, i, base: seq[:i] + seq[i + 1:],
                         lambda starts, i: np.where(starts >= i, starts + 1, starts)),
}


def _kind(kind: str) -> Mutation:
    if kind not in MUTATIONS:
        raise ValueError(f"unknown mutation {kind!r} (known: {', '.join(MUTATIONS)})")
    return MUTATIONS[kind]


def mutate(seq: str, kind: str, rng: np.random.Generator, margin: int = 10) -> tuple[str, int]:
    """A random mutation of `kind` (MUTATIONS: an SNV, a 1-bp insertion or deletion) away from the
    ends -> (mutant, position)."""
    m = _kind(kind)
    i = int(rng.integers(margin, len(seq) - margin))
    return m.apply(seq, i, "ACGT"[int(rng.integers(4))]), i


def to_reference(starts: np.ndarray, kind: str, pos: int) -> np.ndarray:
    """Map a mutant's boundary positions back to reference coordinates."""
    return _kind(kind).to_reference(np.asarray(starts), pos)


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


def png_view(seq: str, stage_starts: list[np.ndarray], path: Path, regions: dict[str, np.ndarray],
             where: str, offset: int = 0, zoom: int = 120) -> None:
    """A self-explanatory picture of one window's segmentation: title with the sequence's name and
    coordinates and each stage's chunk count; the whole window (each stage's chunks as alternating
    bands, region tracks such as repeats and exons); and a zoom of `zoom` bp where single chunks
    and the bases are legible, placed where the most kinds of region begin or end (a repeat's edge
    and an exon's if the window has both), else at the centre. Coordinates are 1-based throughout,
    as `where` gives them (a base k of the window sits at offset + k + 1)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    L = len(seq)
    lo = zoom_start(L, zoom, regions)
    hi = min(L, lo + zoom)
    offset += 1  # 1-based
    colours = ["#4c72b0", "#dd8452"]
    region_colours = {"repeat": "#8c8c8c", "exon": "#55a868"}
    rows = len(stage_starts) + len(regions)
    fig, (full, near) = plt.subplots(2, 1, figsize=(14, 2.2 + 0.75 * rows * 2), height_ratios=[1, 1.25])
    counts = ", ".join(f"stage {s}: {len(b)} chunks (mean {L / max(len(b), 1):.1f} bp)" for s, b in enumerate(stage_starts))
    fig.suptitle(f"DNAChunker segmentation of {where}\n{L:,} bp; {counts}", fontsize=11)

    def bands(ax, a, b):
        """Chunks of each stage as alternating bands, region tracks below, over [a, b)."""
        labels = []
        for s, starts in enumerate(stage_starts):
            y = rows - 1 - s
            ends = np.append(starts[1:], L)
            for i, (c0, c1) in enumerate(zip(starts, ends)):
                if c1 > a and c0 < b:
                    ax.broken_barh([(offset + c0, c1 - c0)], (y + 0.1, 0.8),
                                   facecolors=colours[i % 2], edgecolors="white", linewidth=0.3)
            labels.append(f"stage {s}\n{len(starts)} chunks")
        for k, (name, mask) in enumerate(regions.items()):
            y = rows - 1 - len(stage_starts) - k
            edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
            spans = [(offset + e0, e1 - e0) for e0, e1 in zip(edges[::2], edges[1::2]) if e1 > a and e0 < b]
            ax.broken_barh(spans, (y + 0.25, 0.5), facecolors=region_colours.get(name, "#937860"))
            labels.append(f"{name}s\n{mask.mean():.0%} of bases")
        ax.set_yticks([rows - 1 - i + 0.5 for i in range(rows)], labels, fontsize=8)
        ax.set_ylim(0, rows)
        ax.set_xlim(offset + a, offset + b)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    bands(full, 0, L)
    full.axvspan(offset + lo, offset + hi, color="#f2c80f", alpha=0.25, zorder=0)
    full.set_title("whole window (shaded: the zoom below)", fontsize=9, loc="left")
    bands(near, lo, hi)
    for i in range(lo, hi):  # the bases, lowercase where soft-masked
        near.text(offset + i + 0.5, -0.35, seq[i], ha="center", va="center", fontsize=6, family="monospace")
    near.set_ylim(-0.7, rows)
    near.set_title(f"zoom: {offset + lo:,}-{offset + hi - 1:,} (each band one chunk; bases below, lowercase = "
                   f"soft-masked repeat)", fontsize=9, loc="left")
    near.set_xlabel("position on the sequence (bp, 1-based, as in the title)")
    handles = [Patch(color=colours[0], label="a chunk"), Patch(color=colours[1], label="the next chunk")]
    handles += [Patch(color=region_colours.get(n, "#937860"), label=f"{n}s") for n in regions]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.935), fontsize=8, ncol=len(handles),
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def zoom_score(length: int, zoom: int, regions: dict[str, np.ndarray]) -> tuple[int, tuple]:
    """Where a zoom of `zoom` bp starts, and how telling it is: the window (in steps of zoom / 8) in
    which the most kinds of region have an edge, then the most kinds are present, nearest the
    centre on ties -> (start, (edges, kinds present, -distance from the centre))."""
    centre = max(0, length // 2 - zoom // 2)
    best, key = centre, None
    for start in range(0, max(1, length - zoom + 1), max(1, zoom // 8)):
        part = {name: m[start:start + zoom].astype(np.int8) for name, m in regions.items()}
        edges = sum(bool(np.diff(p).any()) for p in part.values())
        present = sum(bool(p.any()) for p in part.values())
        k = (edges, present, -abs(start - centre))
        if key is None or k > key:
            best, key = start, k
    return best, key


def zoom_start(length: int, zoom: int, regions: dict[str, np.ndarray]) -> int:
    return zoom_score(length, zoom, regions)[0]


def robustness_plot(rows: list[dict], path: Path, title: str) -> None:
    """Grouped bars: boundary agreement per tokenization and mutation kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kinds = list(MUTATIONS)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = np.arange(len(kinds)) + i * width
        ax.bar(xs, [r[k] for k in kinds], width, label=r["tokenization"])
        for x, k in zip(xs, kinds):
            ax.text(x, r[k] + 0.01, f"{r[k]:.2f}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2, ["SNV", "1-bp insertion", "1-bp deletion"])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("boundaries unchanged |B ∩ B'| / |B ∪ B'|")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
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
