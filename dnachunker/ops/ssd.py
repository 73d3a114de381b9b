"""Selective state-space scan in the Mamba-2 SSD form (pure PyTorch) and its sequential twin.

Recurrence, per head h (state N, head dim P):

    S_t = exp(a_t) * S_{t-1} + B_t x_t^T          S: (N, P)
    y_t = C_t^T S_t

`ssd_chunked` evaluates it with the chunked "state-space duality" algorithm of Mamba-2:
quadratic attention-like products inside chunks of `chunk_size` steps and a short scan over
chunk states between them. That is matmul-bound and ~100x faster on CPU than the Python loop in
`ssd_sequential`, which is the reference the tests compare it against (values and gradients).

Both take the *log-decay* a_t directly, so the same kernel serves the Mamba-2 mixer
(a_t = dt_t * A_h) and the p-gated dechunk scans (a_t = log(1 - p_t)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upcast(x: torch.Tensor) -> torch.Tensor:
    """At least fp32 (bf16/fp16 -> fp32; fp64 stays fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """a: (..., T) -> (..., T, T) with out[i, j] = sum_{k=j+1..i} a_k for i >= j, -inf above."""
    T = a.size(-1)
    a = a.unsqueeze(-1).expand(*a.shape, T)  # [..., i, j] = a_i
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    a = a.masked_fill(~strict, 0.0)
    out = torch.cumsum(a, dim=-2)
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~lower, float("-inf"))


def ssd_chunked(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk_size: int = 64) -> torch.Tensor:
    """Chunked SSD scan.

    x: (b, l, h, p) inputs (already scaled by dt where applicable)
    a: (b, l, h)    log-decay, <= 0
    B: (b, l, h, n), C: (b, l, h, n)
    returns y: (b, l, h, p), in the dtype of x. Computed in at least fp32.
    """
    dtype = x.dtype
    b, l, h, p = x.shape
    pad = (-l) % chunk_size
    if pad:  # right padding never changes earlier outputs of a causal scan
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        a = F.pad(a, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c = (l + pad) // chunk_size
    x = upcast(x).reshape(b, c, chunk_size, h, p)
    B = upcast(B).reshape(b, c, chunk_size, h, -1)
    C = upcast(C).reshape(b, c, chunk_size, h, -1)
    a = upcast(a).reshape(b, c, chunk_size, h).permute(0, 3, 1, 2)  # (b, h, c, s)
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within-chunk outputs (the quadratic, attention-like part)
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * torch.exp(_segsum(a))  # (b, h, c, s, s)
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, x)
    # 2. state at the end of each chunk, from that chunk's inputs alone
    decay_states = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, s)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, x)
    # 3. scan over chunk states (c is small: l / chunk_size)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
    # 4. contribution of the carried-in state to each position
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(a_cum))
    y = (y_diag + y_off).reshape(b, c * chunk_size, h, p)[:, :l]
    return y.to(dtype)


def ssd_sequential(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Reference twin of `ssd_chunked`: the recurrence, one step at a time. Same shapes."""
    dtype = x.dtype
    x, a, B, C = upcast(x), upcast(a), upcast(B), upcast(C)
    b, l, h, p = x.shape
    S = x.new_zeros(b, h, B.size(-1), p)
    ys = []
    for t in range(l):
        S = torch.exp(a[:, t])[..., None, None] * S + B[:, t, :, :, None] * x[:, t, :, None, :]
        ys.append(torch.einsum("bhn,bhnp->bhp", C[:, t], S))
    return torch.stack(ys, dim=1).to(dtype)
