"""Tokenizations: how stage 0 cuts the bases into chunks. One interface and one registry.

    learned  the paper's router decides (DNAChunker itself)
    single   every base is a chunk
    kmer     non-overlapping k-mers from each sequence's first base      args: k
    bpe      byte-pair encoding over A/C/G/T/N, as in DNABERT-2          args: vocab_size, fit_samples

A kind is one class registered here. It owns its arguments (`Args`, the model config's
`tokenization_args`), its fitting (`fit`, on windows a caller draws; for shards:
data_pipeline.fitting), its file in exports (`save` / `load`), the switches of the model config it
implies (`implies`), the stage-0 boundaries computed from the ids the model receives
(`boundaries`), and a string API for analyses (`starts`). A fixed kind cuts stage 0 only; later
stages keep every position.

Cuts never depend on what hides under a [MASK]: `boundaries` reads the *masked* input, the ids
the model sees. For BPE every [MASK] is a one-base token and the visible runs between masks are
encoded on their own, so a masked base is its own chunk and the cuts around it are a function of
the visible bases only. The training loader (data_pipeline.loader) and the model's forward pass
(inference, Hugging Face, embed, segment, variant scores) call this same function, so training
and inference cut identically. Whole-token masking as in DNABERT-2 (mask the BPE tokens of the
unmasked sequence) would not do: the length of a masked span tells the model about the bases
under it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from omegaconf import OmegaConf

from .configlib import out_of_range
from .tokenizer import MASK, batch_encode, decode

# tokenizers' Rust thread pool and DataLoader workers forked after it was used do not mix (it
# prints a warning and turns itself off in every worker); the loader's workers are the parallelism
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class NoArgs:
    pass


class Tokenization:
    """One kind of stage-0 cut. Subclasses set `kind` and what differs from these defaults."""
    kind: ClassVar[str]
    Args: ClassVar[type] = NoArgs
    implies: ClassVar[dict] = {}      # model-config switches this kind sets (recorded in the resolved config)
    file: ClassVar[str | None] = None  # what a fitted kind saves beside the weights; None: nothing to fit
    on_host: ClassVar[bool] = False   # cuts computed on the CPU (the loader's workers), not in the model

    def __init__(self, args):
        self.args = args

    @property
    def fixed(self) -> bool:
        return True

    @classmethod
    def fit(cls, args, sequences: Iterable[str]) -> "Tokenization":
        """Fitted on `sequences` (strings); kinds with nothing to fit ignore them."""
        return cls(args)

    def save(self, directory: Path) -> None:
        """Write what `load` needs into `directory` (nothing for kinds without a file)."""

    @classmethod
    def load(cls, args, directory: Path) -> "Tokenization":
        return cls(args)

    def boundaries(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
        """input_ids, valid: (b, L), right-padded, as the model receives them (masked in training)
        -> (b, L) bool chunk starts of stage 0 (on input_ids' device), or None: the router decides."""
        raise NotImplementedError

    def starts(self, seq: str) -> np.ndarray:
        """String API: 0-based chunk starts of one sequence (the same cuts as `boundaries`)."""
        batch = batch_encode([seq])
        return np.flatnonzero(self.boundaries(batch.input_ids, batch.valid)[0].numpy())


TOKENIZATIONS: dict[str, type[Tokenization]] = {}


def register(cls: type[Tokenization]) -> type[Tokenization]:
    TOKENIZATIONS[cls.kind] = cls
    return cls


@register
class Learned(Tokenization):
    """DNAChunker's own routing: nothing fixed, nothing implied."""
    kind = "learned"

    @property
    def fixed(self) -> bool:
        return False

    def boundaries(self, input_ids, valid):
        return None

    def starts(self, seq):
        raise TypeError("learned chunk starts come from a model: DNAChunker.segment")


@register
class Single(Tokenization):
    kind = "single"
    implies = {"mask_protection": False, "ratio_loss": False}

    def boundaries(self, input_ids, valid):
        return valid.clone()


@dataclass
class KmerArgs:
    k: int = 6
    ranges: ClassVar[dict] = {"k": ">=1"}


@register
class Kmer(Tokenization):
    """Non-overlapping k-mers from each sequence's first base. Positions only: no base, visible
    or masked, moves a cut, so mask protection stays off (the ablation's 6-mer row)."""
    kind = "kmer"
    Args = KmerArgs
    implies = {"mask_protection": False, "ratio_loss": False}

    def boundaries(self, input_ids, valid):
        t = torch.arange(valid.size(1), device=valid.device)
        return valid & (t % self.args.k == 0)


@dataclass
class BPEArgs:
    vocab_size: int = 4096
    fit_samples: int = 20000  # training windows drawn (fixed seed) to fit on
    ranges: ClassVar[dict] = {"vocab_size": ">=6", "fit_samples": ">=1"}


@register
class BPE(Tokenization):
    """Byte-pair encoding (Hugging Face `tokenizers`) over uppercase A/C/G/T/N, one word per
    visible run between [MASK]s; each [MASK] is a one-base token. That isolates every masked base
    at stage 0, and stage 1 keeps every position: the mask protection this kind implies."""
    kind = "bpe"
    Args = BPEArgs
    implies = {"mask_protection": True, "ratio_loss": False}
    file = "bpe.json"
    on_host = True

    def __init__(self, args, tokenizer=None):
        super().__init__(args)
        self.tok = tokenizer

    @classmethod
    def fit(cls, args, sequences):
        from tokenizers import Tokenizer, models, trainers
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=["[UNK]"],
                                      initial_alphabet=list("ACGTN"), show_progress=False)
        tok.train_from_iterator((s.upper() for s in sequences), trainer=trainer)
        return cls(args, tok)

    def save(self, directory):
        self.tok.save(str(Path(directory) / self.file))

    @classmethod
    def load(cls, args, directory):
        from tokenizers import Tokenizer
        path = Path(directory) / cls.file
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: tokenization 'bpe' but no {cls.file} (its fitted merges)")
        try:
            return cls(args, Tokenizer.from_file(str(path)))
        except Exception as e:
            raise ValueError(f"{path}: not a tokenizers BPE file: {e}") from None

    def boundaries(self, input_ids, valid):
        if self.tok is None:
            raise RuntimeError("tokenization 'bpe' is not fitted: load it (from_pretrained) or fit it first")
        ids, lengths = input_ids.cpu().numpy(), valid.sum(1).tolist()
        out = np.zeros(ids.shape, dtype=bool)
        runs, texts = [], []
        for i, n in enumerate(lengths):
            masked = ids[i, :n] == MASK
            out[i, :n] = masked  # every [MASK] a token of its own
            edges = np.flatnonzero(np.diff(np.concatenate([[True], masked, [True]]).astype(np.int8)))
            for start, end in zip(edges[::2], edges[1::2]):  # visible runs [start, end)
                runs.append((i, start))
                texts.append(decode(ids[i, start:end]))
        for (i, start), enc in zip(runs, self.tok.encode_batch(texts)):
            out[i, [start + s for s, _ in enc.offsets]] = True
        return torch.from_numpy(out).to(input_ids.device)


