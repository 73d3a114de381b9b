"""python -m data_pipeline {all,genome,windows,shards,verify} [--config FILE] [key=value ...]

  all      FASTA -> genome.zarr -> windows -> shards + manifest (each stage reuses finished work)
  genome   FASTA (+ optional RepeatMasker .out / BED) -> <out>/genome.zarr
  windows  genome.zarr -> <out>/windows.npz (+ windows.json: counts, dropped mostly-N windows)
  shards   windows -> <out>/<split>/<split>-NNNNNN.tar + <out>/manifest.json
  verify   check every shard of <out> against the manifest (sizes and SHA-256)
  merge    a corpus config: corpus.json from its finished per-genome shard sets

A config with `genomes:` is a corpus (several genomes, data_pipeline/corpus.py): `all` builds each
genome's shard set under <out>/<name>/ and merges them; `only=<name>` builds one genome and does
not merge (one element of a Slurm array: slurm/corpus.sh).

Examples:
  python -m data_pipeline all --config configs/data/hg38.yaml fasta=hg38.fa.gz out=data/hg38
  python -m data_pipeline verify out=data/hg38
  python -m data_pipeline all --config configs/data/multispecies_demo.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from dnachunker import cli
from dnachunker.errors import describe

from .config import PipelineConfig
from .errors import DataError


def main(argv: list[str] | None = None, prog: str = "python -m data_pipeline") -> int:
    parser = cli.parser(prog, __doc__)
    parser.add_argument("stage", choices=["all", "genome", "windows", "shards", "verify", "merge"], help="what to run")
    parser.add_argument("--config", help="YAML pipeline config (see configs/data/)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.stage == "verify":
            from .shards import verify
            out = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("out=")), None)
            if out is None:
                out = PipelineConfig.load(args.config, []).out if args.config else None
            if not out:
                parser.error("verify needs out=DIR (or a --config naming it)")
            from .corpus import CorpusSplit, is_corpus
            roots = ([Path(out) / g for g in CorpusSplit.genome_roots(out)] if is_corpus(out) else [out])
            problems = [p for root in roots for p in verify(root)]
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{out}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        if args.config and "genomes" in (yaml.safe_load(Path(args.config).read_text()) or {}):
            from .corpus_build import build_corpus, merge
            from .corpus_config import CorpusConfig
            corpus = CorpusConfig.load(args.config, args.overrides)
            if args.stage not in ("all", "merge"):
                parser.error(f"{args.config} is a corpus: run 'all' (or 'merge')")
            (build_corpus if args.stage == "all" else merge)(corpus)
            return 0
        cfg = PipelineConfig.load(args.config, args.overrides)
        from .genome import build_genome
        from .shards import build_shards
        from .windows import build_windows
        stages = {"genome": [build_genome], "windows": [build_windows], "shards": [build_shards],
                  "all": [build_genome, build_windows, build_shards]}[args.stage]
        for stage in stages:
            stage(cfg)
    except (DataError, OSError, yaml.YAMLError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
