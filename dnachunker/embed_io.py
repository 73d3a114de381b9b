"""Embeddings written as they are computed (inference.stream's pieces, summed by inference.Span),
and the same job in parts (dnachunker.parts), merged in the input's order. Memory is one batch,
one open chunk and one block of a part, never a sequence.

The zarr store:
  mean          (N, d) float32   each sequence's mean state
  per_base/<i>  (L_i, d) float32 with --per-base
  chunk_starts/<i> (m_i,) int64, per_chunk/<i> (m_i, d) float32: the chunks of one stage
  attrs: names, lengths, and what the caller adds (model, chunk_stage, window)

A part's zarr store, per sequence i it reaches, over the stretch [lo, hi) its windows keep
(attrs["spans"] lists [i, lo, hi]):
  per_base/<i>  (hi - lo, d) float32
  chunk_starts/<i> (k,) int64   the chunk starts in [lo, hi)
  chunk_sum/<i> (1 + k, d) float64, chunk_n/<i> (1 + k,) int64: row 0 the bases before the
                first start (the end of a chunk begun in an earlier part; without chunks, all
                of them), then each chunk begun here, summed over its bases here
"""
from __future__ import annotations

import numpy as np

from .inference import ChunkSums, Span

BLOCK = 1 << 16  # rows copied at a time by the merge
MEAN_ROWS = 4096  # rows of `mean` per zarr chunk, written a chunk at a time


class Rows:
    """Rows bound for a zarr array from row `at` on (None: appended), written a whole chunk at a time:
    a write into part of a compressed chunk rereads and rewrites all of it."""

    def __init__(self, array, at: int | None = None):
        self.array, self.append, self.at = array, at is None, array.shape[0] if at is None else at
        self.pending: list[np.ndarray] = []
        self.n = 0  # rows pending

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        self.n += len(rows)
        self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        size = self.array.chunks[0]
        cut = self.n if final else (self.at + self.n) // size * size - self.at
        if cut <= 0:
            return
        block = np.concatenate(self.pending)
        if self.append:
            self.array.append(block[:cut])
        else:
            self.array[self.at:self.at + cut] = block[:cut]
        self.at, self.n = self.at + cut, self.n - cut
        self.pending = [block[cut:]] if self.n else []


