"""Model configuration: a dataclass schema, loaded and validated through OmegaConf."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf


@dataclass
class MambaConfig:
    d_state: int = 64
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 64  # SSD chunk length of the PyTorch path (the CUDA kernel uses >= 128)


@dataclass
class DNAChunkerConfig:
    vocab_size: int = 8
    # widths: [stage-0 (base pairs), stage-1 (stage-0 chunks), main network (stage-1 chunks)]
    d_model: list[int] = field(default_factory=lambda: [256, 512, 672])
    # BiMamba layers before routing and after dechunking, per stage
    encoder_layers: list[int] = field(default_factory=lambda: [2, 2])
    decoder_layers: list[int] = field(default_factory=lambda: [2, 2])
    main_layers: int = 30
    n_heads: int = 12
    mlp_ratio: float = 4.0
    rope_base: float = 10000.0
    mamba: MambaConfig = field(default_factory=MambaConfig)
    max_len: int = 8192
    activation_checkpointing: bool = False  # recompute every block in backward: less memory, ~30% more time
    # dynamic chunking
    target_ratio: list[float] = field(default_factory=lambda: [0.5, 0.5])  # alpha per stage
    ratio_loss_weight: float = 0.03  # lambda
    # ablation switches
    tokenization: str = "learned"    # learned | single | kmer | given (baselines: fixed stage-0 cuts)
    kmer_size: int = 6
    mask_protection: bool = True
    residual_gating: bool = True
    ratio_loss: bool = True

    @property
    def n_stages(self) -> int:
        return len(self.target_ratio)

    def validate(self) -> "DNAChunkerConfig":
        s = self.n_stages
        problems = []
        if len(self.d_model) != s + 1:
            problems.append(f"d_model needs {s + 1} widths (one per stage + main), got {self.d_model}")
        for name in ("encoder_layers", "decoder_layers"):
            if len(getattr(self, name)) != s:
                problems.append(f"{name} needs {s} entries (one per stage), got {getattr(self, name)}")
        if any(not 0.0 < a < 1.0 for a in self.target_ratio):
            problems.append(f"target_ratio values must lie in (0, 1), got {self.target_ratio}")
        if self.d_model[-1] % self.n_heads or (self.d_model[-1] // self.n_heads) % 2:
            problems.append(f"main width {self.d_model[-1]} must split into {self.n_heads} heads of even size")
        for w in self.d_model[:-1]:
            if (self.mamba.expand * w) % self.mamba.headdim:
                problems.append(f"expand*width {self.mamba.expand * w} not divisible by headdim {self.mamba.headdim}")
        if self.tokenization not in ("learned", "single", "kmer", "given"):
            problems.append(f"tokenization must be learned, single, kmer or given, got {self.tokenization!r}")
        if problems:
            raise ValueError("invalid DNAChunker config: " + "; ".join(problems))
        return self

    @classmethod
    def load(cls, path: str | Path, *overrides: str) -> "DNAChunkerConfig":
        """Load a YAML file (keys checked against this schema) plus `key=value` overrides."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.load(path),
                                     OmegaConf.from_dotlist(list(overrides)))
        except Exception as e:  # OmegaConf's errors name the key but not the file
            raise ValueError(f"{path}: {e}") from None
        return OmegaConf.to_object(merged).validate()

    @classmethod
    def from_dict(cls, d) -> "DNAChunkerConfig":
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), d)).validate()

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.structured(self))
