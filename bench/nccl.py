"""NCCL all-reduce bandwidth between the ranks torchrun starts: bus bandwidth as nccl-tests
reports it (algorithm bandwidth x 2 (n - 1) / n), at three message sizes.

    python -m torch.distributed.run --nproc_per_node=8 -m bench.nccl
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist


def main(argv=None, prog: str | None = None) -> int:
    from dnachunker.cli import parser
    parser(prog or "python -m bench.nccl", __doc__).parse_args(argv)
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mib in (16, 256, 1024):
        x = torch.ones(mib * 2**20 // 4, device="cuda")
        for _ in range(3):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        t0, n = time.perf_counter(), 10
        for _ in range(n):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / n
        if rank == 0:
            bus = x.numel() * 4 / dt / 1e9 * 2 * (world - 1) / world
            print(f"all-reduce {mib} MiB over {world} GPUs: {dt * 1e3:.2f} ms, bus bandwidth {bus:.1f} GB/s", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
