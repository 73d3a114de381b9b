"""The `dnachunker` command: one entry point for everything a user runs.

    dnachunker data ...            genome -> zarr -> WebDataset shards        (python -m data_pipeline)
    dnachunker pretrain ...        pretraining, one rank (srun / torchrun)   (python -m train.pretrain)
    dnachunker sweep ...           studies: sweeps over alpha, depth, ablations (python -m slurm.sweep)
    dnachunker publish RUN DEST    a finished study's tables and records -> results/ (python -m slurm.publish)
    dnachunker eval COMMAND ...    finetune | suite | mlm | segment | robustness | bpe (python -m evaluation);
                                   suite --baseline kmer_lr|cnn|onehot: a classical baseline on a suite
    dnachunker embed ...           embeddings of sequences                    (python -m dnachunker)
    dnachunker score-variants ...  zero-shot SNV scores                       (python -m dnachunker)
    dnachunker bench NAME ...      data | gpu_step | integrity | memory | model | nccl | paper_cost | paper_step | scans |
                                   suite_cost | threads | versus              (python -m bench.NAME)

`dnachunker COMMAND --help` shows every flag with its default. The `python -m` forms stay.
It sits above every package (it imports them all, lazily, for the command asked).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {  # name -> (module with main(argv, prog), what it does)
    "data": ("data_pipeline.__main__", "genome -> zarr -> WebDataset shards"),
    "pretrain": ("train.pretrain", "pretraining, one rank (launch with srun or torchrun for several)"),
    "sweep": ("slurm.sweep", "studies: sweeps over alpha, depth and the ablations, local or on Slurm"),
    "publish": ("slurm.publish", "copy a finished study's tables, plots and records into results/"),
    "eval": ("evaluation.__main__", "finetune | suite | mlm | segment | robustness | bpe"),
    "embed": ("dnachunker.__main__", "embeddings of sequences from FASTA, BED or CSV"),
    "score-variants": ("dnachunker.__main__", "zero-shot SNV effect scores from a VCF"),
    "bench": ("bench", "benchmarks: every bench/NAME.py with a main (dnachunker bench --help lists them)"),
}
BENCHES = ("data", "gpu_step", "integrity", "memory", "model", "nccl", "paper_cost", "paper_step", "scans", "suite_cost",
           "threads", "versus")


def _usage() -> str:
    return __doc__.split("\n\n", 1)[1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: dnachunker COMMAND [ARGS ...]\n\n" + _usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; the commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name == "pretrain":  # stop signals caught before torch and DeepSpeed load
        from train.signals import early_stop_flag
        early_stop_flag()
    if name == "bench":
        if not rest or rest[0] not in BENCHES:
            print(f"usage: dnachunker bench {{{','.join(BENCHES)}}} [ARGS ...]", file=sys.stderr)
            return 0 if rest and rest[0] in ("-h", "--help") else 2
        module = importlib.import_module(f"bench.{rest[0]}")
        return module.main(rest[1:], prog=f"dnachunker bench {rest[0]}") or 0
    module = importlib.import_module(COMMANDS[name][0])
    if name in ("embed", "score-variants"):
        return module.main([name, *rest], prog="dnachunker")
    return module.main(rest, prog=f"dnachunker {name}")


if __name__ == "__main__":
    sys.exit(main())
