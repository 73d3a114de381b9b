"""Base-level tokenizer: A C G T N plus [PAD] and [MASK]; soft-masking kept as a repeat flag.

Lowercase (soft-masked) bases are repeats. The token id drops the case, and the case is returned
separately as `repeat` so the loss can down-weight repeats. IUPAC ambiguity codes map to N.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PAD, MASK, A, C, G, T, N = range(7)
VOCAB = ["[PAD]", "[MASK]", "A", "C", "G", "T", "N"]
BASES = (A, C, G, T)  # targets of BERT's random replacement
IUPAC = "ACGTNRYSWKMBDHV"

ENCODE_TABLE = np.full(256, 255, dtype=np.uint8)  # byte -> token id; 255 = not an IUPAC nucleotide code
for _ch in IUPAC:
    _code = {"A": A, "C": C, "G": G, "T": T}.get(_ch, N)
    ENCODE_TABLE[ord(_ch)] = ENCODE_TABLE[ord(_ch.lower())] = _code
_DECODE = np.frombuffer(b"_?ACGTN", dtype=np.uint8)


class TokenizerError(ValueError):
    pass


def encode(seq: str | bytes, *, name: str = "sequence") -> tuple[np.ndarray, np.ndarray]:
    """-> (ids uint8 (L,), repeat bool (L,)). Raises TokenizerError naming the bad character."""
    raw = np.frombuffer(seq.encode("ascii", "replace") if isinstance(seq, str) else seq, dtype=np.uint8)
    ids = ENCODE_TABLE[raw]
    bad = np.flatnonzero(ids == 255)
    if bad.size:
        i = int(bad[0])
        raise TokenizerError(f"{name}: character {chr(raw[i])!r} at position {i} is not an IUPAC "
                             f"nucleotide code ({bad.size} such characters)")
    repeat = (raw >= ord("a")) & (raw <= ord("z"))
    return ids, repeat


def decode(ids, repeat=None) -> str:
    """Inverse of `encode` (ambiguity codes come back as N; [PAD] as '_', [MASK] as '?')."""
    ids = np.asarray(ids, dtype=np.uint8)
    out = _DECODE[ids]
    if repeat is not None:
        out = np.where(np.asarray(repeat, dtype=bool) & (ids >= A), out + 32, out).astype(np.uint8)
    return out.tobytes().decode("ascii")


_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def decode_interval(codes, repeat, start: int, end: int, strand: str = "+") -> str:
    """Bases [start, end) of a sequence (token ids + repeat flags) as text, soft-masking kept;
    reverse-complemented when strand is '-'."""
    seq = decode(codes[start:end], repeat[start:end])
    return reverse_complement(seq) if strand == "-" else seq


def reverse_complement(seq: str) -> str:
    """The other strand's text, read 5' to 3' (case and N kept)."""
    return seq.translate(_COMPLEMENT)[::-1]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) long, PAD beyond each length
    valid: torch.Tensor      # (B, L) bool
    repeat: torch.Tensor     # (B, L) bool, soft-masked bases

    def weight(self, repeat_weight: float = 0.1) -> torch.Tensor:
        """(B, L) float per-base MLM weight: repeat_weight on soft-masked bases, else 1."""
        return torch.where(self.repeat, repeat_weight, 1.0)


def batch_encode(seqs: list[str], max_len: int | None = None) -> Batch:
    """Right-pad a list of sequences into one batch (truncating to max_len if given)."""
    if not seqs:
        raise TokenizerError("batch_encode: empty list of sequences")
    encoded = [encode(s[:max_len] if max_len else s, name=f"sequence {i}") for i, s in enumerate(seqs)]
    if any(len(ids) == 0 for ids, _ in encoded):
        raise TokenizerError("batch_encode: empty sequence in batch")
    L = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(seqs), L), PAD, dtype=torch.long)
    repeat = torch.zeros(len(seqs), L, dtype=torch.bool)
    for i, (ids, rep) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.from_numpy(ids.astype(np.int64))
        repeat[i, : len(ids)] = torch.from_numpy(rep)
    return Batch(input_ids, input_ids != PAD, repeat)