def _args(kind: str, given: dict):
    """The kind's Args from a model config's tokenization_args (unknown keys are an error)."""
    cls = TOKENIZATIONS[kind]
    try:
        args = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Args), given or {}))
    except Exception as e:
        raise ValueError(f"tokenization_args for {kind!r}: {e}".splitlines()[0]) from None
    bad = out_of_range(args, getattr(args, "ranges", {}))
    if bad:
        raise ValueError(f"tokenization_args.{bad[0][0]} for {kind!r} {bad[0][1]}")
    return args


def resolved_args(kind: str, given: dict) -> dict:
    """tokenization_args with the kind's defaults filled in (what a config records)."""
    return OmegaConf.to_container(OmegaConf.structured(_args(kind, given)))


def build(cfg) -> Tokenization:
    """The model config's tokenization, unfitted (a fitted kind needs `load` or `fit`)."""
    return TOKENIZATIONS[cfg.tokenization](_args(cfg.tokenization, cfg.tokenization_args))


def load(cfg, directory: str | Path) -> Tokenization:
    """The model config's tokenization, fitted, from a directory it was saved in (an export)."""
    cls = TOKENIZATIONS[cfg.tokenization]
    return cls.load(_args(cfg.tokenization, cfg.tokenization_args), Path(directory))


def fit(cfg, sequences: Iterable[str]) -> Tokenization:
    cls = TOKENIZATIONS[cfg.tokenization]
    return cls.fit(_args(cfg.tokenization, cfg.tokenization_args), sequences)
