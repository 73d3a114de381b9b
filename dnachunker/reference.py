"""A reference genome read by region: `open_reference(fasta).fetch(chrom, start, end)` -> token ids.

Indexed FASTA (a `.fai` beside it; bgzip-compressed with its `.gzi` too, as `samtools faidx`
writes them): random access through pysam, memory bounded by the region. Any other FASTA (plain,
or gzip that is not bgzip): read once for its sequence names and lengths, then one chromosome at a
time in the file's order, so requests must come in that order (a VCF sorted like the FASTA);
`samtools faidx` (after `bgzip` for a .gz) lifts that limit.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .fasta import read_fasta
from .tokenizer import ENCODE_TABLE, decode, reverse_complement

NOTE_BP = 10_000_000  # an unindexed FASTA with a sequence this long gets a note on indexing
INDEX_HINT = "index it: samtools faidx {0} (a .gz must be bgzip-compressed: zcat {0} | bgzip > x.fa.gz)"


class Reference:
    path: Path
    lengths: dict[str, int]  # sequence name -> length, in the file's order

    def slice(self, chrom: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """chrom[start:end], 0-based half-open, clipped to the sequence: (token ids uint8,
        soft-masked bool)."""
        raise NotImplementedError

    def text(self, chrom: str, start: int, end: int) -> str:
        """As text: soft-masked (repeat) bases in lowercase, ambiguity codes as N."""
        return decode(*self.slice(chrom, start, end))

    def fetch(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Token ids (uint8)."""
        return self.slice(chrom, start, end)[0]

    def close(self) -> None:
        pass


class IndexedReference(Reference):
    def __init__(self, path: Path):
        import pysam
        self.path = path
        try:
            self.fa = pysam.FastaFile(str(path))
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: its index cannot be read ({e}); " + INDEX_HINT.format(path)) from None
        self.lengths = dict(zip(self.fa.references, self.fa.lengths))

    def slice(self, chrom: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        raw = np.frombuffer(self.fa.fetch(chrom, max(0, start), min(end, self.lengths[chrom])).encode("ascii", "replace"),
                            dtype=np.uint8)
        codes = ENCODE_TABLE[raw]
        if (bad := np.flatnonzero(codes == 255)).size:
            raise InputError(f"{self.path}: {chrom}:{max(0, start) + int(bad[0]) + 1}: {chr(raw[bad[0]])!r} is not a "
                             "base (IUPAC code)")
        return codes, raw >= ord("a")

    def close(self) -> None:
        self.fa.close()


class StreamedReference(Reference):
    def __init__(self, path: Path):
        self.path = path
        self.lengths = {name: len(codes) for name, codes, _ in read_fasta(path)}
        self.records: Iterator | None = None
        self.name, self.codes, self.soft = None, None, None
        if max(self.lengths.values(), default=0) >= NOTE_BP:  # a chromosome held whole: say how not to
            print(f"note: {path} has no index: reading it one sequence at a time in its own order, each held whole; to "
                  f"read it by region in any order, " + INDEX_HINT.format(path), file=sys.stderr)

    def slice(self, chrom: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        if chrom != self.name:
            self._advance(chrom)
        return self.codes[max(0, start):end], self.soft[max(0, start):end]

    def _advance(self, chrom: str) -> None:
        order = list(self.lengths)
        if self.name is not None and order.index(chrom) < order.index(self.name):
            raise InputError(f"{chrom} is asked for after {self.name}, but {self.path} holds it before and has no "
                             f"index: sort the input in the FASTA's order (bcftools sort; chromosome order as in "
                             f"{self.path}), or " + INDEX_HINT.format(self.path))
        self.records = self.records or read_fasta(self.path)
        self.codes = self.soft = None  # the previous chromosome goes before the next is read
        for name, codes, soft in self.records:
            if name == chrom:
                self.name, self.codes, self.soft = name, codes, soft
                return


def open_reference(fasta: str | Path) -> Reference:
    """The FASTA's indexed reader where `samtools faidx` has indexed it, else the streamed one."""
    path = Path(fasta)
    if not path.is_file():
        raise InputError(f"{path}: FASTA file not found")
    fai, gzi = Path(f"{path}.fai"), Path(f"{path}.gzi")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if fai.is_file() and (gzi.is_file() or not gz):
        return IndexedReference(path)
    return StreamedReference(path)


@dataclass(frozen=True)
class Region:
    """chrom[start:end) of a reference on `strand`, read only where sliced: a sequence for
    inference.stream that is never held whole (len() and [a:b] -> text, as a str)."""
    reference: Reference
    chrom: str
    start: int
    end: int
    strand: str = "+"

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, s: slice) -> str:
        a, b, _ = s.indices(len(self))
        if self.strand == "-":
            return reverse_complement(self.reference.text(self.chrom, self.end - b, self.end - a))
        return self.reference.text(self.chrom, self.start + a, self.start + b)
