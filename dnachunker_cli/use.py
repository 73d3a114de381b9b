"""dnachunker embed|score-variants ...   (using a trained model)

  embed           embeddings of sequences from FASTA, BED + FASTA or CSV -> .npz (mean-pooled) or
                  zarr (mean-pooled, per base, per chunk); any length (overlapping windows)
  score-variants  zero-shot scores of SNVs, MNVs and indels from a VCF + reference FASTA (indexed:
                  read by region) -> TSV, or a bgzipped, tabix-indexed VCF with DNAC_ INFO fields

Examples:
  dnachunker embed --model runs/x/export --fasta genes.fa --out genes.npz
  dnachunker embed --model runs/x/export --bed peaks.bed --fasta hg38.fa --out peaks.zarr --per-base --chunks 0
  dnachunker embed --model runs/x/export --fasta hg38.fa.gz --out hg38.zarr --chunks 0 --parts 64   (slurm/parts.sh)
  dnachunker score-variants --model runs/x/export --vcf clinvar.vcf.gz --fasta hg38.fa --out scores.tsv
  dnachunker score-variants --model runs/x/export --vcf clinvar.vcf.gz --fasta hg38.fa.gz --out scored.vcf.gz \
      --boundary-shift
"""
from __future__ import annotations

import sys

from dnachunker.errors import InputError, describe

from . import embed, score


def main(argv=None, prog: str = "dnachunker") -> int:
    from dnachunker.cli import parser, subparser
    p = parser(prog, __doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    embed.add_arguments(subparser(sub, "embed", "sequence embeddings (any length: overlapping windows)"))
    s = subparser(sub, "score-variants", "zero-shot variant effect scores (SNVs, MNVs, indels): mean log P(ALT) "
                  "- mean log P(REF), each allele masked")
    score.add_arguments(s)
    a = p.parse_args(argv)
    try:
        return {"embed": embed.cmd_embed, "score-variants": score.cmd_score_variants}[a.cmd](a)
    except (InputError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
