"""Fixed tokenizations as segmenters (chunk start positions in bp), for the ablation baselines
(training feeds BPE token starts to the model as `boundaries`) and the robustness comparison:
single-nucleotide, non-overlapping k-mer, and BPE (HuggingFace `tokenizers`; trained on the
pretraining shards by `python -m evaluation bpe`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def single_nucleotide(seq: str) -> np.ndarray:
    return np.arange(len(seq))


def kmer(seq: str, k: int = 6) -> np.ndarray:
    return np.arange(0, len(seq), k)


class BPESegmenter:
    """Byte-pair encoding over A/C/G/T/N (uppercase) as in DNABERT-2."""

    def __init__(self, tokenizer):
        self.tok = tokenizer

    @classmethod
    def train(cls, sequences, vocab_size: int = 4096) -> "BPESegmenter":
        from tokenizers import Tokenizer, models, trainers
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[UNK]"],
                                      initial_alphabet=list("ACGTN"), show_progress=False)
        tok.train_from_iterator((s.upper() for s in sequences), trainer=trainer)
        return cls(tok)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> "BPESegmenter":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(str(path)))

    def __call__(self, seq: str) -> np.ndarray:
        enc = self.tok.encode(seq.upper())
        return np.array([s for s, _ in enc.offsets], dtype=np.int64)
