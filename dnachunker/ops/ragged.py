"""Index helpers for right-padded batches of variable-length sequences.

All sequences in a batch are left-aligned: positions t < length[b] are real, the rest padding.
Every operation here keeps that invariant so that padding can never reach a real position.
"""
from __future__ import annotations

import torch


def reverse_index(valid: torch.Tensor, padded: bool | None = None) -> torch.Tensor | None:
    """valid: (b, l) bool -> (b, l) long index that reverses each sequence inside its length, or
    None when no sequence is padded (then the reversal is a flip: `reverse_time`). `padded`: whether
    any sequence is, when the caller knows; else it is read from `valid` (a host sync on a GPU).

    Padding stays where it is (at the end), so a reverse-direction scan over the gathered tensor
    starts at each sequence's own last base rather than at the padding.
    """
    if not (padded if padded is not None else not bool(valid.all())):
        return None
    lengths = valid.sum(1, keepdim=True)
    t = torch.arange(valid.size(1), device=valid.device).expand_as(valid)
    return torch.where(t < lengths, lengths - 1 - t, t)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (b, l, ...) , index: (b, m) -> (b, m, ...) gathered along time."""
    idx = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, idx)


def reverse_time(x: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """x: (b, l, ...) reversed within each sequence's length, `order` from `reverse_index`. A flip
    when nothing is padded: on CPU ~8x faster than the gather, and its backward is a flip, not a
    scatter-add."""
    return x.flip(1) if order is None else gather_time(x, order)


def flip_valid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Reverse every sequence of x (b, l, ...) within its valid length. An involution."""
    return reverse_time(x, reverse_index(valid))
