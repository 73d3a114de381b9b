"""Writing scored variants as they stream in: a TSV, or the input VCF with the scores in INFO
fields, bgzip-compressed and tabix-indexed (what bcftools, VEP and IGV read). Either is written
beside its final name and appears only when complete."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .fasta import open_maybe_gzip
from .fileio import atomic_file
from .variants import COLUMNS, Variant

INFO = [("DNAC_SCORE", "1", "Float", "DNAChunker zero-shot score: mean log P(ALT bases) - mean log P(REF bases), "
         "each allele masked in its own window"),
        ("DNAC_STATUS", "1", "String", "ok, or why the record was not scored"),
        ("DNAC_KIND", "1", "String", "snv, mnv, ins, del or complex"),
        ("DNAC_SHIFT", ".", "Integer", "per stage: learned chunk boundaries that differ between the REF and ALT windows")]
VCF_SUFFIXES = (".vcf.gz", ".vcf.bgz")


def is_vcf(path: str | Path) -> bool:
    return str(path).endswith(VCF_SUFFIXES)


def check_sorted(vcf: str | Path) -> None:
    """A VCF whose records can be tabix-indexed: each chromosome in one block, positions not
    decreasing within it; else an InputError naming the line and how to sort it."""
    seen, last = set(), (None, 0)
    fix = f"an indexed VCF output needs a sorted input (bcftools sort -Oz -o sorted.vcf.gz {vcf}), or write a .tsv"
    with open_maybe_gzip(Path(vcf)) as fh:
        for line_no, raw in enumerate(fh, 1):
            if raw.startswith(b"#") or not raw.strip():
                continue
            chrom, pos = (raw.split(b"\t", 2) + [b""])[:2]
            pos = int(pos) if pos.isdigit() else 0
            if chrom != last[0]:
                if chrom in seen:
                    raise InputError(f"{vcf}:{line_no}: {chrom.decode(errors='replace')} appears in two blocks: {fix}")
                seen.add(last[0])
            elif pos < last[1]:
                raise InputError(f"{vcf}:{line_no}: position {pos} after {last[1]}: {fix}")
            last = (chrom, pos)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def tsv_row(v: Variant) -> dict:
    return {"chrom": v.chrom, "pos": v.pos, "id": v.id, "ref": v.ref, "alt": v.alt, "kind": v.kind,
            "fasta_ref": v.fasta_ref, "score": _fmt(v.score), "ref_logp": _fmt(v.ref_logp),
            "alt_logp": _fmt(v.alt_logp), "status": v.status, **{f"shift_{s}": n for s, n in enumerate(v.shift or [])}}


def vcf_header(vcf: str | Path, lengths: dict[str, int], command: str) -> bytes:
    """The input's header lines, with the INFO fields (and contigs, if it has none) declared."""
    header = []
    with open_maybe_gzip(Path(vcf)) as fh:
        for raw in fh:
            if not raw.startswith(b"#"):
                break
            header.append(raw.rstrip(b"\r\n"))
    if not header or not header[0].startswith(b"##fileformat"):
        header.insert(0, b"##fileformat=VCFv4.2")
    columns = header.pop() if header[-1].startswith(b"#CHROM") else b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    ours = [f'##INFO=<ID={i},Number={n},Type={t},Description="{d}">'.encode() for i, n, t, d in INFO]
    if not any(ln.startswith(b"##contig") for ln in header):
        ours += [f"##contig=<ID={c},length={n}>".encode() for c, n in lengths.items()]
    ours.append(f"##dnachunker_command={command}".encode())
    return b"\n".join(header + ours + [columns]) + b"\n"


def vcf_record(v: Variant) -> bytes:
    """The record as read, its INFO extended with the DNAC_ fields."""
    fields = v.raw.split(b"\t")
    fields += [b"."] * (8 - len(fields))
    info = ([f"DNAC_SCORE={v.score:.6f}"] if v.score is not None else []) + [f"DNAC_STATUS={v.status}",
                                                                             f"DNAC_KIND={v.kind}"]
    if v.shift is not None:
        info.append("DNAC_SHIFT=" + ",".join(map(str, v.shift)))
    old = [fields[7]] if fields[7] not in (b".", b"") else []
    fields[7] = b";".join(old + [x.encode() for x in info])
    return b"\t".join(fields) + b"\n"


def tsv_line(v: Variant) -> bytes:
    row = tsv_row(v)
    return ("\t".join(str(row.get(c, "")) for c in COLUMNS) + "\n").encode()


class Output:
    """What open_writer yields: `add(variant)` writes one record; `copy(part)` appends a part's
    records as they are (a part is written with header=False)."""

    def __init__(self, fh, line):
        self.fh, self.line = fh, line

    def add(self, v: Variant) -> None:
        self.fh.write(self.line(v))

    def copy(self, part: Path) -> None:
        with open(part, "rb") as src:
            shutil.copyfileobj(src, self.fh)


@contextmanager
def open_writer(path: str | Path, vcf: str | Path, lengths: dict[str, int], command: str,
                header: bool = True) -> Iterator[Output]:
    """Records to a TSV, or to a bgzipped VCF indexed by tabix (`<path>.tbi`) for *.vcf.gz /
    *.vcf.bgz. header=False: the records alone, uncompressed (a part of a job, merged later).
    Nothing appears under `path` unless the block completes."""
    path = Path(path)
    line = vcf_record if is_vcf(path) else tsv_line
    if not header or not is_vcf(path):
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            if header:
                fh.write(("\t".join(COLUMNS) + "\n").encode())
            yield Output(fh, line)
        return
    import pysam
    with atomic_file(path, suffix=".vcf.gz") as tmp:
        plain = tmp.with_name(tmp.name.removesuffix(".gz"))
        try:
            with open(plain, "wb") as fh:
                fh.write(vcf_header(vcf, lengths, command))
                yield Output(fh, line)
            pysam.tabix_compress(str(plain), str(tmp), force=True)
            pysam.tabix_index(str(tmp), preset="vcf", force=True, keep_original=True)
            os.replace(f"{tmp}.tbi", f"{path}.tbi")  # the index first: a VCF without it would look unindexed
        finally:
            plain.unlink(missing_ok=True)
            Path(f"{tmp}.tbi").unlink(missing_ok=True)
