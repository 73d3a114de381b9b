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

Here: reading a built corpus and its sample order. Its config: corpus_config.py; building and
merging: corpus_build.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import digest
from .errors import DataError
from .reader import ShardSplit, provenance
from .shards import load_manifest

CORPUS = "corpus.json"  # the corpus manifest (written by corpus_build.merge)


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
