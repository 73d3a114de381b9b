"""DNAChunker: BiMamba encoders + learned two-stage chunking + Transformer main network + MLM head.

    bases (T) --embed--> enc0 --route/chunk--> (T') enc1 --route/chunk--> (T'') main
    main --dechunk--> (T') + gated residual --> dec1 --dechunk--> (T) + gated residual --> dec0 --> head

Each stage keeps, for its chunks, the base-pair span they cover; the main network's RoPE positions
are the span centres. Masked bases ([MASK] inputs) are protected: boundaries are forced before
and after them at every stage, so each stays a single-base chunk, and the encoder->decoder
residual is zeroed on every chunk that contains one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import export, tokenization
from .config import DNAChunkerConfig
from .masking import IGNORE
from .modules.transformer import MainNetwork
from .stage import ChunkingStage, Level, StageOutput, ratio_loss
from .tokenizer import MASK

INIT_STD = 0.02
# the projections that write into a residual stream (BiMamba, attention, FFN outputs)
RESIDUAL_OUTPUTS = ("out_proj", "attn.out", "mlp.down")


@dataclass
class DNAChunkerOutput:
    logits: torch.Tensor                   # (b, L, vocab)
    hidden: torch.Tensor                   # (b, L, d_0) last decoder states (for probing)
    stages: list[StageOutput]
    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    ratio_losses: list[torch.Tensor] = field(default_factory=list)
    mlm_accuracy: torch.Tensor | None = None


class DNAChunker(nn.Module):
    def __init__(self, cfg: DNAChunkerConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model[0])
        self.species_embed = nn.Embedding(len(cfg.species), cfg.d_model[0]) if cfg.species else None
        self.species: int | None = None  # the species inference adds when a batch names none (set_species)
        self.stages = nn.ModuleList(ChunkingStage(cfg, s) for s in range(cfg.n_stages))
        self.main = MainNetwork(cfg.d_model[-1], cfg.main_layers, cfg.n_heads, cfg.mlp_ratio, cfg.rope_base,
                                cfg.activation_checkpointing != "none", cfg.main_norm, cfg.main_mlp)
        # the stage-0 decoder ends in the model's one final norm (H-Net: the head reads it directly)
        self.head = nn.Linear(cfg.d_model[0], cfg.vocab_size)
        # stage-0 cuts: the router, or a fixed kind (fitted kinds: load or fit before use)
        self.tokenization = tokenization.build(cfg)
        self._init_weights()
        if cfg.compile:  # in place: parameter names (checkpoints) stay the same
            # Stage 0's mixers see the input length (fixed in training): one static graph. The main
            # blocks see a data-dependent number of chunks: dynamic shapes. Stage 1's mixers stay
            # eager: compiled (dynamic), they recompile for every new chunk count (the scan pads to
            # whole chunks; torch 2.13), 2-25 s per step.
            for mixer in [*self.stages[0].encoder.mixers, *self.stages[0].decoder.mixers]:
                mixer.compile(dynamic=False)
            for block in self.main.blocks:
                block.compile(dynamic=True)

    def residual_streams(self) -> list[tuple[nn.Module, int]]:
        """(module, n_residuals) for every residual stream: H-Net counts the layers of every stack
        from the embedding to the stream, the stream's own included."""
        streams, n = [], 0
        for stage, enc, dec in zip(self.stages, self.cfg.encoder_layers, self.cfg.decoder_layers):
            n += enc + dec
            streams += [(stage.encoder, n), (stage.decoder, n)]
        return streams + [(self.main, n + self.cfg.main_layers)]

    @torch.no_grad()
    def _init_weights(self):
        """As H-Net: normal(0, 0.02) for every linear weight, zero biases, normal(0, 1) for the
        embedding (its first norm sees unit-scale inputs); residual output projections scaled by
        `residual_init_scale` (default 1/sqrt(n_residuals)); the routers start at identity and the
        residual projections at zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=INIT_STD)
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1.0)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for stream, n in self.residual_streams():
            scale = self.cfg.residual_init_scale or 1 / math.sqrt(max(n, 1))
            for name, m in stream.named_modules():
                if name.endswith(RESIDUAL_OUTPUTS):
                    nn.init.normal_(m.weight, std=INIT_STD * scale)
        if self.species_embed is not None:  # starts as the species-blind model
            nn.init.zeros_(self.species_embed.weight)
        for stage in self.stages:
            stage.router.reset_parameters()
            nn.init.zeros_(stage.residual_proj.weight)  # the decoder starts from the main network's output

    def forward(self, input_ids: torch.Tensor, valid: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                boundaries: torch.Tensor | None = None, species: torch.Tensor | None = None) -> DNAChunkerOutput:
        """input_ids: (b, L) long; valid: (b, L) bool (default: all); labels: (b, L) long with -100
        where nothing is predicted (valid None: nothing is padded, and the model need not read it
        off the device); weight: (b, L) float per-base MLM weight (the data pipeline
        stores 0.1 on soft-masked repeats, 1 elsewhere; default: all 1); boundaries: (b, L) bool
        stage-0 cuts of a fixed tokenization, already computed from these input_ids by
        `self.tokenization.boundaries` (the training loader does it in its workers); default:
        computed here; species: (b,) long, the index in cfg.species of each sequence's species
        (models with cfg.species only; default: set_species's)."""
        padded = None if valid is not None else False
        if valid is None:
            valid = torch.ones_like(input_ids, dtype=torch.bool)
        if not self.tokenization.fixed and boundaries is not None:
            raise ValueError("`boundaries` are for fixed tokenizations; this model's are learned")
        if boundaries is None:
            boundaries = self.tokenization.boundaries(input_ids, valid)  # None: learned
        pos = torch.arange(input_ids.size(1), device=input_ids.device, dtype=torch.float32).expand(input_ids.shape)
        level = Level(self._embed(input_ids, species), valid, padded, (input_ids == MASK) & valid, pos, pos)
        ctxs = []
        for s, stage in enumerate(self.stages):  # a fixed tokenization cuts stage 0; later stages keep all
            fixed = None if boundaries is None else boundaries if s == 0 else level.valid
            level, ctx = stage.down(level, fixed)
            ctxs.append(ctx)
        x = self.main(level.x, level.centre, level.valid, ctxs[-1].chunks.total if ctxs else None)  # no sync
        for stage, ctx in zip(reversed(self.stages), reversed(ctxs)):
            x = stage.up(x, ctx)
        hidden = x  # normalised by the stage-0 decoder's final norm
        out = DNAChunkerOutput(logits=self.head(hidden), hidden=hidden, stages=[c.stage for c in ctxs])
        if labels is not None:
            self._loss(out, labels, weight)
        return out

    def _embed(self, input_ids: torch.Tensor, species: torch.Tensor | None) -> torch.Tensor:
        x = self.embed(input_ids)
        if self.species_embed is None:
            return x
        if species is None:
            if why := self.needs_species():
                raise ValueError(f"{why} (model.set_species(name); --species on the command line)")
            species = torch.full(input_ids.shape[:1], self.species, device=input_ids.device)
        return x + self.species_embed(species)[:, None, :]

    def needs_species(self) -> str | None:
        """Why this model cannot read a sequence as it stands: it embeds species and none is set
        (None: it can). Every command that loads a model asks this, with its own way to name one."""
        if self.species_embed is not None and self.species is None:
            return f"this model embeds the species {self.cfg.species}: name one"
        return None

    def set_species(self, name: str | None) -> "DNAChunker":
        """The species whose embedding inference adds (models pretrained with model.species)."""
        if name is not None and name not in self.cfg.species:
            raise ValueError(f"species {name!r}: this model knows {self.cfg.species or 'none (it embeds no species)'}")
        self.species = None if name is None else self.cfg.species.index(name)
        return self

    def _loss(self, out: DNAChunkerOutput, labels: torch.Tensor, weight: torch.Tensor | None):
        cfg = self.cfg
        # over every position, the ones without a label weighted 0: no boolean indexing, whose
        # output size the host would have to wait for
        target = labels != IGNORE
        w = target.float() if weight is None else weight.float() * target
        logits = out.logits.float()
        ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        out.mlm_loss = (ce * w).sum() / w.sum().clamp(min=1e-6)
        out.mlm_accuracy = ((logits.argmax(-1) == labels) & target).sum() / target.sum().clamp(min=1)
        own = cfg.ratio_loss_on == "router"
        out.ratio_losses = [ratio_loss(st.p if own else st.p_used, st.router_boundary if own else st.boundary,
                                       st.valid, a) for st, a in zip(out.stages, cfg.target_ratio)]
        out.loss = out.mlm_loss
        if cfg.ratio_loss:  # off for fixed tokenizations (they imply it)
            out.loss = out.loss + cfg.ratio_loss_weight * sum(out.ratio_losses)

    # ---- inference API -------------------------------------------------------------------
    def segment(self, seqs: list[str], batch_size: int = 8, window: int | None = None,
                overlap: int | None = None) -> list[list[np.ndarray]]:
        """Learned tokenization of each sequence: for every stage, the 0-based base-pair index at
        which each chunk starts (stage 0 chunks bases, stage 1 chunks stage-0 chunks). Sequences
        longer than `window` (default max_len) run in overlapping windows (dnachunker.inference)."""
        from .inference import run
        return [r.chunk_starts for r in run(self, seqs, window, overlap, batch_size, progress=False)]

    def save_pretrained(self, directory: str | Path, training: dict | None = None, name: str | None = None,
                        remote_code: bool = False) -> Path:
        """config.yaml + model.safetensors, the tokenization's file, the Transformers files and the
        model card (dnachunker.export.save)."""
        return export.save(self, directory, training, name, remote_code)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "DNAChunker":
        """An export, checked before anything is built (dnachunker.export.load)."""
        return export.load(cls, directory, map_location)

    def load_weights(self, directory: str | Path, map_location: str | torch.device = "cpu") -> None:
        """The weights of an export (model.safetensors: tensors only, no code), names checked."""
        export.load_weights(self, directory, map_location)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
