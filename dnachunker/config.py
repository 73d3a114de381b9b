"""Configuration: the model's dataclass schema, and the one loader every config of the project
goes through (model, data pipeline, pretraining, sweeps): a dataclass schema, then a YAML file,
then `key=value` overrides in OmegaConf dot-list form, checked against the schema and validated."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config: the message names the file (or override) and the key. `keys`: the dotted
    keys at fault, when known (load_structured names the layer that set each)."""

    def __init__(self, message: str, keys: Sequence[str] = ()):
        super().__init__(message)
        self.keys = list(keys)


def invalid(problems: list[tuple[str, str]], what: str = "config") -> ConfigError:
    """[(dotted key, what is wrong)] -> one ConfigError naming them all."""
    return ConfigError(f"invalid {what}: " + "; ".join(f"{k}: {m}" for k, m in problems), [k for k, _ in problems])


def out_of_range(obj, rules: dict[str, str], prefix: str = "") -> list[tuple[str, str]]:
    """Range checks: {dotted attribute: bound} with bounds '>0', '>=0', '[0,1]', '(0,1]', ...;
    None values pass (optional keys), list values are checked element by element."""
    problems = []
    for key, bound in rules.items():
        value = obj
        for part in key.split("."):
            value = getattr(value, part)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not _within(v, bound):
                need = f"in {bound}" if bound[0] in "[(" else f"{bound.rstrip('0123456789.-')} {bound.lstrip('<>=')}"
                problems.append((prefix + key, f"must be {need}, got {value}"))
                break
    return problems


def _within(v: float, bound: str) -> bool:
    b = bound.replace(" ", "")
    if b[0] in "<>":
        op, x = (b[:2], b[2:]) if b[1] == "=" else (b[:1], b[1:])
        x = float(x)
        return {">": v > x, ">=": v >= x, "<": v < x, "<=": v <= x}[op]
    lo, hi = (float(t) for t in b[1:-1].split(","))
    return (v >= lo if b[0] == "[" else v > lo) and (v <= hi if b[-1] == "]" else v < hi)


def load_structured(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                    what: str = "config", sections: dict[str, type] | None = None,
                    whole: Sequence[str] = ()) -> T:
    """schema defaults <- YAML file at `path` <- each override in order -> a validated `schema`.

    `sections` names keys whose value may instead be the path of a YAML file with that section
    (e.g. model: configs/model/tiny.yaml). The file is read here, once, and replaces the whole
    section (the section's schema gives what the file omits); later `key.sub=value` overrides
    apply on top. `whole` names free-form mappings (a sweep's grid) that a later layer replaces
    instead of merging into. Unknown keys and wrong types are errors naming the file.
    """
    sections = sections or {}
    try:
        cfg = OmegaConf.structured(schema)
        layers = []
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"{path}: {what} file not found")
            layers.append((str(path), OmegaConf.load(path)))
            note_env_values(Path(path).read_text())
        layers += [(f"override {o!r}", OmegaConf.from_dotlist([o])) for o in overrides]
        for o in overrides:
            note_env_values(o)
        for source, layer in layers:
            for key, section in sections.items():
                if isinstance(layer.get(key), str):
                    cfg[key] = _section_file(layer.pop(key), section)
            for key in whole:
                if key in layer:
                    cfg[key] = layer.pop(key)
            try:
                cfg = OmegaConf.merge(cfg, layer)
            except Exception as e:  # OmegaConf's errors name the key but not where it came from
                raise ConfigError(f"{source}: {_plain(e)}") from None
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{path or what}: {e}") from None
    if not hasattr(obj, "validate"):
        return obj
    try:
        return obj.validate()
    except ValueError as e:
        keys = getattr(e, "keys", [])
        where = list(dict.fromkeys(_source(k, layers) or str(path or what) for k in keys)) or [str(path or what)]
        raise ConfigError(f"{', '.join(where)}: {e}", keys) from None


def _plain(e: Exception) -> str:
    """An OmegaConf error as one line a user reads: the key and what is wrong, without its internals."""
    key = getattr(e, "full_key", None)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "is not a ListConfig" in first:
        first = "takes a list, e.g. [0.5, 0.5]"
    return f"{key}: {first}" if key and f"'{key}'" not in first else first


def _source(key: str, layers) -> str | None:
    """The last layer (file or override) that set `key` (or a section above it), if any."""
    found = None
    for source, layer in layers:
        parts = key.split(".")
        if any(OmegaConf.select(layer, ".".join(parts[:i]), default=None) is not None for i in range(1, len(parts) + 1)):
            found = source
    return found


