"""Chunk-length statistics of a learned tokenization, per group of windows (each genome of a
corpus, or one FASTA) and per region type (soft-masked repeats, GTF exons), and their picture.

A row per (group, stage, region): how many chunks, the ratio the router achieved on its own
(chunks / the stage's input positions: bases at stage 0, stage-0 chunks at stage 1; no [MASK], so
no forced boundaries: what inference produces), the mean chunk length in bp with its 95 %
interval, and the median; each group after the first also gives its difference from the first
group's mean length with a 95 % interval. Windows are the unit of noise: intervals are bootstraps
over the group's windows (drawn with replacement; mean = their bases / their chunks), because
chunks of one window are not independent of each other.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dnachunker.fileio import atomic_file


def chunk_lengths(starts: np.ndarray, length: int) -> np.ndarray:
    return np.diff(np.append(starts, length))


def lengths_by_region(starts: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Chunk lengths split by the region type (bool per base) most of the chunk lies in."""
    lens = chunk_lengths(starts, len(region))
    frac = np.add.reduceat(region.astype(np.float64), starts) / lens
    return {"in": lens[frac > 0.5], "out": lens[frac <= 0.5]}


def _bootstrap(per_window: list[np.ndarray], n: int, seed: int) -> tuple[float, np.ndarray]:
    """-> (mean chunk length, its n bootstrap resamples over windows)."""
    bp = np.array([w.sum() for w in per_window], dtype=np.float64)
    chunks = np.array([len(w) for w in per_window], dtype=np.float64)
    if chunks.sum() == 0:
        return float("nan"), np.full(n, np.nan)
    draw = np.random.default_rng(seed).integers(0, len(bp), size=(n, len(bp)))
    return float(bp.sum() / chunks.sum()), bp[draw].sum(1) / np.maximum(chunks[draw].sum(1), 1)


