"""The `dnachunker` command: one entry point for everything a user runs.

    dnachunker data ...            genome -> zarr -> WebDataset shards        (python -m data_pipeline)
    dnachunker pretrain ...        pretraining, one rank (srun / torchrun)   (python -m train.pretrain)
    dnachunker sweep ...           studies: sweeps over alpha, depth, ablations (python -m studies.sweep)
    dnachunker publish RUN DEST    a finished study's tables and records -> results/ (python -m studies.publish)
    dnachunker eval COMMAND ...    finetune | suite | mlm | segment | robustness | bpe (python -m evaluation);
                                   suite --baseline kmer_lr|cnn|onehot: a classical baseline on a suite
    dnachunker embed ...           embeddings of sequences                    (dnachunker_cli.use)
    dnachunker score-variants ...  zero-shot variant scores (SNVs, indels)   (dnachunker_cli.use)
    dnachunker tracks ...          bigWig / BED / picture of regions          (dnachunker_cli.tracks)
    dnachunker bench NAME ...      data | embed_memory | gpu_step | integrity | memory | model | nccl | paper_cost |
                                   paper_step | scans | suite_cost | threads | variant_modes | versus (python -m bench.NAME)

`dnachunker COMMAND --help` shows every flag with its default. The `python -m` forms stay.
It sits above every package (it imports them all, lazily, for the command asked).
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

@dataclass(frozen=True)
class Command:
    module: str                  # a module with main(argv, prog)
    help: str
    prefix: tuple[str, ...] = ()  # arguments put before the user's (the module's own subcommand)
    before: str | None = None     # "module:function" run before the module is imported


COMMANDS = {
    "data": Command("data_pipeline.__main__", "genome -> zarr -> WebDataset shards"),
    # stop signals caught before torch and DeepSpeed load
    "pretrain": Command("train.pretrain", "pretraining, one rank (launch with srun or torchrun for several)",
                        before="train.signals:early_stop_flag"),
    "sweep": Command("studies.sweep", "studies: sweeps over alpha, depth and the ablations, local or on Slurm"),
    "publish": Command("studies.publish", "copy a finished study's tables, plots and records into results/"),
    "eval": Command("evaluation.__main__", "finetune | suite | mlm | segment | robustness | bpe"),
    "embed": Command("dnachunker_cli.use", "embeddings of sequences from FASTA, BED or CSV", ("embed",)),
    "score-variants": Command("dnachunker_cli.use", "zero-shot variant effect scores (SNVs, MNVs, indels) from a VCF",
                              ("score-variants",)),
    "tracks": Command("dnachunker_cli.tracks", "genome-browser tracks of regions: bigWig, BED of chunks, a picture"),
    "bench": Command("dnachunker_cli.bench", "benchmarks: every bench/NAME.py with a main (dnachunker bench --help "
                                             "lists them)"),
}


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
    command = COMMANDS[name]
    if command.before:
        module, function = command.before.split(":")
        getattr(importlib.import_module(module), function)()
    module = importlib.import_module(command.module)
    return module.main([*command.prefix, *rest], prog=f"dnachunker {name}" if not command.prefix else "dnachunker") or 0


if __name__ == "__main__":
    sys.exit(main())
