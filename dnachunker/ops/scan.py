"""The two scans of the model, each with a fast path and a reference twin.

* `selective_scan` — the Mamba-2 SSM inside every BiMamba direction.
  Fast: mamba-ssm's fused Triton kernel on CUDA, else the chunked SSD form (`ssd_chunked`).
  Reference: `selective_scan_ref` (sequential).
* `gated_scan` — the dechunk smoothing h_t = (1 - p_t) h_{t-1} + p_t u_t.
  Fast: the same SSD kernels with one state per channel. Reference: `gated_scan_ref`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels
from .ssd import ssd_chunked, ssd_sequential, upcast



def _log_keep(p: torch.Tensor) -> torch.Tensor:
    """log(1 - p), finite at p = 1: 1 - p is floored at 1e-6 (a 1e-6 leak) with a straight-through
    gradient, so d(1 - p)/dp stays exactly -1 there, as in the reference recurrence."""
    keep = 1 - upcast(p)
    return torch.log(keep + (keep.clamp(min=1e-6) - keep).detach())


def _ssm_inputs(x, dt, A, B, C, dt_bias):
    """Discretise: returns (x*dt, dt*A, B, C) with B/C groups expanded to heads."""
    dt = F.softplus(upcast(dt) + upcast(dt_bias))  # (b, l, h)
    h = x.size(2)
    B = B.repeat_interleave(h // B.size(2), dim=2)
    C = C.repeat_interleave(h // C.size(2), dim=2)
    return upcast(x) * dt[..., None], dt * upcast(A), B, C


def selective_scan(x, dt, A, B, C, D, dt_bias, chunk_size: int = 64):
    """Mamba-2 scan with softplus(dt + dt_bias) discretisation and D skip.

    x: (b, l, h, p); dt: (b, l, h); A, D, dt_bias: (h,); B, C: (b, l, g, n) -> y: (b, l, h, p)
    """
    kernel = kernels.get("ssd", x)
    if kernel is not None:
        return kernel(x, dt, A, B, C, chunk_size=max(chunk_size, 128), D=D, dt_bias=dt_bias,
                      dt_softplus=True)
    xd, a, Bh, Ch = _ssm_inputs(x, dt, A, B, C, dt_bias)
    y = ssd_chunked(xd, a, Bh, Ch, chunk_size) + upcast(x) * upcast(D)[:, None]
    return y.to(x.dtype)


def selective_scan_ref(x, dt, A, B, C, D, dt_bias):
    """Sequential twin of `selective_scan`."""
    xd, a, Bh, Ch = _ssm_inputs(x, dt, A, B, C, dt_bias)
    return (ssd_sequential(xd, a, Bh, Ch) + upcast(x) * upcast(D)[:, None]).to(x.dtype)


def gated_scan(u: torch.Tensor, p: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """h_t = (1 - p_t) h_{t-1} + p_t u_t with h_{-1} = 0.

    u: (b, l, d); p: (b, l) in [0, 1] -> (b, l, d). Computed in fp32.
    """
    b, l, d = u.shape
    log_decay = _log_keep(p)  # (b, l)
    kernel = kernels.get("ssd", u)
    if kernel is not None:  # h_t = exp(-dt) h + dt * x with dt = -log(1-p), x = p u / dt
        dt = (-log_decay).clamp(min=1e-6)
        x = (upcast(u) * (upcast(p) / dt)[..., None]).view(b, l, d, 1)
        ones = u.new_ones(b, l, 1, 1, dtype=torch.float32)
        y = kernel(x, dt[..., None].expand(b, l, d).contiguous(), -u.new_ones(d, dtype=torch.float32),
                   ones, ones, chunk_size=max(chunk_size, 128))
        return y.view(b, l, d).to(u.dtype)
    # the decay is shared by all channels: one head of dimension d with a scalar state
    x = (upcast(u) * upcast(p)[..., None]).unsqueeze(2)  # (b, l, 1, d)
    ones = x.new_ones(b, l, 1, 1)
    return ssd_chunked(x, log_decay.unsqueeze(-1), ones, ones, chunk_size).squeeze(2).to(u.dtype)


def gated_scan_ref(u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Sequential twin of `gated_scan`, written from the recurrence (not via SSD)."""
    uf, pf = upcast(u), upcast(p)
    h = torch.zeros_like(uf[:, 0])
    out = []
    for t in range(u.size(1)):
        h = (1 - pf[:, t, None]) * h + pf[:, t, None] * uf[:, t]
        out.append(h)
    return torch.stack(out, dim=1).to(u.dtype)
