"""One chunking stage (the paper's dynamic chunking, H-Net's `dc.py`): its BiMamba encoder,
the cosine router, mask protection, chunking to the next resolution (`down`), and on the way
back the p-gated dechunking, the gated encoder->decoder residual and its decoder (`up`); the
named records they hand on, and the ratio loss on the router's decisions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DNAChunkerConfig
from .modules.bimamba import BiMambaStack
from .modules.chunking import Chunks, dechunk
from .modules.routing import Router
from .ops.ragged import reverse_index


@dataclass
class StageOutput:
    """What one chunking stage decided, at that stage's input resolution (b, l_s)."""
    p: torch.Tensor              # router probabilities (before mask protection)
    router_boundary: torch.Tensor  # 1[p >= 0.5] (before mask protection)
    p_used: torch.Tensor         # probabilities used by dechunking (1 at protected boundaries)
    boundary: torch.Tensor       # boundaries used (after mask protection)
    valid: torch.Tensor          # real positions of this stage's input
    residual_gate: torch.Tensor  # 0 where the position's chunk contains a [MASK], else 1
    residual: torch.Tensor       # (b, l_s, d_s) gated encoder->decoder residual, fp32
    chunk_start: torch.Tensor    # (b, m) first base pair of each chunk
    chunk_valid: torch.Tensor    # (b, m)

    @property
    def compression(self) -> torch.Tensor:
        """Achieved ratio (chunks / positions) over the batch's real positions, what the next
        stage and the main network process (with the boundaries forced around [MASK])."""
        return self.boundary.sum() / self.valid.sum().clamp(min=1)

    @property
    def router_compression(self) -> torch.Tensor:
        """The router's own ratio: what inference, which has no [MASK], produces."""
        return self.router_boundary.sum() / self.valid.sum().clamp(min=1)


@dataclass
class Level:
    """The sequence at one resolution: base pairs (stage 0's input), then each stage's chunks."""
    x: torch.Tensor          # (b, l, d_s) states
    valid: torch.Tensor      # (b, l) real positions
    padded: bool | None      # whether any sequence is padded (None: read it from valid)
    has_mask: torch.Tensor   # (b, l) the position contains a [MASK]
    start: torch.Tensor      # (b, l) float first base pair
    end: torch.Tensor        # (b, l) float last base pair

    @property
    def centre(self) -> torch.Tensor:
        """(b, l) the centre base-pair index: the main network's RoPE position."""
        return (self.start + self.end) / 2


@dataclass
class Dechunk:
    """What a stage's `up` needs from its `down`."""
    chunks: Chunks
    p: torch.Tensor          # (b, l) fp32 probabilities the p-gated scans use
    order: torch.Tensor | None  # reverse index shared by the encoder, decoder and scans
    stage: StageOutput


def ratio_loss(p: torch.Tensor, boundary: torch.Tensor, valid: torch.Tensor, alpha: float) -> torch.Tensor:
    """L = F G / alpha + (1 - F)(1 - G) / (1 - alpha), F = mean b, G = mean p over real positions.

    Equals 1 when F = G = alpha; F is not differentiable, so gradients reach the router via G.
    """
    n = valid.sum().clamp(min=1)
    F_ = (boundary & valid).sum() / n
    G = (p * valid).sum() / n
    return F_ * G / alpha + (1 - F_) * (1 - G) / (1 - alpha)


class FP32Linear(nn.Linear):
    """A linear layer computed in fp32 whatever the dtype of its weights (bf16 under DeepSpeed) and
    input: H-Net's residual projection. A module call, so ZeRO-3 gathers its partitioned weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())


class ChunkingStage(nn.Module):
    """Encoder, router and the down/up projections of one stage, plus its decoder."""

    def __init__(self, cfg: DNAChunkerConfig, s: int):
        super().__init__()
        d, d_next = cfg.d_model[s], cfg.d_model[s + 1]
        self.cfg, self.s = cfg, s
        self.encoder = BiMambaStack(d, cfg.encoder_layers[s], cfg.mamba, cfg.activation_checkpointing == "all")
        self.router = Router(d)
        self.down_proj = nn.Linear(d, d_next)
        self.up_proj = nn.Linear(d_next, d)
        self.residual_proj = FP32Linear(d, d)
        self.decoder = BiMambaStack(d, cfg.decoder_layers[s], cfg.mamba, cfg.activation_checkpointing == "all")

    def down(self, level: Level, fixed: torch.Tensor | None = None) -> tuple[Level, Dechunk]:
        """level: the sequence at this stage's resolution (b, l, ...); fixed: (b, l) bool cuts of a
        fixed tokenization (None: the router decides). Returns the next stage's level (b, m, ...)
        and what `up` needs."""
        valid, has_mask = level.valid, level.has_mask
        order = reverse_index(valid, level.padded)  # once for the encoder, the decoder and the dechunk scans
        h = self.encoder(level.x, order)
        if fixed is None:
            p_router, b_router = self.router(h, valid)
        else:
            first = torch.zeros_like(valid)
            first[:, 0] = True  # every sequence starts a chunk, whatever the cuts say
            b_router = (fixed | first) & valid
            p_router = b_router.float()
        p, boundary = p_router, b_router
        if self.cfg.mask_protection:  # boundary at every masked position and right after it
            after = torch.cat([has_mask.new_zeros(has_mask.size(0), 1), has_mask[:, :-1]], dim=1)
            forced = (has_mask | after) & valid
            boundary = boundary | forced
            p = p.masked_fill(forced, 1.0)
        chunks = Chunks.from_boundaries(boundary)
        chunk_has_mask = chunks.max(has_mask.float(), valid) > 0
        gate = (~chunks.up(chunk_has_mask)).float() if self.cfg.residual_gating else torch.ones_like(p)
        # fp32 even when the model runs in bf16 (as H-Net): the residual carries base-level detail
        residual = self.residual_proj(h) * gate.unsqueeze(-1)
        stage = StageOutput(p_router, b_router, p, boundary, valid, gate, residual, chunks.down(level.start),
                            chunks.valid)
        chunked = Level(self.down_proj(chunks.down(h)), chunks.valid, chunks.padded, chunk_has_mask,
                        stage.chunk_start, chunks.max(level.end, valid))
        return chunked, Dechunk(chunks, p, order, stage)

    def up(self, z: torch.Tensor, ctx: Dechunk) -> torch.Tensor:
        """z: (b, m, d_next) chunk outputs -> (b, l, d) decoder output at this stage."""
        stage = ctx.stage
        y = dechunk(self.up_proj(z), ctx.p, ctx.chunks, stage.valid, ctx.order)  # p fp32: bf16 rounds 0.999 to 1
        if self.cfg.upsample_confidence:  # straight-through: x1 forward, d/dp of the chosen decision
            confidence = torch.where(stage.boundary, ctx.p, 1 - ctx.p)
            y = y * (confidence + (1 - confidence).detach()).unsqueeze(-1).to(y.dtype)
        return self.decoder((y.float() + stage.residual).to(y.dtype), ctx.order)
