"""A pretraining corpus of several genomes: one shard set per genome, one manifest over them, and a
deterministic weighted sample order that keeps exact and elastic resume.

Layout: <out>/<genome>/ is an ordinary shard set (the single-genome pipeline, run per genome and
reused when its inputs are unchanged), <out>/corpus.json lists them with their sizes and the
resolved sampling weights. A corpus root is read wherever a shard set root is.

Sampling (train split only; valid and test are read once, genome by genome). With p_g the weight
of genome g and N the corpus's train samples, an *epoch* is N draws: genome g contributes n_g of
them (N p_g, rounded by largest remainder), taken in turn from its own endless stream of
permutations of its samples (stream k is keyed by (seed, genome, k)), so within a genome no
sample repeats before all of its samples have been drawn, across epochs included. The epoch's
order is a seeded shuffle of those N draws. The loader's state stays (epoch, position), so a
checkpoint resumes exactly, on any number of ranks.

Weights: uniform (p_g = 1/G), by_bp (p_g ∝ train bp), explicit (each genome's `weight`), or
temperature (p_g ∝ bp_g^τ: τ = 1 is by_bp, τ = 0 uniform). A genome held out whole has no train
samples and weight 0. Sequence names are prefixed with their genome's name (`human/chr1`): names
repeat across genomes (chr1 of human and of Arabidopsis).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from omegaconf import MISSING

from dnachunker.fileio import write_text

from .config import PipelineConfig, SplitConfig, WindowConfig, digest
from .errors import DataError
from .reader import ShardSplit, provenance
from .shards import load_manifest

CORPUS = "corpus.json"
STRATEGIES = ("uniform", "by_bp", "explicit", "temperature")


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

    def check(self) -> "CorpusConfig":
        if not self.genomes:
            raise DataError(f"{self.source}: no genomes listed")
        if self.sampling.strategy not in STRATEGIES:
            raise DataError(f"{self.source}: sampling.strategy '{self.sampling.strategy}' is not one of {STRATEGIES}")
        seen = {}
        for i, g in enumerate(self.genomes):
            if g.name in seen:
                raise DataError(f"{self.where(i)}: the name is used twice (also genomes[{seen[g.name]}])")
            if not g.name or "/" in g.name:
                raise DataError(f"{self.where(i)}: a name must be non-empty and hold no '/'")
            seen[g.name] = i
            if g.hold_out not in (None, "valid", "test"):
                raise DataError(f"{self.where(i)}: hold_out is '{g.hold_out}', not valid or test")
            if g.weight is not None and (g.weight < 0 or not np.isfinite(g.weight)):
                raise DataError(f"{self.where(i)}: weight {g.weight} is negative")
            if self.sampling.strategy == "explicit" and g.weight is None and g.hold_out is None:
                raise DataError(f"{self.where(i)}: sampling.strategy is explicit but the genome has no weight")
        if self.sampling.strategy == "explicit" and not any(g.weight for g in self.genomes if g.hold_out is None):
            raise DataError(f"{self.source}: every explicit weight is zero")
        if self.only is not None and self.only not in seen and self.only.isdigit() and int(self.only) < len(self.genomes):
            self.only = self.genomes[int(self.only)].name  # a Slurm array index
        if self.only is not None and self.only not in seen:
            raise DataError(f"{self.source}: only={self.only}: no such genome (has {list(seen)})")
        return self

    def pipeline(self, g: GenomeConfig) -> PipelineConfig:
        """The single-genome pipeline config of one genome, its shard set at <out>/<name>."""
        splits = g.splits
        if g.hold_out:  # the whole genome in one split
            splits = SplitConfig(**{s: (["*"] if s == g.hold_out else []) for s in ("train", "valid", "test")})
        return PipelineConfig(fasta=g.fasta, out=str(Path(self.out) / g.name), repeats=g.repeats, include=g.include,
                              exclude=g.exclude, window=self.window, splits=splits, samples_per_shard=self.samples_per_shard,
                              allow_empty_splits=True, workers=self.workers).validate()


def weights(strategy: str, bp: list[int], explicit: list[float | None], temperature: float) -> np.ndarray:
    """Sampling probability of each genome from its train bp (0 bp: weight 0)."""
    bp_ = np.asarray(bp, dtype=float)
    raw = {"uniform": (bp_ > 0).astype(float), "by_bp": bp_,
           "explicit": np.array([w or 0.0 for w in explicit]) * (bp_ > 0),
           "temperature": np.where(bp_ > 0, np.maximum(bp_, 1) ** temperature, 0.0)}[strategy]
    if raw.sum() <= 0:
        raise DataError(f"sampling '{strategy}': every genome has weight 0 (no train samples, or zero weights)")
    return raw / raw.sum()


def build_corpus(cfg: CorpusConfig) -> Path:
    """Each genome's shard set (reused when unchanged), then corpus.json, unless `only` is set."""
    from .genome import build_genome
    from .shards import build_shards
    from .windows import build_windows
    for i, g in enumerate(cfg.genomes):
        if cfg.only not in (None, g.name):
            continue
        print(f"genome {g.name} ({i + 1}/{len(cfg.genomes)})")
        pc = cfg.pipeline(g)
        try:
            for stage in (build_genome, build_windows, build_shards):
                stage(pc)
        except DataError as e:
            raise DataError(f"{cfg.where(i)}: {e}") from None
    if cfg.only is not None:
        print(f"{Path(cfg.out) / cfg.only}: done; merge with: python -m data_pipeline merge --config {cfg.source}")
        return Path(cfg.out) / cfg.only
    return merge(cfg)


