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


# exp() of arguments below about -87 (results under fp32's smallest normal number, or -inf) takes a
# slow path on x86 CPUs, 25-100x slower than in range (measured on this project's 2-core CPU), and
# products of such results are denormals, ~15x slower again. Decays below e^-40 (4e-18) add nothing
# an fp32 sum can hold, so exponents are clamped to [-40, 40] and the causal mask's zeros are set
# after exp() instead of as exp(-inf).
_LOG_BOUND = 40.0


class _CausalExp(torch.autograd.Function):
    """x: (..., s, s) log-decays, valid on and below the diagonal -> exp(x) there, 0 above.

    The within-chunk decays are the largest tensors of the scan: exp and mask run in place on one
    buffer. Backward (used by the chunk-carry decays; `_WithinChunk` has its own) keeps only that
    buffer (d exp(x) = exp(x) dx; 0 above the diagonal)."""

    @staticmethod
    def forward(ctx, x):
        upper = torch.ones(x.shape[-2:], dtype=torch.bool, device=x.device).triu(1)
        out = x.clamp(-_LOG_BOUND, _LOG_BOUND).exp_().masked_fill_(upper, 0.0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out


def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp of log-decays (<= 0), floored at e^-40."""
    return x.clamp(min=-_LOG_BOUND).exp()


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """a: (..., T) -> (..., T, T) with out[i, j] = sum_{k=j+1..i} a_k for i >= j, 0 above."""
    T = a.size(-1)
    a = a.unsqueeze(-1).expand(*a.shape, T)  # [..., i, j] = a_i
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    return torch.cumsum(a.masked_fill(~strict, 0.0), dim=-2)


def _decay(a_cum: torch.Tensor) -> torch.Tensor:
    """a_cum: (..., s) cumulative log-decays within a chunk -> (..., s, s) with
    out[i, j] = exp(a_cum_i - a_cum_j) for i >= j, 0 above: one difference, as mamba-ssm's kernels
    form it (within a chunk the cumulative sums stay small enough for fp32 differences)."""
    return _CausalExp.apply(a_cum.unsqueeze(-1) - a_cum.unsqueeze(-2))


class _WithinChunk(torch.autograd.Function):
    """The quadratic, attention-like part of the scan: within each chunk of s steps,
    y_i = sum_{j <= i} (C_i . B_j) exp(a_cum_i - a_cum_j) x_j.

    a_cum: (b, c, g, k, s); CB: (b, c, g, 1, s, s) = C B^T of each group; x: (b, c, g, k, s, p)
    -> (b, c, g, k, s, p). Forward keeps the decays E and the scores S = E * CB, as autograd of
    these ops would; backward works on one (s, s) buffer per head in place, where autograd's
    formulas allocate four (on CPU a small.yaml training step is about 6 % faster for it)."""

    @staticmethod
    def forward(ctx, a_cum, CB, x):
        E = _decay(a_cum)
        S = E * CB
        ctx.save_for_backward(E, S, CB, x)
        return S @ x

    @staticmethod
    def backward(ctx, gy):
        E, S, CB, x = ctx.saved_tensors
        gy = gy.to(S.dtype).contiguous()  # bf16 if autocast made the forward product bf16
        dS = (gy @ x.transpose(-1, -2)).mul_(E)  # the gradient of the scores, times E: dCB's terms
        dCB = dS.sum(3, keepdim=True)
        dD = dS.mul_(CB)  # of the exponent a_cum_i - a_cum_j (d exp = exp): dS * S
        return dD.sum(-1) - dD.sum(-2), dCB, S.transpose(-1, -2) @ gy


def chunk_carry(a_chunk: torch.Tensor) -> torch.Tensor:
    """a_chunk: (..., c) each chunk's total log-decay -> (..., c, c) with out[z, w] the decay from
    the end of chunk w to the start of chunk z (exp(a_{w+1} + ... + a_{z-1}) for w < z, else 0):
    the state entering chunk z is sum_w out[z, w] * (chunk w's end state from its own inputs).
    Exact segment sums over chunks: a cumulative sum over the whole sequence would lose precision."""
    return _CausalExp.apply(_segsum(F.pad(a_chunk, (1, 0))))[..., :-1, 1:]


def ssd_chunked(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk_size: int = 64) -> torch.Tensor:
    """Chunked SSD scan.

    x: (b, l, h, p) inputs (already scaled by dt where applicable)
    a: (b, l, h)    log-decay, <= 0
    B: (b, l, g, n), C: (b, l, g, n): g groups, each shared by h / g consecutive heads
    returns y: (b, l, h, p), in the dtype of x. Computed in at least fp32.

    Layout: C B^T is formed once per group, not per head (as mamba-ssm's kernels do); the
    within-chunk product is a batched matmul per head; the chunk states and their read-out are one
    matmul per group over all its heads' channels (k * p wide), on the time-major input as it comes.
    """
    dtype = x.dtype
    b, l, h, p = x.shape
    g, n = B.shape[2:]
    k = h // g
    pad = (-l) % chunk_size
    if pad:  # right padding never changes earlier outputs of a causal scan
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        a = F.pad(a, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c, s = (l + pad) // chunk_size, chunk_size
    x = upcast(x).view(b, c, s, g, k, p)
    B = upcast(B).view(b, c, s, g, n).transpose(2, 3)  # (b, c, g, s, n)
    C = upcast(C).view(b, c, s, g, n).transpose(2, 3)
    a_cum = torch.cumsum(upcast(a).view(b, c, s, g, k), dim=2)  # (b, c, s, g, k)

    # 1. within-chunk outputs (the quadratic, attention-like part): (b, c, g, k, s, p)
    x_heads = x.permute(0, 1, 3, 4, 2, 5).contiguous()  # one copy, not one per product
    y = _WithinChunk.apply(a_cum.permute(0, 1, 3, 4, 2), (C @ B.transpose(-1, -2)).unsqueeze(3), x_heads)
    # 2. state at the end of each chunk, from that chunk's inputs alone: (b, c, g, n, k * p)
    xw = x * _exp(a_cum[:, :, -1:] - a_cum).unsqueeze(-1)
    states = B.transpose(-1, -2) @ xw.transpose(2, 3).reshape(b, c, g, s, k * p)
    # 3. the state entering each chunk (c = l / chunk_size chunks)
    states = torch.einsum("bgkzc,bcgnkp->bzgnkp", chunk_carry(a_cum[:, :, -1].permute(0, 2, 3, 1)),
                          states.view(b, c, g, n, k, p))
    # 4. contribution of the carried-in state to each position: (b, c, g, s, k, p)
    y_in = (C @ states.reshape(b, c, g, n, k * p)).view(b, c, g, s, k, p) * _exp(a_cum).transpose(2, 3).unsqueeze(-1)
    y = y_in + y.transpose(3, 4)
    return y.transpose(2, 3).reshape(b, c * s, h, p)[:, :l].to(dtype)


def ssd_sequential(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Reference twin of `ssd_chunked`: the recurrence, one step at a time. Same shapes."""
    dtype = x.dtype
    b, l, h, p = x.shape
    x, a = upcast(x), upcast(a)
    B, C = (upcast(t).repeat_interleave(h // t.size(2), dim=2) for t in (B, C))  # groups -> heads
    S = x.new_zeros(b, h, B.size(-1), p)
    ys = []
    for t in range(l):
        S = torch.exp(a[:, t])[..., None, None] * S + B[:, t, :, :, None] * x[:, t, :, None, :]
        ys.append(torch.einsum("bhn,bhnp->bhp", C[:, t], S))
    return torch.stack(ys, dim=1).to(dtype)
