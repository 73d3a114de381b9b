"""Cosine routing: p_t = 1/2 (1 - cos(W_q x_t, W_k x_{t-1})), b_t = 1[p_t >= 0.5], p_0 = 1."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.cosine import cosine


class Router(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Start as the plain cosine dissimilarity of neighbouring states (W_q = W_k = I)."""
        self.q.weight.copy_(torch.eye(self.q.weight.size(0)))
        self.k.weight.copy_(torch.eye(self.k.weight.size(0)))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (b, l, d), valid: (b, l) -> (p (b, l) float32, boundary (b, l) bool).

        The first position is always a boundary (p = 1); padding has p = 0 and no boundary.
        """
        cos = cosine(self.q(x[:, 1:]), self.k(x[:, :-1]))  # float32, keeping q and k as they are
        p = torch.cat([cos.new_ones(x.size(0), 1), ((1 - cos) / 2).clamp(0.0, 1.0)], dim=1)
        p = p * valid
        return p, (p >= 0.5) & valid
