"""BiMamba (Caduceus-style): a Mamba-2 mixer run forward and on the reversed sequence.

The input and output projections are shared by the two directions; each direction has its own
convolution, dt bias, A, D and gated norm. The reverse direction reverses each sequence *within
its own length*, so padding never leaks into real positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..config import MambaConfig
from ..ops import kernels
from ..ops.ragged import reverse_time
from ..ops.scan import selective_scan
from .norm import RMSNorm


def _conv_layout(xBC: torch.Tensor) -> torch.Tensor:
    """(b, l, c) -> a (b, c, l) view that causal-conv1d accepts (csrc/causal_conv1d.cpp).

    xBC is a slice of in_proj's output, so transposing it gives a channel-last view whose
    stride(2) is in_proj's width; the kernel needs channel-last strides to be multiples of 8 (and
    c % 8 == 0), else a channel-first (contiguous (b, c, l)) tensor. mamba-ssm's `ensure_stride`
    makes the same repair."""
    if xBC.size(-1) % 8:
        return xBC.transpose(1, 2).contiguous()
    return (xBC if xBC.stride(1) % 8 == 0 and xBC.stride(0) % 8 == 0 else xBC.contiguous()).transpose(1, 2)


class MambaDirection(nn.Module):
    """Everything of a Mamba-2 mixer after the input projection, for one direction."""

    def __init__(self, d_inner: int, cfg: MambaConfig, reverse: bool = False):
        super().__init__()
        self.cfg, self.reverse = cfg, reverse
        self.d_inner = d_inner
        self.nheads = d_inner // cfg.headdim
        conv_dim = d_inner + 2 * cfg.ngroups * cfg.d_state
        self.conv_weight = nn.Parameter(torch.empty(conv_dim, cfg.d_conv).uniform_(
            -1 / math.sqrt(cfg.d_conv), 1 / math.sqrt(cfg.d_conv)))
        self.conv_bias = nn.Parameter(torch.zeros(conv_dim))
        dt = torch.exp(torch.rand(self.nheads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = RMSNorm(d_inner)

    def conv(self, xBC: torch.Tensor) -> torch.Tensor:
        """Causal depthwise conv + SiLU. xBC: (b, l, c) -> (b, l, c)."""
        fn = kernels.get("conv1d", xBC)
        if fn is not None:
            return fn(_conv_layout(xBC), self.conv_weight, self.conv_bias, activation="silu").transpose(1, 2)
        # A (b, l + k - 1, c) tensor seen as (b, c, 1, l + k - 1) is channels-last: the depthwise
        # conv2d reads and writes time-major memory, with no transposing copies either way: on CPU
        # about 2x faster forward + backward than conv1d on a contiguous (b, c, l) copy. The bias is
        # added after it: oneDNN's bias gradient for this layout costs more than the whole sum.
        c, k = xBC.size(-1), self.cfg.d_conv
        x = F.pad(xBC, (0, 0, k - 1, 0)).transpose(1, 2).unsqueeze(2)
        y = F.conv2d(x, self.conv_weight.view(c, 1, 1, k), groups=c)
        return F.silu(y.squeeze(2).transpose(1, 2) + self.conv_bias)

    def forward(self, zxbcdt: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """zxbcdt: (b, l, 2*d_inner + 2*g*n + h) -> (b, l, d_inner). The reverse direction first
        reverses each sequence (`order` from `reverse_index`; None: nothing padded) and returns
        its output in that reversed order.

        With `cfg.recompute` (the default), training keeps only zxbcdt (and `order`) for
        backward and recomputes the conv, scan and gated norm there. mamba-ssm's fused Mamba-2
        kernel (`mamba_split_conv1d_scan_combined`) keeps zxbcdt and the scan output and recomputes
        its conv; the scan output is recomputed here too, since the PyTorch scan's backward rebuilds
        its intermediates anyway. At the base-pair level they would otherwise be hundreds of MB per
        mixer; without it they are kept and backward does not run the direction twice.
        `mix` is the same computation with autograd through every intermediate (the twin the
        tests compare gradients against)."""
        if self.cfg.recompute and torch.is_grad_enabled():
            return checkpoint(self._recomputable, kernels.current(), zxbcdt, order, use_reentrant=False)
        return self.mix(zxbcdt, order)

    def _recomputable(self, chosen: dict, zxbcdt: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        if not chosen:  # nothing installed (training): no context, which torch.compile cannot trace here
            return self.mix(zxbcdt, order)
        with kernels.installed(**chosen):  # the recomputation runs the kernels the forward ran
            return self.mix(zxbcdt, order)

    def mix(self, zxbcdt: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        if self.reverse:
            zxbcdt = reverse_time(zxbcdt, order)
        cfg, b, l = self.cfg, zxbcdt.size(0), zxbcdt.size(1)
        gn = cfg.ngroups * cfg.d_state
        z, xBC, dt = zxbcdt.split([self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        x, B, C = self.conv(xBC).split([self.d_inner, gn, gn], dim=-1)
        y = selective_scan(x.reshape(b, l, self.nheads, cfg.headdim), dt, -torch.exp(self.A_log.float()),
                           B.reshape(b, l, cfg.ngroups, -1), C.reshape(b, l, cfg.ngroups, -1),
                           self.D, self.dt_bias, cfg.chunk_size)
        return self.norm(y.reshape(b, l, self.d_inner), gate=z)


class BiMamba(nn.Module):
    def __init__(self, d_model: int, cfg: MambaConfig):
        super().__init__()
        d_inner = cfg.expand * d_model
        nheads = d_inner // cfg.headdim
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * cfg.ngroups * cfg.d_state + nheads, bias=False)
        self.fwd = MambaDirection(d_inner, cfg)
        self.rev = MambaDirection(d_inner, cfg, reverse=True)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """x: (b, l, d), order: `reverse_index(valid)` of its (b, l) real positions -> (b, l, d)."""
        zxbcdt = self.in_proj(x)
        y = self.fwd(zxbcdt) + reverse_time(self.rev(zxbcdt, order), order)
        return self.out_proj(y)


class BiMambaStack(nn.Module):
    """n pre-norm residual BiMamba blocks and a final norm (as H-Net's stacks: also when n == 0)."""

    def __init__(self, d_model: int, n_layers: int, cfg: MambaConfig, checkpointing: bool = False):
        super().__init__()
        self.checkpointing = checkpointing
        self.norms = nn.ModuleList(RMSNorm(d_model) for _ in range(n_layers))
        self.mixers = nn.ModuleList(BiMamba(d_model, cfg) for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)

    def forward(self, x: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """x: (b, l, d); order: `reverse_index` of its real positions (None: nothing padded)."""
        for norm, mixer in zip(self.norms, self.mixers):
            if self.checkpointing and torch.is_grad_enabled():  # keep only the block input; recompute
                x = x + checkpoint(lambda y, n=norm, m=mixer: m(n(y), order), x, use_reentrant=False)
            else:
                x = x + mixer(norm(x), order)
        return self.final_norm(x)
