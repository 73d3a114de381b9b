"""The two scans of the model, each with a fast path and a reference twin.

* `selective_scan` — the Mamba-2 SSM inside every BiMamba direction.
  Fast: mamba-ssm's fused Triton kernel on CUDA, else the chunked SSD form (`ssd_chunked`).
  Reference: `selective_scan_ref` (sequential).
* `gated_scan` — the dechunk smoothing h_t = (1 - p_t) h_{t-1} + p_t u_t.
  Fast: the same SSD kernel, the channels grouped into heads of `dechunk_headdim` that share one
  decay (dstate 1). Reference: `gated_scan_ref`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels
from .ssd import _decay, _exp, chunk_carry, ssd_chunked, ssd_sequential, upcast


def _ssm_inputs(x, dt, A, B, C, dt_bias):
    """Discretise: returns (x*dt, dt*A, B, C); B and C keep their groups."""
    dt = F.softplus(upcast(dt) + upcast(dt_bias))  # (b, l, h)
    return upcast(x) * dt[..., None], dt * upcast(A), B, C


def selective_scan(x, dt, A, B, C, D, dt_bias, chunk_size: int = 64):
    """Mamba-2 scan with softplus(dt + dt_bias) discretisation and D skip.

    x: (b, l, h, p); dt: (b, l, h); A, D, dt_bias: (h,); B, C: (b, l, g, n) -> y: (b, l, h, p)
    """
    kernel = kernels.get("ssd", x)
    if kernel is not None:
        return kernel(x, dt, A, B, C, chunk_size=max(chunk_size, 128), D=D, dt_bias=dt_bias,
                      dt_softplus=True)
    xd, a, B, C = _ssm_inputs(x, dt, A, B, C, dt_bias)
    y = ssd_chunked(xd, a, B, C, chunk_size) + upcast(x) * upcast(D)[:, None]
    return y.to(x.dtype)


def selective_scan_ref(x, dt, A, B, C, D, dt_bias):
    """Sequential twin of `selective_scan`."""
    xd, a, B, C = _ssm_inputs(x, dt, A, B, C, dt_bias)
    return (ssd_sequential(xd, a, B, C) + upcast(x) * upcast(D)[:, None]).to(x.dtype)


def dechunk_headdim(d: int) -> int:
    """Head size of the gated scan on the SSD kernel. Every channel has the same decay, so a few
    wide heads (64 or 32 channels, as in H-Net's dechunk) do the work of d heads of size 1 with a
    fraction of the kernel's tiles; a width divisible by neither is one head."""
    return next((h for h in (64, 32) if d % h == 0), d)


def _linear_scan(x: torch.Tensor, log_a: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """h_t = exp(log_a_t) h_{t-1} + x_t, h_{-1} = 0, without autograd.

    x: (b, l, d) fp32/fp64; log_a: (b, l) <= 0, one decay shared by all channels -> (b, l, d).
    On the SSD kernel, which computes h_t = exp(-dt_t) h_{t-1} + dt_t x'_t: dt = -log_a (floored
    at 1e-6, a decay of 1 - 1e-6 where log_a = 0) and x' = x / dt. Otherwise the SSD form with
    state size 1 and one decay for every channel: within each chunk one (s, s) decay matrix times
    the chunk's inputs, then the state carried in from earlier chunks (no B, C products, no heads).
    """
    b, l, d = x.shape
    kernel = kernels.get("ssd", x)
    if kernel is not None:
        ones = x.new_ones(b, l, 1, 1).float()
        hd = dechunk_headdim(d)
        dt = (-log_a).clamp(min=1e-6).float()
        xk = (x / dt[..., None]).float().view(b, l, d // hd, hd)
        y = kernel(xk, dt[..., None].expand(b, l, d // hd).contiguous(), -dt.new_ones(d // hd),
                   ones, ones, chunk_size=max(chunk_size, 128))
        return y.view(b, l, d).to(x.dtype)
    pad = (-l) % chunk_size
    if pad:  # right padding never changes earlier outputs
        x, log_a = F.pad(x, (0, 0, 0, pad)), F.pad(log_a, (0, pad))
    c, s = (l + pad) // chunk_size, chunk_size
    a_cum = torch.cumsum(log_a.view(b, c, s), dim=-1)  # (b, c, s)
    h = _decay(a_cum) @ x.view(b, c, s, d)  # (b, c, s, d): each chunk's own inputs
    carried = chunk_carry(a_cum[..., -1]) @ h[:, :, -1]  # (b, c, d): the state entering each chunk
    return h.addcmul_(_exp(a_cum).unsqueeze(-1), carried.unsqueeze(2)).view(b, c * s, d)[:, :l]


class _GatedScan(torch.autograd.Function):
    """Forward: one scan. Backward: one reverse scan for the adjoint, then closed forms; only u, p
    and the output are saved (no per-chunk intermediates), and no gradient flows through the
    kernel's dt, whose x / dt parametrisation would cancel terms of size 1 / (1 - p). The reverse
    scan runs on the implementation the forward ran (`kernels.current()`, as the BiMamba
    recomputation does)."""

    @staticmethod
    def forward(ctx, u, p, chunk_size):
        uf, pf = upcast(u), upcast(p)
        keep = (1 - pf).clamp(min=1e-6)  # a 1e-6 leak at p = 1 keeps log finite
        h = _linear_scan(uf * pf[..., None], keep.log(), chunk_size)
        ctx.save_for_backward(u, p, h)
        ctx.chunk_size, ctx.kernels = chunk_size, kernels.current()
        return h.to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        u, p, h = ctx.saved_tensors
        uf, pf, g = upcast(u), upcast(p), upcast(grad)
        keep = (1 - pf).clamp(min=1e-6)
        # adjoint: lam_t = g_t + keep_{t+1} lam_{t+1}, a forward scan over reversed time
        log_next = torch.cat([keep[:, 1:].log(), keep.new_zeros(keep.size(0), 1)], dim=1)
        with kernels.installed(**ctx.kernels):
            lam = _linear_scan(g.flip(1), log_next.flip(1), ctx.chunk_size).flip(1)
        h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        du = pf[..., None] * lam                        # dh_t / du_t = p_t
        dp = (lam * (uf - h_prev)).sum(-1)               # dh_t / dp_t = u_t - h_{t-1}
        return du.to(u.dtype), dp.to(p.dtype), None


def gated_scan(u: torch.Tensor, p: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """h_t = (1 - p_t) h_{t-1} + p_t u_t with h_{-1} = 0.

    u: (b, l, d); p: (b, l) in [0, 1] -> (b, l, d). Computed in fp32 (fp64 stays fp64).
    chunk_size: the PyTorch path's chunk length (32: on CPU about 1.3x faster than 64 at 16 x 1 kbp
    x 64 channels, `python -m bench.scans`); the CUDA kernel takes at least 128.
    """
    return _GatedScan.apply(u, p, chunk_size)


def gated_scan_ref(u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Sequential twin of `gated_scan`, written from the recurrence (not via SSD)."""
    uf, pf = upcast(u), upcast(p)
    h = torch.zeros_like(uf[:, 0])
    out = []
    for t in range(u.size(1)):
        h = (1 - pf[:, t, None]) * h + pf[:, t, None] * uf[:, t]
        out.append(h)
    return torch.stack(out, dim=1).to(u.dtype)
