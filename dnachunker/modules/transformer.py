"""Pre-LN Transformer main network (MHSA + GELU FFN, LayerNorm; RMSNorm and SwiGLU as options)
with rotary embeddings at *fractional base-pair positions*.

Each main-network token is a stage-1 chunk; its RoPE position is the centre base-pair index of
the span it covers ((first + last) / 2), so relative offsets between tokens stay in base pairs
whatever the chunk lengths are.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..ops import kernels
from .norm import RMSNorm


def rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate x: (b, h, l, hd) by positions pos: (b, l) float (rotate-half convention). The angles
    are computed in fp32 (positions reach 8192 bp and beyond), then cos and sin are cast to x's
    dtype and the rotation runs in it: under bf16, autograd keeps bf16 q and k for backward, not
    fp32 copies of them (2 x 4 bytes per element of q and k per layer, otherwise)."""
    hd = x.size(-1)
    inv_freq = base ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)
    ang = pos.float()[:, None, :, None] * inv_freq  # (b, 1, l, hd/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class KeyMask:
    """The real tokens of a left-aligned padded batch, (b, l) bool, with the varlen packing that
    flash-attn needs computed once for all layers. `total`, the number of real tokens, where the
    host knows it (the chunk counts): the positions are then found without a host sync."""

    def __init__(self, valid: torch.Tensor, total: int | None = None):
        self.valid, self.total, self._packing = valid, total, None

    def packing(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(flat indices of real tokens, cumulative lengths (b + 1,) int32, longest length)."""
        if self._packing is None:
            lengths = self.valid.sum(1, dtype=torch.int32)
            cu = F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
            # l bounds every length (the chunk tensors are sized by the longest); no need to read it
            flat = self.valid.flatten()
            idx = (flat.nonzero() if self.total is None else torch.nonzero_static(flat, size=self.total)).squeeze(1)
            self._packing = (idx, cu, self.valid.size(1))
        return self._packing


def attention(q, k, v, mask: KeyMask | torch.Tensor) -> torch.Tensor:
    """Bidirectional attention over real tokens. q, k, v: (b, h, l, hd); mask: the (b, l) bool real
    tokens, or their KeyMask (MainNetwork makes one for all its layers).

    flash-attn's varlen kernel on CUDA in half precision, otherwise SDPA with a *boolean* key
    mask (True = attend). Every row has at least one real key (the first chunk), so no NaNs.
    """
    mask = mask if isinstance(mask, KeyMask) else KeyMask(mask)
    flash = kernels.get("flash_varlen", q)
    if flash is not None and q.dtype in (torch.float16, torch.bfloat16):
        b, h, l, hd = q.shape
        idx, cu, longest = mask.packing()
        unpad = lambda t: t.transpose(1, 2).reshape(b * l, h, hd)[idx]  # noqa: E731
        out = flash(unpad(q), unpad(k), unpad(v), cu, cu, longest, longest)
        full = q.new_zeros(b * l, h, hd).index_copy(0, idx, out)
        return full.view(b, l, h, hd).transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.valid[:, None, None, :])


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, rope_base: float):
        super().__init__()
        self.n_heads, self.rope_base = n_heads, rope_base
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x, pos, valid):
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, pos, self.rope_base), rope(k, pos, self.rope_base)
        return self.out(attention(q, k, v, valid).transpose(1, 2).reshape(b, l, d))


class GELUMLP(nn.Module):
    """The paper's FFN: d -> mlp_ratio * d -> GELU -> d."""

    def __init__(self, d: int, mlp_ratio: float):
        super().__init__()
        self.up = nn.Linear(d, int(mlp_ratio * d), bias=False)
        self.down = nn.Linear(int(mlp_ratio * d), d, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class SwiGLU(nn.Module):
    def __init__(self, d: int, mlp_ratio: float):
        super().__init__()
        hidden = int(2 * mlp_ratio * d / 3 + 63) // 64 * 64  # ~ parameter count of a 4x GELU MLP
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        a, g = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * a)


NORMS = {"layernorm": nn.LayerNorm, "rmsnorm": RMSNorm}
MLPS = {"gelu": GELUMLP, "swiglu": SwiGLU}


class TransformerBlock(nn.Module):
    """Pre-LN: x + MHSA(norm(x)), then x + MLP(norm(x)). The paper's block is LayerNorm + GELU."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: float, rope_base: float, norm: str = "layernorm",
                 mlp: str = "gelu"):
        super().__init__()
        self.norm1, self.norm2 = NORMS[norm](d), NORMS[norm](d)
        self.attn = SelfAttention(d, n_heads, rope_base)
        self.mlp = MLPS[mlp](d, mlp_ratio)

    def forward(self, x, pos, valid):
        x = x + self.attn(self.norm1(x), pos, valid)
        return x + self.mlp(self.norm2(x))


class MainNetwork(nn.Module):
    def __init__(self, d: int, n_layers: int, n_heads: int, mlp_ratio: float, rope_base: float,
                 checkpointing: bool = False, norm: str = "layernorm", mlp: str = "gelu"):
        super().__init__()
        self.checkpointing = checkpointing
        self.blocks = nn.ModuleList(TransformerBlock(d, n_heads, mlp_ratio, rope_base, norm, mlp)
                                    for _ in range(n_layers))
        self.final_norm = NORMS[norm](d)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor,
                total: int | None = None) -> torch.Tensor:
        """x: (b, l, d); pos: (b, l) float base-pair centres; valid: (b, l) bool; total: real
        positions in the batch where the host knows it -> (b, l, d)."""
        valid = KeyMask(valid, total)
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, pos, valid, use_reentrant=False)
            else:
                x = block(x, pos, valid)
        return self.final_norm(x)
