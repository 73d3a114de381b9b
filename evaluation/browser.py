"""A region in the style of a genome browser: the per-base tracks (dnachunker.tracks), the learned
chunks of each stage as alternating blocks, repeats (soft-masked bases) and exons from a GTF, on
one 1-based coordinate axis."""
from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {"p_0": "stage-0\nboundary p", "p_1": "stage-1\nboundary p", "entropy": "entropy\n(bits)",
          "logp_ref": "log2 P(ref)"}


def _blocks(ax, starts: np.ndarray, end: int, y: float, offset: int) -> None:
    """Chunks as alternating dark / light blocks: where one ends and the next starts is visible."""
    edges = np.append(starts, end)
    spans = [(offset + a + 0.5, b - a) for a, b in zip(edges[:-1], edges[1:])]
    ax.broken_barh(spans[0::2], (y, 0.8), color="#3b6ea8")
    ax.broken_barh(spans[1::2], (y, 0.8), color="#a9c4e4")


def _mask_blocks(ax, mask: np.ndarray, y: float, offset: int, color: str) -> None:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    ax.broken_barh([(offset + a + 0.5, b - a) for a, b in zip(edges[::2], edges[1::2])], (y, 0.8), color=color)


def browser_png(path: Path, chrom: str, start: int, seq: str, tracks: dict[str, np.ndarray],
                chunk_starts: list[np.ndarray], exons: np.ndarray | None, title: str) -> None:
    """seq: the region's bases (lowercase = repeat); tracks: name -> per-base values; chunk_starts:
    per stage, starts relative to the region; exons: per-base mask or None; start: 0-based."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    n = len(seq)
    x = start + 1 + np.arange(n)
    fig, axes = plt.subplots(len(tracks) + 1, 1, figsize=(12, 1.3 * len(tracks) + 2.2), sharex=True,
                             gridspec_kw={"height_ratios": [1] * len(tracks) + [1.6]})
    for ax, (name, values) in zip(axes, tracks.items()):
        ax.plot(x, values, lw=0.7, color="#333333")
        if name.startswith("p_"):
            ax.axhline(0.5, lw=0.6, ls="--", color="#c0392b")
            ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(LABELS.get(name, name), rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    ax = axes[-1]
    rows = [(f"stage-{s} chunks", lambda y, s=s: _blocks(ax, chunk_starts[s], n, y, start))
            for s in range(len(chunk_starts))]
    rows.append(("repeats", lambda y: _mask_blocks(ax, np.array([c.islower() for c in seq]), y, start, "#7f7f7f")))
    if exons is not None:
        rows.append(("exons (GTF)", lambda y: _mask_blocks(ax, exons, y, start, "#2e8b57")))
    for i, (_, draw) in enumerate(rows):
        draw(len(rows) - 1 - i)
    ax.set_yticks([len(rows) - 1 - i + 0.4 for i in range(len(rows))], [r[0] for r in rows], fontsize=8)
    ax.set_ylim(-0.2, len(rows))
    ax.set_xlim(start + 0.5, start + n + 0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}"))
    ax.set_xlabel(f"{chrom} (1-based bp)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
