"""Per-base tracks of a forward pass without masks: what a genome browser shows beside annotations.

  p_0        stage 0's boundary probability at each base (the router's p; a chunk starts where >= 0.5)
  p_1        stage 1's boundary probability for the stage-0 chunk each base belongs to
  entropy    entropy (bits) of the model's prediction over A, C, G, T at the base, seen unmasked
  logp_ref   log2 P(reference base) there, over A, C, G, T (NaN at N)

All are read from one unmasked forward pass, the inference the model does for embeddings; the
MLM head was trained on masked positions, so the unmasked prediction is a "how expected is this
base in its context" reading, not a masked-LM likelihood.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .tokenizer import A, N

NAMES = ("p_0", "p_1", "entropy", "logp_ref")
_ACGT = slice(A, A + 4)  # token ids A, C, G, T are consecutive


def window_tracks(out, ids: torch.Tensor, j: int, length: int) -> dict[str, np.ndarray]:
    """Window j of a batch's output (DNAChunkerOutput) and its input ids (b, L) -> each track over
    its first `length` positions, float32."""
    stages = out.stages
    tracks = {"p_0": stages[0].p[j, :length]}
    if len(stages) > 1:  # stage 1 decides on stage-0 chunks: each base gets its chunk's p
        chunk = stages[0].boundary[j, :length].long().cumsum(0) - 1
        tracks["p_1"] = stages[1].p[j][chunk]
    logp = torch.log_softmax(out.logits[j, :length, _ACGT].float(), -1)
    tracks["entropy"] = -(logp.exp() * logp).sum(-1) / math.log(2)
    base = ids[j, :length]
    ref = logp.gather(-1, (base - A).clamp(0, 3)[:, None])[:, 0] / math.log(2)
    tracks["logp_ref"] = torch.where((base >= A) & (base < N), ref, torch.full_like(ref, float("nan")))
    return {k: v.float().cpu().numpy() for k, v in tracks.items()}
