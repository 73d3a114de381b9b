"""Pipeline configuration (OmegaConf dataclass schema)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from omegaconf import MISSING

from dnachunker.configlib import ConfigError, invalid, load_structured, out_of_range, to_dict

from .errors import DataError


@dataclass
class WindowConfig:
    length: int = 8192
    stride: int | None = None        # default: length (non-overlapping)
    max_n_fraction: float = 0.5      # windows with more N than this are dropped (and counted)


@dataclass
class SplitConfig:
    """Which sequence goes to which split. Entries: a chromosome name, a region 'chr:start-end'
    (0-based, half-open), or '*' = every included chromosome not named elsewhere. A BED file with
    a 4th column naming the split replaces the lists when given."""
    train: list[str] = field(default_factory=lambda: ["*"])
    valid: list[str] = field(default_factory=lambda: ["chr21"])
    test: list[str] = field(default_factory=lambda: ["chr22"])
    bed: str | None = None


@dataclass
class PipelineConfig:
    fasta: str = MISSING
    out: str = MISSING
    repeats: str | None = None       # RepeatMasker .out or BED; default: soft-masking (lowercase)
    include: str = ".*"              # regex on chromosome names (re.search)
    exclude: str = r"_random|_alt|_fix|_decoy|^chrUn|^chrM$|^chrEBV$|^MT$"
    window: WindowConfig = field(default_factory=WindowConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    samples_per_shard: int = 1024
    allow_empty_splits: bool = False # a split whose regions give no window is an error unless this is set
    workers: int = 0                 # processes for sharding (0: all cores)
    zarr_chunk: int = 1 << 20        # base pairs per zarr chunk
    zarr_clevel: int = 5             # blosc-zstd level of the genome store (bench.data measures 1-9)

    @property
    def stride(self) -> int:
        return self.window.length if self.window.stride is None else self.window.stride

    @classmethod
    def load(cls, path: str | None = None, overrides: list[str] = ()) -> "PipelineConfig":
        try:
            return load_structured(cls, path, overrides, what="pipeline config")
        except ConfigError as e:  # the pipeline reports every bad input as a DataError
            raise DataError(str(e)) from None

    def validate(self) -> "PipelineConfig":
        problems = out_of_range(self, {"window.length": ">=1", "window.stride": ">=1", "window.max_n_fraction": "[0,1]",
                                       "samples_per_shard": ">=1", "workers": ">=0", "zarr_chunk": ">=1",
                                       "zarr_clevel": "[0,9]"})
        if problems:
            raise invalid(problems, "pipeline config")
        return self

    def to_dict(self) -> dict:
        return to_dict(self)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
