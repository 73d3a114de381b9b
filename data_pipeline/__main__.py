"""python -m data_pipeline {all,genome,windows,shards,verify} [--config FILE] [key=value ...]

  all      FASTA -> genome.zarr -> windows -> shards + manifest (each stage reuses finished work)
  genome   FASTA (+ optional RepeatMasker .out / BED) -> <out>/genome.zarr
  windows  genome.zarr -> <out>/windows.npz (+ windows.json: counts, dropped mostly-N windows)
  shards   windows -> <out>/<split>/<split>-NNNNNN.tar + <out>/manifest.json
  verify   check every shard of <out> against the manifest (sizes and SHA-256)

Examples:
  python -m data_pipeline all --config configs/data/hg38.yaml fasta=hg38.fa.gz out=data/hg38
  python -m data_pipeline verify out=data/hg38
"""
from __future__ import annotations

import sys

from dnachunker import cli
from dnachunker.errors import describe

from .config import PipelineConfig
from .errors import DataError


def main(argv: list[str] | None = None, prog: str = "python -m data_pipeline") -> int:
    parser = cli.parser(prog, __doc__)
    parser.add_argument("stage", choices=["all", "genome", "windows", "shards", "verify"], help="what to run")
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
            problems = verify(out)
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{out}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        cfg = PipelineConfig.load(args.config, args.overrides)
        from .genome import build_genome
        from .shards import build_shards
        from .windows import build_windows
        stages = {"genome": [build_genome], "windows": [build_windows], "shards": [build_shards],
                  "all": [build_genome, build_windows, build_shards]}[args.stage]
        for stage in stages:
            stage(cfg)
    except (DataError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