class Embeddings:
    """The final outputs of N sequences, from their spans in order. `root`: a zarr group, or None
    for means only (the .npz)."""

    def __init__(self, root, lengths: list[int], d: int, per_base: bool, stage: int | None):
        self.root, self.lengths, self.d, self.per_base, self.stage = root, lengths, d, per_base, stage
        self.seq, self.total, self.n, self.chunks = -1, None, 0, None
        self.rows: dict[str, Rows] = {}  # the open sequence's arrays
        self.done = 0  # sequences ended
        # each sequence's mean: all in memory for the .npz, else to `mean` a zarr chunk at a time
        self.means = [] if root is None else Rows(root.create_array("mean", shape=(len(lengths), d), dtype="float32",
                                                                    chunks=(MEAN_ROWS, d)), at=0)

    def add(self, span: Span, hidden: np.ndarray | None = None) -> None:
        """One span of sequence span.seq (sequences in order); `hidden` (span.n, d) its per-base states."""
        if span.seq != self.seq:
            self._end()
            self._begin(span.seq)
        total, n = span.total
        self.total, self.n = self.total + total, self.n + n
        if hidden is not None and self.per_base:
            self.rows["per_base"].add(hidden)
        if self.stage is not None:
            self.rows["chunk_starts"].add(span.starts)
            self._chunks(self.chunks.add(span))

    def per_base_rows(self, rows: np.ndarray) -> None:
        """The open sequence's next per-base states (the merge copies them apart from their spans)."""
        self.rows["per_base"].add(rows)

    def close(self) -> np.ndarray:
        """-> (N, d) float32 means (all of them in memory only without a zarr root)."""
        self._end()
        if self.done != len(self.lengths):
            raise RuntimeError(f"embeddings of {self.done} of {len(self.lengths)} sequences")
        if self.root is None:
            return np.stack(self.means)
        self.means.flush()
        return self.root["mean"]

    def _begin(self, i: int) -> None:
        if i != self.done:
            raise RuntimeError(f"sequence {i} out of order")
        self.seq, self.total, self.n = i, np.zeros(self.d), 0
        self.chunks = ChunkSums() if self.stage is not None else None
        if self.per_base:
            self.rows["per_base"] = Rows(self.root.create_array(
                f"per_base/{i}", shape=(self.lengths[i], self.d), dtype="float32",
                chunks=(min(self.lengths[i], BLOCK), self.d)), at=0)
        if self.stage is not None:
            self.rows["chunk_starts"] = Rows(self.root.create_array(f"chunk_starts/{i}", shape=(0,), dtype="int64",
                                                                    chunks=(BLOCK,)))
            self.rows["per_chunk"] = Rows(self.root.create_array(f"per_chunk/{i}", shape=(0, self.d), dtype="float32",
                                                                 chunks=(BLOCK // 4, self.d)))

    def _end(self) -> None:
        if self.seq < 0:
            return
        if self.n != self.lengths[self.seq]:
            raise RuntimeError(f"sequence {self.seq}: {self.n} of {self.lengths[self.seq]} bases embedded")
        if self.chunks is not None:
            self._chunks(self.chunks.close())
        for rows in self.rows.values():
            rows.flush()
        self.rows = {}
        mean = (self.total / self.n).astype(np.float32)
        if self.root is None:
            self.means.append(mean)
        else:
            self.means.add(mean[None])
        self.seq, self.done = -1, self.done + 1

    def _chunks(self, done: list[tuple[np.ndarray, int]]) -> None:
        if done:
            self.rows["per_chunk"].add(np.stack([t / n for t, n in done]).astype(np.float32))


class PartWriter:
    """One part's spans into a part's zarr group (layout above)."""

    def __init__(self, root, d: int, per_base: bool):
        self.root, self.d, self.per_base = root, d, per_base
        self.spans: list[list[int]] = []
        self.chunks, self.rows = None, {}

    def add(self, span: Span, hidden: np.ndarray) -> None:
        if not self.spans or self.spans[-1][0] != span.seq:
            self._end()
            self._begin(span)
        if self.spans[-1][2] != span.lo:
            raise RuntimeError(f"part: sequence {span.seq} skips from {self.spans[-1][2]} to {span.lo}")
        self.spans[-1][2] = span.lo + span.n
        if self.per_base:
            self.rows["per_base"].add(hidden)
        self.rows["chunk_starts"].add(span.starts)
        self._sums(self.chunks.add(span))

    def close(self) -> None:
        self._end()
        self.root.attrs["spans"] = self.spans

    def _begin(self, span: Span) -> None:
        i = span.seq
        self.spans.append([i, span.lo, span.lo])
        self.chunks = ChunkSums()
        arrays = {"chunk_starts": ((0,), "int64", (BLOCK,)), "chunk_sum": ((0, self.d), "float64", (BLOCK // 4, self.d)),
                  "chunk_n": ((0,), "int64", (BLOCK,))}
        if self.per_base:
            arrays["per_base"] = ((0, self.d), "float32", (BLOCK, self.d))
        self.rows = {name: Rows(self.root.create_array(f"{name}/{i}", shape=shape, dtype=dtype, chunks=chunks))
                     for name, (shape, dtype, chunks) in arrays.items()}
        if not span.head_n:  # row 0 is the head: empty when the part begins at a chunk start
            self._sums([(np.zeros(self.d), 0)])

    def _sums(self, done: list[tuple[np.ndarray, int]]) -> None:
        if done:
            self.rows["chunk_sum"].add(np.stack([t for t, _ in done]))
            self.rows["chunk_n"].add(np.array([n for _, n in done], dtype=np.int64))

    def _end(self) -> None:
        if not self.spans:
            return
        self._sums(self.chunks.close())
        for rows in self.rows.values():
            rows.flush()
        i = self.spans[-1][0]
        k, rows = self.root[f"chunk_starts/{i}"].shape[0], self.root[f"chunk_sum/{i}"].shape[0]
        if rows != k + 1:
            raise RuntimeError(f"part: sequence {i}: {rows} chunk sums for {k} starts")


def merge(out: Embeddings, parts: list) -> None:
    """Every part's spans (zarr groups, in order) into `out`, a block at a time."""
    for part in parts:
        for i, lo, hi in part.attrs["spans"]:
            sums, counts, starts = part[f"chunk_sum/{i}"], part[f"chunk_n/{i}"], part[f"chunk_starts/{i}"]
            for a in range(0, sums.shape[0], BLOCK):
                b = min(a + BLOCK, sums.shape[0])
                rows, n = sums[a:b], counts[a:b]
                head = a == 0
                out.add(Span(i, lo, hi - lo, starts[max(a - 1, 0):b - 1],
                             rows[0] if head else np.zeros(out.d), int(n[0]) if head else 0,
                             rows[1:] if head else rows, n[1:] if head else n))
            if out.per_base:
                for a in range(0, hi - lo, BLOCK):
                    out.per_base_rows(part[f"per_base/{i}"][a:a + BLOCK])
