"""A corpus's config: its genomes (one FASTA each, its splits or a whole-genome hold-out, an
optional explicit weight), how they are sampled, and the window every genome is cut into."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from omegaconf import MISSING

from .config import PipelineConfig, SplitConfig, WindowConfig
from .errors import DataError

STRATEGIES = ("uniform", "by_bp", "explicit", "temperature")  # corpus.py's docstring says what each does


@dataclass
class GenomeConfig:
    name: str = MISSING
    fasta: str = MISSING
    repeats: str | None = None       # RepeatMasker .out or BED; default: soft-masking (lowercase)
    include: str = ".*"
    exclude: str = r"_random|_alt|_fix|_decoy|^chrUn|^chrM$|^chrEBV$|^MT$"
    splits: SplitConfig = field(default_factory=SplitConfig)
    hold_out: str | None = None      # valid | test: the whole genome goes to that split (cross-species transfer)
    weight: float | None = None      # sampling.strategy = explicit


@dataclass
class SamplingConfig:
    strategy: str = "by_bp"          # uniform | by_bp | explicit | temperature
    temperature: float = 0.5         # p ∝ bp^temperature (strategy temperature)


@dataclass
class CorpusConfig:
    out: str = MISSING
    genomes: list[GenomeConfig] = field(default_factory=list)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    samples_per_shard: int = 1024
    workers: int = 0
    only: str | None = None          # build this genome only (name or index: a Slurm array element); no merge
    source: str | None = None        # the YAML file it came from (set by load; for error messages)

    @classmethod
    def load(cls, path: str, overrides: list[str] = ()) -> "CorpusConfig":
        from dnachunker.configlib import ConfigError, load_structured
        try:
            cfg = load_structured(cls, path, overrides, what="corpus config")
        except ConfigError as e:
            raise DataError(str(e)) from None
        cfg.source = str(path)
        return cfg.check()

    def where(self, i: int) -> str:
        """'<file>:<line>: genome <name>' of genomes[i]."""
        line = ""
        if self.source and Path(self.source).is_file():
            root = yaml.compose(Path(self.source).read_text())
            node = next((v for k, v in root.value if k.value == "genomes"), None) if root else None
            if node is not None and i < len(node.value):
                line = f":{node.value[i].start_mark.line + 1}"
        return f"{self.source or 'corpus config'}{line}: genome '{self.genomes[i].name}'"

    def problems(self) -> list[str]:
        """Every fault of the config, each naming its file, line and genome; changes nothing."""
        out, seen = [], {}
        if not self.genomes:
            out.append(f"{self.source}: no genomes listed")
        if self.sampling.strategy not in STRATEGIES:
            out.append(f"{self.source}: sampling.strategy '{self.sampling.strategy}' is not one of {STRATEGIES}")
        for i, g in enumerate(self.genomes):
            if g.name in seen:
                out.append(f"{self.where(i)}: the name is used twice (also genomes[{seen[g.name]}])")
            if not g.name or "/" in g.name:
                out.append(f"{self.where(i)}: a name must be non-empty and hold no '/'")
            seen.setdefault(g.name, i)
            if g.hold_out not in (None, "valid", "test"):
                out.append(f"{self.where(i)}: hold_out is '{g.hold_out}', not valid or test")
            if g.weight is not None and (g.weight < 0 or not np.isfinite(g.weight)):
                out.append(f"{self.where(i)}: weight {g.weight} is negative")
            if self.sampling.strategy == "explicit" and g.weight is None and g.hold_out is None:
                out.append(f"{self.where(i)}: sampling.strategy is explicit but the genome has no weight")
        if self.sampling.strategy == "explicit" and not any(g.weight for g in self.genomes if g.hold_out is None):
            out.append(f"{self.source}: every explicit weight is zero")
        if self.only is not None and self._only() not in seen:
            out.append(f"{self.source}: only={self.only}: no such genome (has {list(seen)})")
        return out

    def _only(self) -> str | None:
        """`only` as a genome name (a Slurm array element gives its index)."""
        names = [g.name for g in self.genomes]
        if self.only not in names and str(self.only).isdigit() and int(self.only) < len(names):
            return names[int(self.only)]
        return self.only

    def check(self) -> "CorpusConfig":
        """Raises DataError naming every problem; then resolves `only` to a genome name."""
        if problems := self.problems():
            raise DataError("; ".join(problems))
        self.only = self._only()
        return self

    def pipeline(self, g: GenomeConfig) -> PipelineConfig:
        """The single-genome pipeline config of one genome, its shard set at <out>/<name>."""
        splits = g.splits
        if g.hold_out:  # the whole genome in one split
            splits = SplitConfig(**{s: (["*"] if s == g.hold_out else []) for s in ("train", "valid", "test")})
        return PipelineConfig(fasta=g.fasta, out=str(Path(self.out) / g.name), repeats=g.repeats, include=g.include,
                              exclude=g.exclude, window=self.window, splits=splits, samples_per_shard=self.samples_per_shard,
                              allow_empty_splits=True, workers=self.workers).validate()