def mean_length_ci(per_window: list[np.ndarray], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean chunk length (bp per chunk) of the windows' chunks and its 95 % bootstrap interval
    over windows. per_window: each window's chunk lengths."""
    mean, boot = _bootstrap(per_window, n, seed)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return mean, float(lo), float(hi)


def difference_ci(a: list[np.ndarray], b: list[np.ndarray], n: int = 2000) -> tuple[float, float, float]:
    """Mean chunk length of b minus a's, and its 95 % interval: each group's windows resampled
    on their own (different windows, nothing to pair)."""
    (ma, ba), (mb, bb) = _bootstrap(a, n, 1), _bootstrap(b, n, 2)
    lo, hi = np.percentile(bb - ba, [2.5, 97.5])
    return mb - ma, float(lo), float(hi)


def _row(group: str, stage: int, region: str, per_window: list[np.ndarray], inputs: float | None = None,
         first: list[np.ndarray] | None = None) -> dict:
    lens = np.concatenate(per_window) if per_window else np.array([], dtype=np.int64)
    mean, lo, hi = mean_length_ci(per_window)
    d = difference_ci(first, per_window) if first is not None else (None, None, None)
    return {"group": group, "stage": stage, "region": region, "windows": len(per_window), "chunks": len(lens),
            "ratio": len(lens) / inputs if inputs else None, "mean_bp": mean, "mean_bp_95lo": lo,
            "mean_bp_95hi": hi, "median_bp": float(np.median(lens)) if len(lens) else float("nan"),
            "vs_first_bp": d[0], "vs_first_95lo": d[1], "vs_first_95hi": d[2]}


def per_window_lengths(segs: list[list[np.ndarray]], length: int) -> list[list[np.ndarray]]:
    """segs: per window, per stage, the chunk starts (bp) -> per stage, per window, the chunk lengths."""
    return [[chunk_lengths(seg[stage], length) for seg in segs] for stage in range(len(segs[0]))]


def group_rows(group: str, segs: list[list[np.ndarray]], per_window: list[list[np.ndarray]],
               regions: dict[str, list[np.ndarray]], first: list[list[np.ndarray]] | None = None) -> list[dict]:
    """segs: per window, per stage, the chunk starts (bp); per_window: their per_window_lengths;
    regions: region type -> per window a bool mask per base; first: the first group's
    per_window_lengths, to compare with (None: this is the first). -> the group's rows (see above)."""
    rows = []
    for stage, lengths in enumerate(per_window):
        # the stage's input positions: the windows' bases at stage 0, the previous stage's chunks after
        inputs = sum(w.sum() for w in lengths) if stage == 0 else sum(len(w) for w in per_window[stage - 1])
        rows.append(_row(group, stage, "all", lengths, inputs, first[stage] if first else None))
        for name, masks in regions.items():
            split = [lengths_by_region(seg[stage], m) for seg, m in zip(segs, masks)]
            rows.append(_row(group, stage, name, [x["in"] for x in split]))
            rows.append(_row(group, stage, f"non-{name}", [x["out"] for x in split]))
    return rows


def region_lengths(segs: list[list[np.ndarray]], regions: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """segs: per window, per stage, the chunk starts; regions: type -> per window a bool mask per
    base (at least one type) -> {'all', '<type>', 'non-<type>': per stage, every chunk length}."""
    stages, masks0 = len(segs[0]), regions[next(iter(regions))]
    out = {"all": [np.concatenate([chunk_lengths(seg[s], len(m)) for seg, m in zip(segs, masks0)])
                   for s in range(stages)]}
    for name, masks in regions.items():
        split = [[lengths_by_region(seg[s], m) for seg, m in zip(segs, masks)] for s in range(stages)]
        out[name] = [np.concatenate([x["in"] for x in per]) for per in split]
        out[f"non-{name}"] = [np.concatenate([x["out"] for x in per]) for per in split]
    return out


def length_histogram(lengths: dict[str, dict[str, list[np.ndarray]]], rows: list[dict], path: Path,
                     title: str) -> None:
    """Panels: a column per stage; a row for all chunks (one line per group, the legend giving its
    mean and 95 % interval), then a row per region type, each group's chunks in the region (solid)
    and outside it (dashed). lengths: group -> region label ('all', 'repeat', 'non-repeat', ...) ->
    per stage every chunk length; the share of a line's chunks at each length in bp."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    first = next(iter(lengths.values()))
    stages = len(first["all"])
    kinds = [k for k in first if k != "all" and not k.startswith("non-")]
    fig, axes = plt.subplots(1 + len(kinds), stages, figsize=(6.5 * stages, 3.3 * (1 + len(kinds))), squeeze=False)
    stat = {(r["group"], r["stage"], r["region"]): r for r in rows}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for stage in range(stages):
        top = int(max(np.percentile(g["all"][stage], 99) for g in lengths.values())) + 1
        for row, kind in enumerate(["all", *kinds]):
            ax = axes[row][stage]
            for i, (group, by_region) in enumerate(lengths.items()):
                for label, style in ([("all", "-")] if kind == "all" else [(kind, "-"), (f"non-{kind}", "--")]):
                    values = by_region[label][stage]
                    if not len(values):
                        continue
                    share = np.bincount(np.minimum(values, top), minlength=top + 1)[1:] / len(values)
                    r = stat[(group, stage, label)]
                    ax.step(np.arange(1, top + 1), share, where="mid", linewidth=1.4, linestyle=style,
                            color=colours[i % len(colours)],
                            label=f"{group or 'all'}{'' if label == 'all' else ', ' + label}: mean {r['mean_bp']:.2f} "
                                  f"bp [{r['mean_bp_95lo']:.2f}, {r['mean_bp_95hi']:.2f}], {r['chunks']:,} chunks")
            ax.set_title(f"stage {stage}: " + ("all chunks" if kind == "all" else f"in {kind}s (solid) and outside "
                                               f"them (dashed)"), fontsize=10, loc="left")
            ax.set_ylabel("share of the line's chunks")
            ax.legend(fontsize=7, loc="upper right")
        axes[-1][stage].set_xlabel(f"chunk length (bp; the last bin: {top} or more)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
