"""Training-side loader: per-rank, per-worker batches with exact and elastic resume.

Order: each epoch is a permutation of the split's samples keyed by (seed, epoch); on a corpus of
several genomes, the weighted draw of data_pipeline/corpus.py (same keys). The loader's
state is (epoch, position), position = samples consumed by *all* ranks in this epoch. Every
micro-batch step consumes one global batch of world_size x micro_batch_size consecutive entries
of the permutation, rank r taking the r-th slice; DataLoader workers take whole micro-batches in
turn. Since the state is global, a checkpoint taken with W ranks resumes on W' ranks without
repeating or skipping a sample. Every rank gets the same number of batches (the epoch's tail
that does not fill a global batch is dropped), so DDP never waits on an exhausted rank.

Masking (BERT 15%: 80/10/10, random bases from A/C/G/T) and reverse-complement augmentation are
drawn from an RNG keyed by (seed, epoch, sample index), so they are identical after a resume.
A fixed tokenization whose cuts are computed on the CPU (BPE) is applied here, in the workers, to
the *masked* ids by the same function the model uses at inference
(dnachunker.tokenization.Tokenization.boundaries), so no cut depends on a base under [MASK].
"""
from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dnachunker.masking import bert_mask
from dnachunker.tokenizer import PAD, A, C, G, T

from .errors import DataError
from .corpus import CorpusSplit, open_split

_COMPLEMENT = np.arange(256, dtype=np.uint8)
_COMPLEMENT[[A, C, G, T]] = [T, G, C, A]


class _MLMSamples(Dataset):
    """Map-style dataset over (epoch, index) keys -> one masked sample."""

    def __init__(self, split: CorpusSplit, seed: int, mask_prob: float, rc_augment: bool, train: bool,
                 tokenization=None, repeat_weight: float = 0.1):
        self.split, self.seed, self.mask_prob, self.repeat_weight = split, seed, mask_prob, repeat_weight
        self.rc_augment, self.train = rc_augment, train
        self.tokenization = tokenization if tokenization is not None and tokenization.on_host else None

    def __len__(self):
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        sample = self.split[index]
        bases = sample["bases"]
        weight = sample.get("weight")  # format 1 shards carry the weights themselves
        if weight is None:
            weight = np.where(sample["repeat"], np.float32(self.repeat_weight), np.float32(1))
        rng = np.random.default_rng([self.seed, epoch, index])
        reverse = bool(self.train and self.rc_augment and rng.random() < 0.5)
        if reverse:
            bases, weight = _COMPLEMENT[bases[::-1]], weight[::-1]
        ids = torch.from_numpy(bases.astype(np.int64))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        valid = ids != PAD
        input_ids, labels = bert_mask(ids[None], valid[None], gen, self.mask_prob)
        out = {"input_ids": input_ids[0], "labels": labels[0], "valid": valid,
               "weight": torch.from_numpy(weight.astype(np.float32)), "index": index, "reverse": reverse,
               "species": sample.get("species", 0)}
        if self.tokenization is not None:  # cuts of what the model sees: the masked ids
            out["boundaries"] = self.tokenization.boundaries(input_ids, valid[None])[0]
        return out


def _worker_init(_):
    """Stop signals are for the training process (which checkpoints); Slurm also delivers them
    to DataLoader workers, whose default action would kill them mid-batch."""
    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


def collate(samples: list[dict]) -> dict:
    out = {k: torch.stack([s[k] for s in samples]) for k in ("input_ids", "labels", "valid", "weight", "boundaries")
           if k in samples[0]}
    out["index"] = torch.tensor([s["index"] for s in samples])
    out["reverse"] = torch.tensor([s["reverse"] for s in samples])
    out["species"] = torch.tensor([s["species"] for s in samples])
    out["padded"] = not bool(out["valid"].all())  # known here, on the host: the model need not ask the device
    return out


class PretrainLoader:
    """Iterate micro-batches for one rank. `train=True`: shuffled, augmented, endless (epochs
    roll over); `train=False`: genome order (a corpus's genomes interleaved), one pass. Checkpoint with state_dict()."""

    def __init__(self, root: str, split: str, micro_batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_workers: int = 0, train: bool = True, mask_prob: float = 0.15,
                 rc_augment: bool = True, tokenization=None, repeat_weight: float = 0.1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.split = open_split(root, split)
        self.n = len(self.split)
        self.global_batch = micro_batch_size * world_size
        if self.n < self.global_batch:
            raise DataError(f"{root}: split '{split}' has {self.n} samples, fewer than one global batch "
                            f"({world_size} ranks x {micro_batch_size})")
        self.micro_batch_size, self.rank, self.world_size = micro_batch_size, rank, world_size
        self.seed, self.num_workers, self.train = seed, num_workers, train
        self.dataset = _MLMSamples(self.split, seed, mask_prob, rc_augment, train, tokenization, repeat_weight)
        self.epoch, self.position = 0, 0

    def order(self, epoch: int) -> np.ndarray:
        if isinstance(self.split, CorpusSplit):  # weighted across genomes; evaluation: genomes interleaved
            return self.split.order(self.seed, epoch) if self.train else self.split.interleaved()
        if not self.train:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.n)

    def _batches(self, epoch: int, position: int):
        order, G, mb = self.order(epoch), self.global_batch, self.micro_batch_size
        lo = self.rank * mb
        for pos in range(position, self.n - G + 1, G):
            yield [(epoch, int(i)) for i in order[pos + lo: pos + lo + mb]]

    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def _loader(self, epoch: int, position: int) -> DataLoader:
        return DataLoader(self.dataset, batch_sampler=list(self._batches(epoch, position)),
                          num_workers=self.num_workers, collate_fn=collate, worker_init_fn=_worker_init,
                          pin_memory=torch.cuda.is_available(),  # so that non_blocking copies do not block
                          persistent_workers=False, prefetch_factor=4 if self.num_workers else None)

    @staticmethod
    def _run(loader: DataLoader):
        it = iter(loader)
        try:
            yield from it
        except DataError as e:  # from a worker: its message, without the worker's traceback
            last = str(e).strip().splitlines()[-1]
            raise DataError(last.split("Error: ", 1)[-1] if "Original Traceback" in str(e) else str(e)) from None
        finally:  # on close(): stop workers now (they ignore SIGTERM, so exit-time cleanup would hang)
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()

    def __iter__(self):
        if not self.train:  # evaluation: always the same single pass, no state
            yield from self._run(self._loader(0, 0))
            return
        while True:
            for batch in self._run(self._loader(self.epoch, self.position)):
                self.position += self.global_batch  # counted only when handed to the caller
                yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                 "samples": self.n, "split": self.split.split}
        if isinstance(self.split, CorpusSplit):
            state["draws"] = self.split.state()
        return state

    def load_state_dict(self, state: dict) -> None:
        if (state["samples"], state["seed"], state["split"]) != (self.n, self.seed, self.split.split):
            raise DataError(f"{self.split.root}: checkpoint's data state (split {state['split']!r}, "
                            f"{state['samples']} samples, seed {state['seed']}) does not match this data "
                            f"({self.split.split!r}, {self.n} samples, seed {self.seed})")
        draws = self.split.state() if isinstance(self.split, CorpusSplit) else None
        if state.get("draws") != draws:
            raise DataError(f"{self.split.root}: checkpoint's draws per genome and epoch ({state.get('draws')}) differ "
                            f"from this corpus's ({draws}): its genomes or sampling weights changed")
        self.epoch, self.position = state["epoch"], state["position"]
