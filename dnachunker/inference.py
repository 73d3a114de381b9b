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

from .cpu import release_freed_memory
from .tokenizer import batch_encode
from .tracks import window_tracks

TRIM_EVERY = 16  # batches between handing freed memory back (cpu.release_freed_memory)


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


@dataclass
class Piece:
    """The kept part of one window: positions [lo, lo + len(hidden)) of sequence `seq`."""
    seq: int
    lo: int
    hidden: np.ndarray                  # (hi - lo, d) float32 final states
    chunk_starts: list[np.ndarray]      # per stage: the chunk starts (bp) that fall in [lo, hi)
    tracks: dict[str, np.ndarray] | None = None  # with stream(tracks=True): dnachunker.tracks, (hi - lo,) each


@torch.no_grad()
def stream(model, seqs: list[str], window: int | None = None, overlap: int | None = None, batch_size: int = 8,
           device: str | torch.device | None = None, progress: bool = True, desc: str = "windows",
           tracks: bool = False) -> Iterator[Piece]:
    """Every sequence through `model` in windows (default: the model's max_len, overlapping by half),
    yielded in input order, left to right within a sequence: memory is one batch's, however long
    the sequences (a consumer that keeps only sums or writes pieces out stays bounded). With
    `tracks`, each piece also carries the per-base tracks of dnachunker.tracks."""
    window = model.cfg.max_len if window is None else window
    overlap = window // 2 if overlap is None else overlap
    device = device or next(model.parameters()).device
    jobs = [(i, t) for i, s in enumerate(seqs) for t in tiles(len(s), window, overlap)]
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
                if lo == 0:  # a seam can fall inside a chunk: every stage still starts at 0
                    kept = [b if b.size and b[0] == 0 else np.concatenate([[0], b]).astype(b.dtype) for b in kept]
                per_base = ({k: v[lo - s:hi - s] for k, v in window_tracks(out, enc.input_ids, j, e - s).items()}
                            if tracks else None)
                yield Piece(i, lo, hidden[j, lo - s:hi - s], kept, per_base)
            bar.update(len(batch))
            if (k // batch_size) % TRIM_EVERY == TRIM_EVERY - 1:
                release_freed_memory()


def run(model, seqs: list[str], window: int | None = None, overlap: int | None = None, batch_size: int = 8,
        device: str | torch.device | None = None, progress: bool = True, desc: str = "windows") -> list[Result]:
    """Every sequence's stitched outputs, held in memory (stream() for inputs that do not fit)."""
    parts: dict[int, list[Piece]] = {i: [] for i in range(len(seqs))}
    for piece in stream(model, seqs, window, overlap, batch_size, device, progress, desc):
        parts[piece.seq].append(piece)
    results = []
    for i in range(len(seqs)):
        pieces = parts[i]
        stages = [np.concatenate([p.chunk_starts[s] for p in pieces]) for s in range(len(pieces[0].chunk_starts))]
        results.append(Result(np.concatenate([p.hidden for p in pieces]), stages))
    return results


class ChunkMeans:
    """The mean state of each chunk of one sequence, from its pieces in order (a chunk may span
    pieces): what chunk_means gives on the stitched sequence, with memory for one chunk only."""

    def __init__(self):
        self.sum, self.n = None, 0  # the chunk still open

    def add(self, hidden: np.ndarray, lo: int, starts: np.ndarray) -> np.ndarray:
        """A piece's states (n, d) at [lo, lo + n) and the chunk starts in it -> (k, d) means of the
        chunks it completes."""
        cuts = [int(c) for c in np.asarray(starts) - lo]
        done = []
        if not cuts or cuts[0] != 0:  # the piece begins inside the open chunk (or the first, at 0)
            self._extend(hidden[:cuts[0] if cuts else len(hidden)])
        for a, b in zip(cuts, cuts[1:] + [len(hidden)]):
            if self.n:
                done.append(self.sum / self.n)
            self.sum, self.n = hidden[a:b].sum(0, dtype=np.float64), b - a
        return np.array(done, dtype=np.float32).reshape(len(done), hidden.shape[1])

    def _extend(self, part: np.ndarray) -> None:
        total = part.sum(0, dtype=np.float64)
        self.sum = total if self.n == 0 else self.sum + total
        self.n += len(part)

    def close(self) -> np.ndarray:
        """(1, d) the last chunk's mean (the sequence has ended)."""
        return (self.sum / self.n).astype(np.float32)[None]


def chunk_means(hidden: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(L, d) per-base states, chunk starts (m,) -> (m, d) mean state of each chunk."""
    sums = np.add.reduceat(hidden, starts, axis=0)
    lengths = np.diff(np.append(starts, len(hidden)))[:, None]
    return sums / lengths
