"""dnachunker score-variants: its arguments and the command (dnachunker.variants scores,
dnachunker.variant_io writes, dnachunker.parts splits a job into parts)."""
from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path

from dnachunker.cli import at_least, check_parts, load_model
from dnachunker.errors import InputError
from dnachunker.fileio import output_file
from dnachunker.variants import COLUMNS


def add_arguments(s) -> None:
    from dnachunker.cli import add_device, add_model, add_parts, add_species
    add_model(s)
    add_species(s)
    s.add_argument("--vcf", required=True, help="VCF (.gz accepted) of the variants")
    s.add_argument("--fasta", required=True, help="the reference the VCF refers to")
    s.add_argument("--out", required=True, help="the output: *.vcf.gz (the input's records with DNAC_ INFO fields, "
                   "bgzipped, tabix-indexed; needs a sorted input) or a TSV with columns " + " ".join(COLUMNS))
    s.add_argument("--context", type=at_least(1), default=None, help="bases around each variant (None: max_len)")
    s.add_argument("--batch-size", type=at_least(1), default=16, help="variants per forward pass")
    add_parts(s, "the VCF's records")
    s.add_argument("--unmasked", action="store_true", help="SNVs from unmasked windows that nearby SNVs share: one "
                   "forward pass for many (saturation mutagenesis, catalogues); not the masked score (docs/inference.md)")
    s.add_argument("--boundary-shift", action="store_true", help="also count, per stage, the learned chunk "
                   "boundaries that move between the REF and ALT windows (two more forward passes per variant)")
    add_device(s)


def cmd_score_variants(a) -> int:
    from dnachunker.fileio import file_sha256
    from dnachunker.parts import Parts, export_id, part_range
    from dnachunker.reference import open_reference
    from dnachunker.variant_io import check_sorted, is_vcf, open_writer
    from dnachunker.variants import count_records
    output_file(a.out)
    check_parts(a)
    if is_vcf(a.out):
        check_sorted(a.vcf)  # before anything is computed: tabix needs it
    model = load_model(a, map_location=a.device)
    if a.context is not None and a.context > model.cfg.max_len:
        raise InputError(f"--context {a.context}: at most the model's window, max_len {model.cfg.max_len} bp")
    reference = open_reference(a.fasta)
    command = shlex.join(sys.argv)
    try:
        if not a.parts:
            with open_writer(a.out, a.vcf, reference.lengths, command) as out:
                counts = _score_into(out, model, a, reference)
        else:
            key = {"vcf": file_sha256(a.vcf), "fasta": str(Path(a.fasta).resolve()), "model": export_id(a.model),
                   "context": a.context, "unmasked": a.unmasked, "boundary_shift": a.boundary_shift,
                   "format": "vcf" if is_vcf(a.out) else "tsv", "parts": a.parts}
            parts = Parts(Path(a.out), a.parts, key)
            parts.check_folder()
            total = count_records(a.vcf)

            def write(k: int) -> int:
                with open_writer(parts.path(k), a.vcf, reference.lengths, command, header=False) as out:
                    return sum(_score_into(out, model, a, reference, part_range(total, k, a.parts)).values())
            if not parts.run(a.part, a.merge, write, "records"):
                return 0
            with open_writer(a.out, a.vcf, reference.lengths, command) as out:
                for path in parts.require_all():
                    out.copy(path)
            counts = Counter({"records": total})
    finally:
        reference.close()
    print(f"{sum(counts.values())} records: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
          + f" -> {a.out}" + (f" (index {a.out}.tbi)" if is_vcf(a.out) else ""), file=sys.stderr)
    return 0


def _score_into(out, model, a, reference, select: range | None = None) -> Counter:
    from dnachunker.variants import score_variants
    counts = Counter()
    for v in score_variants(model, a.vcf, reference, a.context, a.batch_size, a.device, a.boundary_shift,
                            a.unmasked, select):
        out.add(v)
        counts[v.status] += 1
    return counts
