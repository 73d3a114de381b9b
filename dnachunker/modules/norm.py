from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.rmsnorm import rms_norm


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """x: (..., d). With `gate` (Mamba-2's gated norm): normalise x * silu(gate)."""
        return rms_norm(x, self.weight, gate, self.eps)
