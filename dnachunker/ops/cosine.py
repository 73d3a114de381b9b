"""Cosine similarity along the last dimension, computed in float32: `cosine` keeps its two inputs
(in their own dtype) and the float32 norms for backward; `cosine_ref` is F.cosine_similarity on
float32 copies, which autograd keeps, with the normalised products, at every position. The router
runs it at base-pair level, where those copies are tens of MB per 8 kbp sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8  # F.cosine_similarity's: each norm is taken as at least this


def cosine_ref(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q, k: (..., d) -> (...,) float32."""
    return F.cosine_similarity(q.float(), k.float(), dim=-1, eps=EPS)


class _Cosine(torch.autograd.Function):
    """cos = q.k / (N_q N_k), N = max(|.|, EPS); the gradient treats N as the norm, as
    F.cosine_similarity's autograd does (its clamp is not differentiated)."""

    @staticmethod
    def forward(ctx, q, k):
        qf, kf = q.float(), k.float()
        nq, nk = qf.norm(dim=-1), kf.norm(dim=-1)
        cos = (qf * kf).sum(-1) / (nq.clamp_min(EPS) * nk.clamp_min(EPS))
        ctx.save_for_backward(q, k, nq, nk, cos)
        return cos

    @staticmethod
    def backward(ctx, grad):
        q, k, nq, nk, cos = ctx.saved_tensors
        Nq, Nk = nq.clamp_min(EPS), nk.clamp_min(EPS)
        # d cos / d q = k / (N_q N_k) - cos q / (|q| N_q): the second term is 0 where q is
        scale_q = torch.where(nq > 0, grad * cos / (nq.clamp_min(EPS) * Nq), 0.0)[..., None]
        scale_k = torch.where(nk > 0, grad * cos / (nk.clamp_min(EPS) * Nk), 0.0)[..., None]
        g = (grad / (Nq * Nk))[..., None]
        qf, kf = q.float(), k.float()
        return (g * kf - scale_q * qf).to(q.dtype), (g * qf - scale_k * kf).to(k.dtype)


def cosine(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """As cosine_ref, keeping q and k as they are (not float32 copies) for backward."""
    with torch.autocast(q.device.type, enabled=False):
        return _Cosine.apply(q, k)
