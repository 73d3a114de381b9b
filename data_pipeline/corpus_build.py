"""Building a corpus: each genome's shard set through the single-genome pipeline (reused when its
inputs are unchanged), then corpus.json over them with the resolved sampling weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dnachunker.fileio import write_text

from .config import digest
from .corpus import CORPUS
from .corpus_config import CorpusConfig
from .errors import DataError
from .reader import provenance
from .shards import load_manifest


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
