"""Zero-shot variant-effect scores from the MLM, the BEND / GPN way.

For each SNV of a VCF: take `context` bases of the reference around it (the variant as central
as the chromosome's ends allow), replace the variant's base by [MASK], and score
log P(alt) - log P(ref) under the model at that position (negative: the model prefers the
reference). One row per VCF record (and per ALT allele), with an explicit status instead of a
crash for what cannot be scored: ok, ref_mismatch (REF is not the FASTA's base), multiallelic,
indel, unknown_chrom, out_of_range, not_acgt (REF or ALT is not A/C/G/T).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import InputError
from .fasta import open_maybe_gzip, read_fasta
from .inference import evaluating
from .tokenizer import MASK, PAD, VOCAB

COLUMNS = ["chrom", "pos", "id", "ref", "alt", "fasta_ref", "score", "status"]
_BASE_ID = {b: VOCAB.index(b) for b in "ACGT"}


@dataclass
class Variant:
    line: int
    chrom: str
    pos: int          # 1-based, as in the VCF
    id: str
    ref: str
    alt: str
    status: str = "ok"
    fasta_ref: str = ""
    score: float | None = None


def read_vcf(path: str | Path) -> Iterator[Variant]:
    """VCF records (plain or gzip). A malformed line is an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: VCF file not found")
    with open_maybe_gzip(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if raw.startswith(b"#") or not raw.strip():
                continue
            fields = raw.rstrip(b"\r\n").split(b"\t")
            if len(fields) < 5:
                raise InputError(f"{path}:{line_no}: {len(fields)} tab-separated fields, a VCF record has at least 5")
            try:  # the five fields read here; the rest (QUAL, FILTER, INFO) may hold any bytes
                f = [x.decode("utf-8") for x in fields[:5]]
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{line_no}: byte 0x{e.object[e.start]:02x} in CHROM, POS, ID, REF or ALT "
                                 "is not UTF-8 text") from None
            try:
                pos = int(f[1])
            except ValueError:
                raise InputError(f"{path}:{line_no}: POS {f[1]!r} is not an integer") from None
            ref, alts = f[3].upper(), f[4].upper().split(",")
            if len(alts) > 1:
                yield Variant(line_no, f[0], pos, f[2], ref, f[4].upper(), status="multiallelic")
                continue
            v = Variant(line_no, f[0], pos, f[2], ref, alts[0])
            if len(ref) != 1 or len(v.alt) != 1:
                v.status = "indel"
            elif ref not in _BASE_ID or v.alt not in _BASE_ID:
                v.status = "not_acgt"
            yield v


def naming_hint(unknown: set[str], fasta_names: set[str]) -> str | None:
    """Which chromosome naming would have matched the FASTA (UCSC 'chr1' against Ensembl '1')."""
    for how, rename in (("with 'chr' added", lambda c: f"chr{c}"), ("without 'chr'", lambda c: c.removeprefix("chr"))):
        hits = sorted(c for c in unknown if rename(c) != c and rename(c) in fasta_names)
        if hits:
            return (f"{len(hits)} of the {len(unknown)} chromosome names not in the FASTA would match {how} "
                    f"(e.g. {hits[0]} -> {rename(hits[0])}): rename them in the VCF, e.g. with bcftools annotate "
                    f"--rename-chrs")
    return None


def score_variants(model, vcf: str | Path, fasta: str | Path, context: int | None = None,
                   batch_size: int = 16, device=None) -> list[Variant]:
    variants = list(read_vcf(vcf))
    chroms, names = {v.chrom for v in variants}, set()
    genome = {}
    for name, codes, _ in read_fasta(fasta):
        names.add(name)
        if name in chroms:
            genome[name] = codes
    context = context or model.cfg.max_len
    todo = []
    for v in variants:
        if v.status not in ("ok", "not_acgt"):
            continue
        seq = genome.get(v.chrom)
        if seq is None:
            v.status = "unknown_chrom"
        elif not 1 <= v.pos <= len(seq):
            v.status = "out_of_range"
        else:
            v.fasta_ref = VOCAB[int(seq[v.pos - 1])]
            if v.status == "ok" and v.fasta_ref != v.ref:
                v.status = "ref_mismatch"
            elif v.status == "ok":
                todo.append(v)
    unknown = {v.chrom for v in variants if v.status == "unknown_chrom"}
    hint = naming_hint(unknown, names)
    if unknown and not genome:
        raise InputError(f"{vcf}: none of its chromosomes ({', '.join(sorted(unknown)[:5])}...) is in {fasta} "
                         f"(which has {', '.join(sorted(names)[:5])}...); " + (hint or "is it the right reference?"))
    if hint:
        print(f"warning: {vcf}: {hint}", file=sys.stderr)
    device = device or next(model.parameters()).device
    with evaluating(model), torch.no_grad(), tqdm(total=len(todo), desc="variants", unit="snv",
                                                  dynamic_ncols=True) as bar:
        for k in range(0, len(todo), batch_size):
            batch = todo[k:k + batch_size]
            ids = torch.full((len(batch), context), PAD, dtype=torch.long)
            where = []
            for j, v in enumerate(batch):
                seq = genome[v.chrom]
                start = min(max(0, v.pos - 1 - context // 2), max(0, len(seq) - context))
                window = seq[start:start + context]
                ids[j, :len(window)] = torch.from_numpy(window.astype(np.int64))
                ids[j, v.pos - 1 - start] = MASK
                where.append(v.pos - 1 - start)
            logp = torch.log_softmax(model(ids.to(device), ids.to(device) != PAD).logits.float(), -1)
            for j, v in enumerate(batch):
                row = logp[j, where[j]]
                v.score = float(row[_BASE_ID[v.alt]] - row[_BASE_ID[v.ref]])
            bar.update(len(batch))
    return variants
