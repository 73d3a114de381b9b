"""Chunk (downsample at boundaries) and dechunk (upsample + bidirectional p-gated smoothing)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.ragged import gather_time, reverse_time
from ..ops.scan import gated_scan


@dataclass
class Chunks:
    """A segmentation of a right-padded batch (b, l) into chunks (b, m).

    index:    (b, m) position of each chunk's first element (its boundary)
    valid:    (b, m) bool, real chunks
    chunk_id: (b, l) chunk of every position (padding points at the last chunk)
    """
    index: torch.Tensor
    valid: torch.Tensor
    chunk_id: torch.Tensor
    padded: bool                     # some sequence has fewer chunks than m (known on the host)
    total: int = 0                   # real chunks in the batch (known on the host)

    @classmethod
    def from_boundaries(cls, boundary: torch.Tensor) -> "Chunks":
        """boundary: (b, l) bool, True at each chunk start, False on padding. The one host sync of
        a stage: the chunk counts, which size the chunk tensors."""
        n = boundary.sum(1)
        counts = n.tolist()
        m = max(max(counts), 1)
        # stable sort brings boundary positions to the front, in order
        index = torch.argsort((~boundary).to(torch.int8), dim=1, stable=True)[:, :m]
        valid = torch.arange(m, device=boundary.device)[None, :] < n[:, None]
        chunk_id = (torch.cumsum(boundary.long(), 1) - 1).clamp(min=0)
        return cls(index, valid, chunk_id, min(counts) < m, sum(counts))

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """(b, l, ...) -> (b, m, ...): the value at each chunk's first position."""
        return gather_time(x, self.index)

    def up(self, z: torch.Tensor) -> torch.Tensor:
        """(b, m, ...) -> (b, l, ...): piecewise-constant upsampling by cumulative boundaries."""
        return gather_time(z, self.chunk_id)

    def max(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-chunk maximum of x: (b, l) float over real positions -> (b, m)."""
        low = torch.finfo(x.dtype).min
        out = torch.full(self.index.shape, low, dtype=x.dtype, device=x.device)
        return out.scatter_reduce(1, self.chunk_id, x.masked_fill(~valid, low), "amax")

def dechunk(z: torch.Tensor, p: torch.Tensor, chunks: Chunks, valid: torch.Tensor,
            rev: torch.Tensor | None) -> torch.Tensor:
    """Bring chunk vectors back to the finer resolution.

    z: (b, m, d) chunk outputs; p: (b, l) boundary probabilities; valid: (b, l); rev:
    `reverse_index(valid)` when the caller has it -> (b, l, d).
    u = upsample(z); forward scan h_t = (1-p_t) h_{t-1} + p_t u_t; backward scan gated by the
    probability of the boundary *after* t (p_{t+1}, 1 at each sequence's last base); average.
    """
    u = chunks.up(z)
    forward = gated_scan(u, p)
    last = valid & ~torch.cat([valid[:, 1:], valid.new_zeros(valid.size(0), 1)], dim=1)
    p_next = torch.cat([p[:, 1:], p.new_zeros(p.size(0), 1)], dim=1).masked_fill(last, 1.0)
    backward = reverse_time(gated_scan(reverse_time(u, rev), reverse_time(p_next, rev)), rev)
    return 0.5 * (forward + backward)
