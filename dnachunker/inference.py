"""Inference on sequences of any length: overlapping windows, run in length-sorted batches and
stitched, for per-base states (embeddings) and the learned segmentation.

A sequence no longer than `window` is one forward pass. A longer one is cut into windows of
`window` bases that overlap by at least `overlap`; every position is taken from the window in
which it lies farthest from an edge (the cut between two windows is the middle of their
overlap), so what is kept of a window never comes from its first or last overlap/2 bases, where
the missing context would show. `window=0` runs every sequence in one pass (memory permitting).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .tokenizer import batch_encode


def tiles(length: int, window: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """-> [(start, end, keep_from, keep_to)]: windows covering [0, length) and the part of each
    that is kept; the kept parts tile [0, length) exactly."""
    if window <= 0 or length <= window:
        return [(0, length, 0, length)]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got {overlap} for window {window}")
    starts = list(range(0, length - window, window - overlap)) + [length - window]
    cuts = [0] + [(b + a + window) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return [(s, s + window, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


@contextmanager
def evaluating(model) -> Iterator[None]:
    """`model` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class Result:
    """One sequence's outputs, stitched: per-base final states and chunk starts per stage."""
    hidden: np.ndarray                  # (L, d) float32
    chunk_starts: list[np.ndarray]      # per stage: sorted base-pair starts (0 first)


@torch.no_grad()
def run(model, seqs: list[str], window: int | None = None, overlap: int | None = None, batch_size: int = 8,
        device: str | torch.device | None = None, progress: bool = True, desc: str = "windows") -> list[Result]:
    """Every sequence through `model` in windows (default: the model's max_len, overlapping by half).

    Windows of all sequences are sorted by length and batched, so padding stays small."""
    window = model.cfg.max_len if window is None else window
    overlap = window // 2 if overlap is None else overlap
    device = device or next(model.parameters()).device
    jobs = [(i, t) for i, s in enumerate(seqs) for t in tiles(len(s), window, overlap)]
    jobs.sort(key=lambda j: j[1][1] - j[1][0], reverse=True)
    parts: dict[int, list] = {i: [] for i in range(len(seqs))}
    with evaluating(model), tqdm(total=len(jobs), desc=desc, unit="window", disable=not progress,
                                 dynamic_ncols=True) as bar:
        for k in range(0, len(jobs), batch_size):
            batch = jobs[k:k + batch_size]
            enc = batch_encode([seqs[i][s:e] for i, (s, e, _, _) in batch])
            out = model(enc.input_ids.to(device), enc.valid.to(device))
            hidden = out.hidden.float().cpu().numpy()
            for j, (i, (s, e, lo, hi)) in enumerate(batch):
                starts = [st.chunk_start[j][st.chunk_valid[j]].long().cpu().numpy() + s for st in out.stages]
                kept = [b[(b >= lo) & (b < hi)] for b in starts]
                parts[i].append((lo, hidden[j, lo - s:hi - s], kept))
            bar.update(len(batch))
    results = []
    for i in range(len(seqs)):
        pieces = sorted(parts[i], key=lambda p: p[0])
        stages = [np.concatenate([p[2][s] for p in pieces]) for s in range(len(pieces[0][2]))]
        for s, b in enumerate(stages):  # a seam can fall inside a chunk: every stage still starts at 0
            if b.size == 0 or b[0] != 0:
                stages[s] = np.concatenate([[0], b])
        results.append(Result(np.concatenate([p[1] for p in pieces]), stages))
    return results


def chunk_means(hidden: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(L, d) per-base states, chunk starts (m,) -> (m, d) mean state of each chunk."""
    sums = np.add.reduceat(hidden, starts, axis=0)
    lengths = np.diff(np.append(starts, len(hidden)))[:, None]
    return sums / lengths
