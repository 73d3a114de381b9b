"""Zero-shot variant-effect scores from the MLM, streamed record by record.

For each variant of a VCF (SNV, MNV, insertion, deletion or complex, one ALT allele): a window of
`context` reference bases around the REF allele, and the same window with ALT in its place (the
left flank kept, the right flank refilled from the reference). In each, the allele's bases are
masked; the score is the mean log-probability of ALT's bases in the ALT window less the mean of
REF's bases in the REF window:

    score = mean_i log P(ALT_i | ALT window, ALT masked) - mean_j log P(REF_j | REF window, REF masked)

Negative: the model prefers the reference. The mean per base is the length normalisation: a sum
would grow with the allele's length (a long deletion would score low because REF has many bases to
predict, not because the model rejects it). For an SNV or MNV both windows are the same once
masked, so one forward pass gives both terms, and an SNV's score is log P(alt) - log P(ref) at the
masked base (the BEND / GPN score). VCF alleles carry their anchor base, so no allele is empty.

With `unmasked`, SNVs are read from unmasked windows instead, each window shared by the SNVs near
one another (every SNV at least a quarter of the context from a window's right edge): score =
log P(alt) - log P(ref) at the base, seen. One forward pass then scores every SNV of up to half a
window (all three alternatives at every position, for saturation mutagenesis), where the masked
score takes one pass per SNV; the MLM head was trained on masked positions, so the two differ
(bench.variant_modes measures how much). Other kinds are scored masked either way.

With `boundary_shift`, each variant also gets, per stage, how many of the learned chunk boundaries
differ between the unmasked REF and ALT windows (in reference coordinates, outside the allele).

One row per record, in the VCF's order, with a status instead of a crash for what cannot be scored:
ok, ref_mismatch (REF is not the FASTA's bases), multiallelic, symbolic (<DEL>, *, breakends),
not_acgt (an allele with other letters), too_long (an allele over a quarter of the context),
unknown_chrom, out_of_range.
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
from .fasta import open_maybe_gzip
from .inference import evaluating
from .reference import Reference, open_reference
from .tokenizer import MASK, PAD, VOCAB

COLUMNS = ["chrom", "pos", "id", "ref", "alt", "kind", "fasta_ref", "score", "ref_logp", "alt_logp", "shift_0",
           "shift_1", "status"]
_BASE_ID = {b: VOCAB.index(b) for b in "ACGT"}
UNMASKED_GROUP = 64  # with `unmasked`: records gathered per batch of windows, as many share a window


@dataclass
class Variant:
    line: int
    chrom: str
    pos: int          # 1-based, as in the VCF
    id: str
    ref: str
    alt: str
    raw: bytes = b""  # the record as read (tab-separated fields, no newline)
    status: str = "ok"
    fasta_ref: str = ""
    score: float | None = None
    ref_logp: float | None = None  # mean log P of REF's bases, REF masked in its window
    alt_logp: float | None = None
    shift: list[int] | None = None  # per stage: boundaries in one window and not the other

    @property
    def kind(self) -> str:
        r, a = len(self.ref), len(self.alt)
        if r == a:
            return "snv" if r == 1 else "mnv"
        if self.ref[0] == self.alt[0] and min(r, a) == 1:
            return "ins" if a > r else "del"
        return "complex"


def read_vcf(path: str | Path) -> Iterator[Variant]:
    """VCF records (plain, gzip or bgzip). A malformed line is an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: VCF file not found")
    with open_maybe_gzip(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if raw.startswith(b"#") or not raw.strip():
                continue
            raw = raw.rstrip(b"\r\n")
            fields = raw.split(b"\t")
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
            v = Variant(line_no, f[0], pos, f[2], f[3].upper(), f[4].upper(), raw)
            if "," in v.alt:
                v.status = "multiallelic"
            elif v.alt in ("*", ".", "") or any(c in v.alt for c in "<>[]"):
                v.status = "symbolic"
            elif not v.ref or set(v.ref + v.alt) - set(_BASE_ID):
                v.status = "not_acgt"
            yield v


def count_records(path: str | Path) -> int:
    with open_maybe_gzip(Path(path)) as fh:
        return sum(1 for raw in fh if raw.strip() and not raw.startswith(b"#"))


def naming_hint(unknown: set[str], fasta_names: set[str]) -> str | None:
    """Which chromosome naming would have matched the FASTA (UCSC 'chr1' against Ensembl '1')."""
    for how, rename in (("with 'chr' added", lambda c: f"chr{c}"), ("without 'chr'", lambda c: c.removeprefix("chr"))):
        hits = sorted(c for c in unknown if rename(c) != c and rename(c) in fasta_names)
        if hits:
            return (f"{len(hits)} of the {len(unknown)} chromosome names not in the FASTA would match {how} "
                    f"(e.g. {hits[0]} -> {rename(hits[0])}): rename them in the VCF, e.g. with bcftools annotate "
                    f"--rename-chrs")
    return None


def _check(v: Variant, ref: Reference, context: int) -> None:
    """The record against the reference: its status, and the FASTA's bases under REF."""
    if v.status != "ok":
        return
    n = ref.lengths.get(v.chrom)
    if n is None:
        v.status = "unknown_chrom"
    elif not (1 <= v.pos and v.pos - 1 + len(v.ref) <= n):
        v.status = "out_of_range"
    else:
        v.fasta_ref = "".join(VOCAB[c] for c in ref.fetch(v.chrom, v.pos - 1, v.pos - 1 + len(v.ref)))
        if v.fasta_ref != v.ref:
            v.status = "ref_mismatch"
        elif max(len(v.ref), len(v.alt)) > context // 4:
            v.status = "too_long"


@dataclass
class Windows:
    """A variant's REF and ALT windows (token ids) and where each allele starts in its window."""
    ref: np.ndarray
    alt: np.ndarray
    ref_at: int
    alt_at: int


def windows(v: Variant, ref: Reference, context: int) -> Windows:
    p, r, a = v.pos - 1, len(v.ref), len(v.alt)
    start = min(max(0, p + r // 2 - context // 2), max(0, ref.lengths[v.chrom] - context))
    ref_ids = ref.fetch(v.chrom, start, start + context).astype(np.int64)
    at = p - start
    right = ref.fetch(v.chrom, p + r, p + r + max(0, context - at - a)).astype(np.int64)
    alt_ids = np.concatenate([ref_ids[:at], [_BASE_ID[b] for b in v.alt], right])
    cut = max(0, len(alt_ids) - context)  # an insertion near the chromosome's end: drop from the left
    return Windows(ref_ids, alt_ids[cut:], at, at - cut)


def boundary_shift(ref_cuts: np.ndarray, alt_cuts: np.ndarray, w: Windows, r: int, a: int) -> int:
    """Chunk starts in one window and not the other, in REF-window coordinates (ALT's shifted past
    the allele by the length change), outside the allele and both windows' first positions."""
    offset = w.ref_at - w.alt_at  # ALT window position + offset = REF window position, left of the allele
    mapped = np.where(alt_cuts < w.alt_at + a, alt_cuts + offset, alt_cuts + offset - a + r)
    keep_alt = (alt_cuts <= w.alt_at) | (alt_cuts >= w.alt_at + a)
    lo, hi = offset + 1, min(len(w.ref), len(w.alt) + offset - a + r)
    in_ref = {int(c) for c in ref_cuts if lo <= c < hi and not w.ref_at < c < w.ref_at + r}
    in_alt = {int(c) for c in mapped[keep_alt] if lo <= c < hi}
    return len(in_ref ^ in_alt)


def _score_unmasked(model, ref: Reference, snvs: list[Variant], context: int, device, batch_size: int) -> None:
    """SNVs (in VCF order) from shared unmasked windows, `batch_size` windows per forward pass."""
    groups: list[tuple[str, int, list[Variant]]] = []
    for v in snvs:
        p = v.pos - 1
        if groups and groups[-1][0] == v.chrom and groups[-1][1] <= p < groups[-1][1] + context - context // 4:
            groups[-1][2].append(v)
        else:
            groups.append((v.chrom, min(max(0, p - context // 4), max(0, ref.lengths[v.chrom] - context)), [v]))
    for k in range(0, len(groups), batch_size):
        part = groups[k:k + batch_size]
        ids = torch.full((len(part), context), PAD, dtype=torch.long)
        for j, (chrom, start, _) in enumerate(part):
            x = ref.fetch(chrom, start, start + context).astype(np.int64)
            ids[j, :len(x)] = torch.from_numpy(x)
        logp = torch.log_softmax(model(ids.to(device), ids.to(device) != PAD).logits.float(), -1).cpu()
        for j, (_, start, vs) in enumerate(part):
            for v in vs:
                row = logp[j, v.pos - 1 - start]
                v.ref_logp, v.alt_logp = float(row[_BASE_ID[v.ref]]), float(row[_BASE_ID[v.alt]])
                v.score = v.alt_logp - v.ref_logp


def _score_masked(model, ref: Reference, batch: list[Variant], context: int, device) -> None:
    """Each allele masked in its own window (module docstring): one forward pass for the batch."""
    ws = [windows(v, ref, context) for v in batch]
    jobs = []  # (ids, masked from, masked to): the REF window, then ALT's where it differs once masked
    for v, w in zip(batch, ws):
        r, a = len(v.ref), len(v.alt)
        jobs.append((w.ref, w.ref_at, w.ref_at + r))
        if r != a:
            jobs.append((w.alt, w.alt_at, w.alt_at + a))
    ids = torch.full((len(jobs), max(len(j[0]) for j in jobs)), PAD, dtype=torch.long)
    for k, (x, lo, hi) in enumerate(jobs):
        ids[k, :len(x)] = torch.from_numpy(x)
        ids[k, lo:hi] = MASK
    logp = torch.log_softmax(model(ids.to(device), ids.to(device) != PAD).logits.float(), -1).cpu()
    k = 0
    for v, w in zip(batch, ws):
        r, a = len(v.ref), len(v.alt)
        v.ref_logp = float(logp[k, torch.arange(w.ref_at, w.ref_at + r), torch.from_numpy(w.ref[w.ref_at:w.ref_at + r])].mean())
        k += r != a
        alt = torch.tensor([_BASE_ID[b] for b in v.alt])
        v.alt_logp = float(logp[k, torch.arange(w.alt_at, w.alt_at + a), alt].mean())
        v.score = v.alt_logp - v.ref_logp
        k += 1


def _shift(model, ref: Reference, batch: list[Variant], context: int) -> None:
    """Each variant's boundary shift per stage, from its unmasked REF and ALT windows."""
    ws = [windows(v, ref, context) for v in batch]
    seqs = ["".join(VOCAB[c] for c in x) for w in ws for x in (w.ref, w.alt)]
    cuts = model.segment(seqs, batch_size=len(seqs), window=context)
    for i, (v, w) in enumerate(zip(batch, ws)):
        v.shift = [boundary_shift(cuts[2 * i][s], cuts[2 * i + 1][s], w, len(v.ref), len(v.alt))
                   for s in range(len(cuts[2 * i]))]


def _score(model, ref: Reference, todo: list[Variant], context: int, device, shift: bool, unmasked: bool,
           batch_size: int) -> None:
    """Scores (and shifts) of `todo`, at most `batch_size` variants or windows per forward pass."""
    if unmasked:
        _score_unmasked(model, ref, [v for v in todo if v.kind == "snv"], context, device, batch_size)
    masked = [v for v in todo if not (unmasked and v.kind == "snv")]
    for k in range(0, len(masked), batch_size):
        _score_masked(model, ref, masked[k:k + batch_size], context, device)
    for k in range(0, len(todo) if shift else 0, batch_size):
        _shift(model, ref, todo[k:k + batch_size], context)


def score_variants(model, vcf: str | Path, fasta: str | Path | Reference, context: int | None = None,
                   batch_size: int = 16, device=None, shift: bool = False, unmasked: bool = False,
                   select: range | None = None) -> Iterator[Variant]:
    """Every record of `vcf` (or those whose ordinal is in `select`), in order, scored where it can
    be (module docstring); memory bounded by the batch (an indexed FASTA is read by region)."""
    context = context or model.cfg.max_len
    device = device or next(model.parameters()).device
    reference = fasta if isinstance(fasta, Reference) else open_reference(fasta)
    unknown, found = set(), False
    pending, todo = [], []

    def flush() -> Iterator[Variant]:
        nonlocal pending, todo
        if todo:
            _score(model, reference, todo, context, device, shift, unmasked, batch_size)
        bar.update(len(pending))
        yield from pending
        pending, todo = [], []

    try:
        with evaluating(model), torch.no_grad(), tqdm(desc="variants", unit="variant", dynamic_ncols=True) as bar:
            for i, v in enumerate(read_vcf(vcf)):
                if select is not None and i not in select:
                    if i >= select.stop:
                        break
                    continue
                if todo and v.chrom != todo[-1].chrom:  # a streamed reference keeps one chromosome
                    yield from flush()
                _check(v, reference, context)
                unknown |= {v.chrom} if v.status == "unknown_chrom" else set()
                found |= v.status not in ("unknown_chrom", "multiallelic", "symbolic", "not_acgt")
                pending.append(v)
                todo += [v] if v.status == "ok" else []
                if len(todo) == batch_size * (UNMASKED_GROUP if unmasked else 1):
                    yield from flush()
            yield from flush()
    finally:
        if reference is not fasta:
            reference.close()
    hint = naming_hint(unknown, set(reference.lengths))
    if unknown and not found and select is None:  # a part may hold only such records; the whole input may not
        raise InputError(f"{vcf}: none of its chromosomes ({', '.join(sorted(unknown)[:5])}...) is in {reference.path} "
                         f"(which has {', '.join(list(reference.lengths)[:5])}...); "
                         + (hint or "is it the right reference?"))
    if hint:
        print(f"warning: {vcf}: {hint}", file=sys.stderr)