def _section_file(file: str, section: type):
    if not Path(file).is_file():
        raise ConfigError(f"{file}: config file not found")
    note_env_values(Path(file).read_text())
    try:
        return OmegaConf.merge(OmegaConf.structured(section), OmegaConf.load(file))
    except Exception as e:
        raise ConfigError(f"{file}: {e}") from None


def to_yaml(obj) -> str:
    """A config dataclass (nested sections included) as YAML, secrets redacted: what every run
    records (config.yaml, checkpoints, sweep.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(obj)))


def to_dict(obj, redact: bool = True) -> dict:
    """A config dataclass as a dict; secrets redacted (see `redacted`) unless redact=False."""
    d = OmegaConf.to_container(OmegaConf.structured(obj))
    return redacted(d) if redact else d


_SECRET = re.compile(r"(^|[_.-])(password|passwd|pwd|pass|token|secret|api_?key|access_?key|private_?key|auth|"
                     r"credentials?|signature|sig)($|[_.-])", re.IGNORECASE)
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_ENV = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")
_ENV_VALUES: set[str] = set()  # values a config took from the environment: redacted wherever recorded


def note_env_values(text: str) -> None:
    """Remember the value of every environment variable that `text` interpolates (${oc.env:NAME}):
    whatever key it lands in (a run name, a path), it is written nowhere in clear."""
    for name in _ENV.findall(text):
        if len(os.environ.get(name, "")) >= 3:
            _ENV_VALUES.add(os.environ[name])


def redact(value: str) -> str:
    """Values interpolated from the environment, a URL's user info (user:token@, anywhere in the
    text) and secret-looking query parameters -> ***."""
    for secret in sorted(_ENV_VALUES, key=len, reverse=True):
        value = value.replace(secret, "***")
    value = _USERINFO.sub(r"\1***@", value)
    if "?" in value and "://" in value:
        base, query = value.split("?", 1)
        value = base + "?" + "&".join(f"{k}=***" if _SECRET.search(k) else f"{k}={v}" if sep else k
                                      for k, sep, v in (q.partition("=") for q in query.split("&")))
    return value


def redacted(d):
    """Every string of a nested config redacted; the values of secret-named keys hidden."""
    if isinstance(d, dict):
        return {k: "***" if isinstance(v, str) and _SECRET.search(str(k)) and v else redacted(v) for k, v in d.items()}
    if isinstance(d, list):
        return [redacted(v) for v in d]
    return redact(d) if isinstance(d, str) else d


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


MAX_MAIN_PARAMS = 20e9  # main network, 12 L d^2: the paper's model has 0.16 B there


@dataclass
class MambaConfig:
    d_state: int = 64
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 64  # SSD chunk length of the PyTorch path (the CUDA kernel uses >= 128)
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
        problems = self.problems()
        if problems:
            raise invalid(problems, "DNAChunker config")
        return self

    def problems(self, prefix: str = "") -> list[tuple[str, str]]:
        """[(key, what is wrong)]; resolves the tokenization's arguments and implied switches."""
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
        problems += [("tokenization", p) for p in self._resolve_tokenization()]
        for key, allowed in (("main_norm", ("layernorm", "rmsnorm")), ("main_mlp", ("gelu", "swiglu")),
                             ("ratio_loss_on", ("router", "protected")),
                             ("activation_checkpointing", ("none", "main", "all"))):
            if getattr(self, key) not in allowed:
                problems.append((key, f"must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"))
        if len(set(self.species)) != len(self.species):
            problems.append(("species", f"names repeat: {self.species}"))
        return [(prefix + k, m) for k, m in problems]

    def _resolve_tokenization(self) -> list[str]:
        """Fill in the kind's arguments and the switches it implies; -> problems."""
        from .tokenization import TOKENIZATIONS, resolved_args
        if self.tokenization == "given":
            return ["tokenization 'given' is now 'bpe': its cuts are computed from the masked input the "
                    "model sees, fitted at the start of pretraining (docs/architecture.md)"]
        if self.tokenization not in TOKENIZATIONS:
            return [f"tokenization must be one of {', '.join(TOKENIZATIONS)}, got {self.tokenization!r}"]
        try:
            self.tokenization_args = resolved_args(self.tokenization, self.tokenization_args)
        except ValueError as e:
            return [str(e)]
        for key, value in TOKENIZATIONS[self.tokenization].implies.items():
            setattr(self, key, value)
        return []

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
