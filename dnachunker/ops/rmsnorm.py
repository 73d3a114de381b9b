"""RMSNorm, optionally gated (Mamba-2's norm of y * silu(z)), computed in float32 and returned in
the input's dtype: `rms_norm` keeps only its inputs and the (..., 1) reciprocal RMS for backward
and recomputes the rest there; `rms_norm_ref` is the same formula in autograd ops, which keep a
float32 copy of the normalised input (and of the gate's products) per call. At the base-pair
level of an 8 kbp sample that copy is 8-16 MB per norm (bench.paper_cost --parts memory).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor | None = None,
                 eps: float = 1e-5) -> torch.Tensor:
    """x: (..., d), weight: (d,), gate: like x or None -> like x, in x's dtype."""
    xf = x.float()
    if gate is not None:
        xf = xf * F.silu(gate.float())
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, gate, eps):
        xf = x.float()
        if gate is not None:
            xf = xf * F.silu(gate.float())
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, gate, rstd)
        return (xf * rstd * weight.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        """With xs = x * silu(gate) (or x), t = grad * xs and r = rstd, per row of d:
        d weight = sum_rows r t;  d xs = r grad weight - xs r^3 (t . weight) / d,
        the two row sums as matrix-vector products and the rest in place (a third fewer passes
        over the states than the formula written out)."""
        x, weight, gate, rstd = ctx.saved_tensors
        d = x.size(-1)
        xf, g, r, w = x.float().reshape(-1, d), grad.float().reshape(-1, d), rstd.reshape(-1, 1), weight.float()
        xs = xf
        if gate is not None:
            gf = gate.float().reshape(-1, d)
            sig = torch.sigmoid(gf)
            silu = gf * sig
            xs = xf * silu
        t = g * xs
        grad_weight = (r.T @ t).view(d).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_xs = (g * w).mul_(r).addcmul_(xs, (t @ w).unsqueeze(-1) * r.pow(3), value=-1 / d)
        grad_gate = None
        if gate is None:
            grad_x = grad_xs
        else:
            grad_x = grad_xs * silu
            if ctx.needs_input_grad[2]:  # d silu(z) / dz = sig (1 + z - silu(z))
                grad_gate = grad_xs.mul_(xf).mul_(torch.sub(gf, silu).add_(1).mul_(sig)).view_as(gate).to(gate.dtype)
        return (grad_x.view_as(x).to(x.dtype) if ctx.needs_input_grad[0] else None, grad_weight, grad_gate, None)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, gate: torch.Tensor | None = None,
             eps: float = 1e-5) -> torch.Tensor:
    """As rms_norm_ref, keeping x, gate and the reciprocal RMS for backward (not float32 copies).
    Under autocast it runs in the inputs' own dtypes, as the reference does."""
    with torch.autocast(x.device.type, enabled=False):
        return _RMSNorm.apply(x, weight, gate, eps)
