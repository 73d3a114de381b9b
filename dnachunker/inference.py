"""Inference on sequences of any length: overlapping windows, run in batches in input order and
stitched, for per-base states (embeddings) and the learned segmentation.

A sequence no longer than `window` is one forward pass. A longer one is cut into windows of
`window` bases that overlap by at least `overlap`; every position is taken from the window in
which it lies farthest from an edge (the cut between two windows is the middle of their
overlap), so what is kept of a window never comes from its first or last overlap/2 bases, where
the missing context would show. `window=0` runs every sequence in one pass (memory permitting).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from .cpu import release_freed_memory
from .tokenizer import batch_encode
from .tracks import window_tracks

TRIM_EVERY = 16  # batches between handing freed memory back (cpu.release_freed_memory)


class SequenceLike(Protocol):
    """A str, or anything with a length whose slices are text (reference.Region)."""
    def __len__(self) -> int: ...
    def __getitem__(self, s: slice) -> str: ...


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


def tile_count(length: int, window: int, overlap: int) -> int:
    """len(tiles(length, window, overlap)), without making them."""
    if window <= 0 or length <= window:
        return 1
    return len(range(0, length - window, window - overlap)) + 1


@torch.no_grad()
def stream(model, seqs: Sequence[SequenceLike], window: int | None = None, overlap: int | None = None,
           batch_size: int = 8, device: str | torch.device | None = None, progress: bool = True,
           desc: str = "windows", tracks: bool = False, select: range | None = None) -> Iterator[Piece]:
    """Every sequence through `model` in windows (default: the model's max_len, overlapping by half),
    yielded in input order, left to right within a sequence: memory is one batch's, however long
    the sequences (a consumer that keeps only sums or writes pieces out stays bounded; a sequence
    may be a reference.Region, read window by window). `select`: only these windows, numbered
    across all sequences in order (a part of a job: dnachunker.parts). With `tracks`, each piece
    also carries the per-base tracks of dnachunker.tracks."""
    window = model.cfg.max_len if window is None else window
    overlap = window // 2 if overlap is None else overlap
    device = device or next(model.parameters()).device
    total = sum(tile_count(len(s), window, overlap) for s in seqs)
    select = range(total) if select is None else select

    def jobs() -> Iterator[tuple[int, tuple[int, int, int, int]]]:
        first = 0
        for i, seq in enumerate(seqs):
            count = tile_count(len(seq), window, overlap)
            if first < select.stop and first + count > select.start:
                for j, t in enumerate(tiles(len(seq), window, overlap)):
                    if first + j in select:
                        yield i, t
            first += count

    with evaluating(model), tqdm(total=len(select), desc=desc, unit="window", disable=not progress,
                                 dynamic_ncols=True) as bar:
        todo = jobs()
        for n, batch in enumerate(iter(lambda: list(islice(todo, batch_size)), [])):
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
            if n % TRIM_EVERY == TRIM_EVERY - 1:
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


@dataclass
class Span:
    """A stretch [lo, lo + n) of one sequence, summed by chunk: what a part keeps of its windows
    (dnachunker.embed_io). `head` is the bases before the first chunk start in it (the end of a
    chunk begun earlier), then one sum per chunk begun in it, over the bases in it."""
    seq: int
    lo: int
    n: int
    starts: np.ndarray      # (k,) int64 chunk starts in [lo, lo + n), bp
    head_sum: np.ndarray    # (d,) float64
    head_n: int
    sums: np.ndarray        # (k, d) float64
    counts: np.ndarray      # (k,) int64

    @classmethod
    def of(cls, piece: Piece, stage: int | None) -> Span:
        """A piece's span, chunked by `stage`'s starts (None: no chunks, all of it is the head)."""
        h = piece.hidden
        starts = np.asarray(piece.chunk_starts[stage] if stage is not None else [], dtype=np.int64)
        bounds = np.concatenate([[0], starts - piece.lo, [len(h)]])
        sums = np.add.reduceat(h.astype(np.float64), bounds[:-1], axis=0)
        sums[np.diff(bounds) == 0] = 0  # reduceat gives h[i] for an empty [i, i)
        counts = np.diff(bounds)
        return cls(piece.seq, piece.lo, len(h), starts, sums[0], int(counts[0]), sums[1:], counts[1:])

    @property
    def total(self) -> tuple[np.ndarray, int]:
        """The sum of its states and their number."""
        return self.head_sum + self.sums.sum(0), self.head_n + int(self.counts.sum())


class ChunkSums:
    """The chunks of one sequence from its spans in order (a chunk may run across spans and parts):
    with memory for the open chunk only."""

    def __init__(self):
        self.sum, self.n = None, 0  # the chunk still open (before any start: the bases before the first)

    def add(self, span: Span) -> list[tuple[np.ndarray, int]]:
        """-> (sum, count) of the chunks the span closes, in order."""
        if span.head_n:
            self.sum = span.head_sum.copy() if self.n == 0 else self.sum + span.head_sum
            self.n += span.head_n
        done = []
        for total, n in zip(span.sums, span.counts):
            if self.n:
                done.append((self.sum, self.n))
            self.sum, self.n = total.copy(), int(n)
        return done

    def close(self) -> list[tuple[np.ndarray, int]]:
        """The open chunk, the sequence or part having ended ([] if nothing is open)."""
        return [(self.sum, self.n)] if self.n else []


def chunk_means(hidden: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(L, d) per-base states, chunk starts (m,) -> (m, d) mean state of each chunk (the reference
    for ChunkSums over pieces)."""
    sums = np.add.reduceat(hidden, starts, axis=0)
    lengths = np.diff(np.append(starts, len(hidden)))[:, None]
    return sums / lengths
