"""The model's configuration schema (DNAChunkerConfig, MambaConfig), loaded through
dnachunker.configlib."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from .configlib import invalid, load_structured, out_of_range, to_yaml


MAX_MAIN_PARAMS = 20e9  # main network, 12 L d^2: the paper's model has 0.16 B there


@dataclass
class MambaConfig:
    d_state: int = 64
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 64  # SSD chunk length of the PyTorch path (bench.scans compares lengths; CUDA: >= 128)
    # each direction keeps only its input for backward and recomputes its conv, scan and gated norm
    # there: less memory at the base-pair level, more time (docs/benchmarks.md measures both)
    recompute: bool = True


@dataclass
class DNAChunkerConfig:
    vocab_size: int = 7              # the tokenizer's: [PAD] [MASK] A C G T N (dnachunker.tokenizer)
    # widths: [stage-0 (base pairs), stage-1 (stage-0 chunks), main network (stage-1 chunks)]
    d_model: list[int] = field(default_factory=lambda: [256, 512, 672])
    # BiMamba layers before routing and after dechunking, per stage
    encoder_layers: list[int] = field(default_factory=lambda: [2, 2])
    decoder_layers: list[int] = field(default_factory=lambda: [2, 2])
    main_layers: int = 30
    n_heads: int = 12
    mlp_ratio: float = 4.0
    main_norm: str = "layernorm"     # layernorm (the paper's Pre-LN block) | rmsnorm
    main_mlp: str = "gelu"           # gelu (the paper's FFN) | swiglu (hidden 2/3 as wide: same parameters)
    rope_base: float = 10000.0
    mamba: MambaConfig = field(default_factory=MambaConfig)
    max_len: int = 8192
    # blocks that keep only their input for backward and recompute the rest there: none | main
    # (the main network's Transformer blocks) | all (those and every BiMamba block)
    activation_checkpointing: str = "none"
    compile: bool = False            # torch.compile stage 0 mixers (static) and main blocks (dynamic)
    # dynamic chunking
    target_ratio: list[float] = field(default_factory=lambda: [0.5, 0.5])  # alpha per stage
    ratio_loss_weight: float = 0.03  # lambda
    # init: weights normal(0, 0.02); the projections that write into a residual stream (attention
    # and FFN outputs, BiMamba out_proj) times this factor. None: H-Net's 1/sqrt(n_residuals), n
    # counting the layers of every stack on the way from the embedding to that stream (nanoGPT:
    # 1/sqrt(2 n_layers)); 1.0: unscaled
    residual_init_scale: float | None = None
    # stage-0 tokenization (dnachunker.tokenization): learned | single | kmer | bpe; the fixed kinds
    # are the paper's baselines. Its arguments (kmer: k; bpe: vocab_size, fit_samples) default per kind
    tokenization: str = "learned"
    tokenization_args: dict = field(default_factory=dict)
    # ablation switches (a fixed tokenization sets those it implies: dnachunker.tokenization)
    mask_protection: bool = True
    residual_gating: bool = True
    ratio_loss: bool = True
    # which decisions the ratio loss averages: the router's own (what inference produces; the
    # boundaries forced around [MASK] come on top during training) or those used after protection
    ratio_loss_on: str = "router"    # router | protected
    # H-Net's confidence term: the upsampled output times the probability of each position's
    # decision, through a straight-through estimator (forward x1): a second gradient path to the router
    upsample_confidence: bool = False
    # a learned embedding per species added at the input (a multi-genome corpus's genome names, in
    # its corpus.json order; the trainer checks them). Empty: off. Inference names one (--species).
    species: list[str] = field(default_factory=list)

    def __post_init__(self):
        # configs recorded before `main` existed hold a boolean: true meant every block
        self.activation_checkpointing = {"True": "all", "False": "none"}.get(str(self.activation_checkpointing),
                                                                            self.activation_checkpointing)

    @property
    def n_stages(self) -> int:
        return len(self.target_ratio)

    def validate(self) -> "DNAChunkerConfig":
        """Check (problems), then fill in what the tokenization implies (resolve)."""
        problems = self.problems()
        if problems:
            raise invalid(problems, "DNAChunker config")
        return self.resolve()

    def problems(self, prefix: str = "") -> list[tuple[str, str]]:
        """[(key, what is wrong)]; changes nothing."""
        s = self.n_stages
        # every dimension bounded (a config from someone else builds nothing absurd): far above the
        # paper's model (width 672, 30 layers, 8192 bp)
        problems = out_of_range(self, {
            "vocab_size": "[7,7]", "d_model": "[1,16384]", "encoder_layers": "[0,64]", "decoder_layers": "[0,64]",
            "main_layers": "[1,512]", "n_heads": "[1,256]", "mlp_ratio": "(0,16]", "rope_base": ">0",
            "max_len": "[1,4194304]", "target_ratio": "(0,1)", "ratio_loss_weight": ">=0", "residual_init_scale": ">0",
            "mamba.d_state": "[1,1024]", "mamba.headdim": "[1,1024]", "mamba.expand": "[1,16]", "mamba.d_conv": "[2,4]",
            "mamba.ngroups": "[1,64]", "mamba.chunk_size": "[1,4096]"})
        if problems:  # the shape checks below divide by these
            return [(prefix + k, m) for k, m in problems]
        main = 12 * self.main_layers * self.d_model[-1] ** 2
        if main > MAX_MAIN_PARAMS:
            problems.append(("main_layers", f"{self.main_layers} layers of width {self.d_model[-1]} are about "
                                            f"{main / 1e9:.0f} B parameters, over the {MAX_MAIN_PARAMS / 1e9:.0f} B this "
                                            f"project builds"))
        if len(self.d_model) != s + 1:
            problems.append(("d_model", f"needs {s + 1} widths (one per stage + main), got {self.d_model}"))
        for name in ("encoder_layers", "decoder_layers"):
            if len(getattr(self, name)) != s:
                problems.append((name, f"needs {s} entries (one per stage), got {getattr(self, name)}"))
        if self.d_model[-1] % self.n_heads or (self.d_model[-1] // self.n_heads) % 2:
            problems.append(("n_heads", f"main width {self.d_model[-1]} must split into {self.n_heads} heads of even size"))
        for w in self.d_model[:-1]:
            if (self.mamba.expand * w) % self.mamba.headdim:
                problems.append(("mamba.headdim", f"expand*width {self.mamba.expand * w} not divisible by headdim "
                                                  f"{self.mamba.headdim}"))
        problems += [("tokenization", p) for p in self._tokenization_problems()]
        for key, allowed in (("main_norm", ("layernorm", "rmsnorm")), ("main_mlp", ("gelu", "swiglu")),
                             ("ratio_loss_on", ("router", "protected")),
                             ("activation_checkpointing", ("none", "main", "all"))):
            if getattr(self, key) not in allowed:
                problems.append((key, f"must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"))
        if len(set(self.species)) != len(self.species):
            problems.append(("species", f"names repeat: {self.species}"))
        return [(prefix + k, m) for k, m in problems]

    def _tokenization_problems(self) -> list[str]:
        from .tokenization import TOKENIZATIONS, resolved_args
        if self.tokenization == "given":
            return ["tokenization 'given' is now 'bpe': its cuts are computed from the masked input the "
                    "model sees, fitted at the start of pretraining (docs/architecture.md)"]
        if self.tokenization not in TOKENIZATIONS:
            return [f"tokenization must be one of {', '.join(TOKENIZATIONS)}, got {self.tokenization!r}"]
        try:
            resolved_args(self.tokenization, self.tokenization_args)
        except ValueError as e:
            return [str(e)]
        return []

    def resolve(self) -> "DNAChunkerConfig":
        """Fill in the tokenization's default arguments and the switches its kind implies (a fixed
        tokenization has no mask protection to do, say); for a config whose problems() are none."""
        from .tokenization import TOKENIZATIONS, resolved_args
        self.tokenization_args = resolved_args(self.tokenization, self.tokenization_args)
        for key, value in TOKENIZATIONS[self.tokenization].implies.items():
            setattr(self, key, value)
        return self

    @classmethod
    def load(cls, path: str | Path, *overrides: str) -> "DNAChunkerConfig":
        """A model YAML (keys checked against this schema) plus `key=value` overrides."""
        return load_structured(cls, path, overrides, what="model config")

    @classmethod
    def from_dict(cls, d: dict) -> "DNAChunkerConfig":
        """A model config recorded as a dict (an export's config.json)."""
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), d)).validate()

    def to_yaml(self) -> str:
        return to_yaml(self)