def merge(cfg: CorpusConfig) -> Path:
    """corpus.json from the finished per-genome shard sets."""
    genomes, L = [], cfg.window.length
    for i, g in enumerate(cfg.genomes):
        root = Path(cfg.out) / g.name
        try:
            manifest = load_manifest(root)
        except DataError as e:
            raise DataError(f"{cfg.where(i)}: {e} (build it first: python -m data_pipeline all --config "
                            f"{cfg.source} only={g.name})") from None
        samples = provenance(manifest)["splits"]
        if not sum(samples.values()):
            raise DataError(f"{cfg.where(i)}: its splits leave it empty (no window of {L:,} bp in {g.fasta})")
        genomes.append({"name": g.name, "root": g.name, "fasta": g.fasta, "samples": samples,
                        "manifest_sha256": digest(manifest), "weight": g.weight})
    p = weights(cfg.sampling.strategy, [g["samples"].get("train", 0) * L for g in genomes],
                [g["weight"] for g in genomes], cfg.sampling.temperature)
    for g, pg in zip(genomes, p):
        g["p"] = float(pg)
    corpus = {"format": "dnachunker-corpus/1", "window_length": L, "sampling": dict(vars(cfg.sampling)),
              "genomes": genomes}
    out = Path(cfg.out) / CORPUS
    write_text(out, json.dumps(corpus, indent=1))
    print("\n".join(f"  {g['name']}: {g['samples']} samples, p = {g['p']:.3f}" for g in genomes))
    print(f"corpus manifest: {out}")
    return out


def is_corpus(root: str | Path) -> bool:
    return (Path(root) / CORPUS).is_file()


class CorpusSplit:
    """One split of a corpus: its genomes' samples end to end, sample i of genome g at
    offset[g] + i. Samples carry `species` (the genome's index) and prefixed sequence names."""

    def __init__(self, root: str | Path, split: str):
        self.root = Path(root)
        path = self.root / CORPUS
        try:
            self.corpus = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: unreadable corpus manifest ({e})") from None
        self.split = split
        self.names = [g["name"] for g in self.corpus["genomes"]]
        self.manifests = [load_manifest(self.root / g["root"]) for g in self.corpus["genomes"]]
        for g, manifest in zip(self.corpus["genomes"], self.manifests):  # rebuilt since the merge: sizes, weights stale
            if digest(manifest) != g["manifest_sha256"]:
                raise DataError(f"{self.root / g['root']}: its shard set changed after {path} was written "
                                "(run: python -m data_pipeline merge --config <the corpus config>)")
        self.parts = [ShardSplit(self.root / g["root"], split) if g["samples"].get(split) else None
                      for g in self.corpus["genomes"]]
        self.sizes = np.array([len(p) if p is not None else 0 for p in self.parts], dtype=np.int64)
        self.offset = np.concatenate([[0], np.cumsum(self.sizes)])
        self.p = np.array([g["p"] for g in self.corpus["genomes"]])
        self.length = self.corpus["window_length"]

    @property
    def genomes(self) -> list[str]:
        """The corpus's genomes in corpus.json's order: a sample's `species` indexes it."""
        return self.names

    def __len__(self) -> int:
        return int(self.offset[-1])

    @staticmethod
    def genome_roots(root: str | Path) -> list[str]:
        return [g["root"] for g in json.loads((Path(root) / CORPUS).read_text())["genomes"]]

    def genome_of(self, index: int) -> int:
        return int(np.searchsorted(self.offset, index, side="right") - 1)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        g = self.genome_of(index)
        sample = self.parts[g][index - int(self.offset[g])]
        sample["meta"] = {**sample["meta"], "chrom": f"{self.names[g]}/{sample['meta']['chrom']}", "genome": self.names[g]}
        sample["species"] = g
        return sample

    def draws(self) -> np.ndarray:
        """n_g: each genome's draws in one epoch (N p_g, largest remainder)."""
        quota = len(self) * self.p
        n = np.floor(quota).astype(np.int64)
        n[np.argsort(-(quota - n), kind="stable")[: len(self) - int(n.sum())]] += 1
        return n

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's N global sample indices (see the module docstring)."""
        out = []
        for g, n in enumerate(self.draws()):
            if not n:
                continue
            size, first = int(self.sizes[g]), epoch * int(n)
            pos = np.arange(first, first + n)
            for k in np.unique(pos // size):  # the permutations of the genome's stream this epoch reads
                perm = np.random.default_rng([seed, g, int(k), 0xC0FF]).permutation(size)
                sel = pos[pos // size == k]
                out.append(self.offset[g] + perm[sel % size])
        return np.random.default_rng([seed, epoch, 0x5EED]).permutation(np.concatenate(out))

    def provenance(self) -> dict:
        """The model card's data section: every genome's source, split sizes and sampling weight."""
        genomes = [{"name": g["name"], "p": g["p"], **provenance(m)} for g, m in zip(self.corpus["genomes"], self.manifests)]
        return {"genomes": genomes, "window_length": self.length}

    def interleaved(self) -> np.ndarray:
        """Evaluation order: sample 0 of every genome, then sample 1, ... (a genome that runs out
        drops out), so that the first batches hold every genome."""
        rank = np.concatenate([np.arange(n) for n in self.sizes])
        return np.lexsort((np.repeat(np.arange(len(self.sizes)), self.sizes), rank))

    def state(self) -> dict:
        """What the order depends on, for a checkpoint to compare."""
        return {g: int(n) for g, n in zip(self.names, self.draws())}


def open_split(root: str | Path, split: str):
    """A shard set's split, or a corpus's."""
    return CorpusSplit(root, split) if is_corpus(root) else ShardSplit(root, split)
