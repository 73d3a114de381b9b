"""dnachunker bench NAME ...: the benchmarks under bench/ (python -m bench.NAME), each a module
with main(argv, prog)."""
from __future__ import annotations

import importlib
import sys

BENCHES = ("data", "embed_memory", "gpu_step", "integrity", "memory", "model", "nccl", "paper_cost", "paper_step",
           "scans", "suite_cost", "threads", "variant_modes", "versus")


def main(argv: list[str], prog: str = "dnachunker bench") -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: {prog} {{{','.join(BENCHES)}}} [ARGS ...]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"bench.{argv[0]}")
    return module.main(argv[1:], prog=f"{prog} {argv[0]}") or 0
