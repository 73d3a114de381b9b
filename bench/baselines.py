"""Single-nucleotide baselines for the step-cost table, built from the model's own modules:
a Transformer (Pre-LN, RoPE at base positions) and a BiMamba stack (Caduceus-like), each with the
depth and width of DNAChunker's main network, an embedding and an MLM head."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnachunker.config import DNAChunkerConfig
from dnachunker.masking import IGNORE
from dnachunker.modules.bimamba import BiMambaStack
from dnachunker.ops.ragged import reverse_index
from dnachunker.modules.transformer import MainNetwork


class SingleNucleotideMLM(nn.Module):
    def __init__(self, cfg: DNAChunkerConfig, kind: str):
        super().__init__()
        d = cfg.d_model[-1]
        self.kind = kind
        self.embed = nn.Embedding(cfg.vocab_size, d)
        if kind == "transformer":
            self.body = MainNetwork(d, cfg.main_layers, cfg.n_heads, cfg.mlp_ratio, cfg.rope_base,
                                    cfg.activation_checkpointing != "none", cfg.main_norm, cfg.main_mlp)
        else:  # its body is its main network: "main" and "all" checkpoint it alike
            self.body = BiMambaStack(d, cfg.main_layers, cfg.mamba, cfg.activation_checkpointing != "none")
        self.head = nn.Linear(d, cfg.vocab_size)
        if cfg.compile:
            for block in (self.body.blocks if kind == "transformer" else self.body.mixers):
                block.compile(dynamic=True)

    def forward(self, input_ids, valid, labels, weight=None):
        x = self.embed(input_ids)
        if self.kind == "transformer":
            pos = torch.arange(input_ids.size(1), device=x.device, dtype=torch.float32).expand(input_ids.shape)
            x = self.body(x, pos, valid)
        else:
            x = self.body(x, reverse_index(valid))
        t = labels != IGNORE
        return F.cross_entropy(self.head(x)[t], labels[t])
