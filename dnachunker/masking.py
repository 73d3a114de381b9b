"""BERT masking for MLM: select 15% of real bases; of those 80% -> [MASK], 10% -> a random
base (A/C/G/T only), 10% unchanged. Labels are -100 where nothing is predicted."""
from __future__ import annotations

import torch

from .tokenizer import BASES, MASK

IGNORE = -100


def bert_mask(input_ids: torch.Tensor, valid: torch.Tensor, generator: torch.Generator | None = None,
              prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids, valid: (B, L) -> (masked input_ids, labels). Deterministic given `generator`."""
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    action = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    replacement = torch.tensor(BASES, device=input_ids.device)[
        torch.randint(len(BASES), input_ids.shape, generator=generator, device=input_ids.device)]
    selected = (u < prob) & valid
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    out = torch.where(selected & (action < 0.8), torch.full_like(input_ids, MASK), input_ids)
    out = torch.where(selected & (action >= 0.8) & (action < 0.9), replacement, out)
    return out, labels
