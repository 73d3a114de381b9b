"""Scan kernels: SSD chunked form vs the sequential reference, forward + backward.

    python -m bench.scans [--lengths 1024 4096 8192] [--device cpu|cuda] [--chunk-sizes 32 64]

Both scans of the model: the BiMamba selective scan (tiny-model shapes: 4 heads x 16, state 16)
and the dechunk p-gated scan (width 64). Ratios are reference / fast, measured in this run.
Then the SSD chunk length at the stage-0 shapes of small.yaml (16 x 1 kbp, 4 heads x 32, state
32) and of paper.yaml (8 kbp, 8 heads x 64, state 64): forward + backward of the selective scan
(`mamba.chunk_size`; A as initialised) and of the dechunk gated scan (`gated_scan`'s chunk_size;
width 64 and 256), fastest of 5, each time over the first size's.
"""
from __future__ import annotations

import time

import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import isolated


def _selective_inputs(b: int, length: int, h: int, p: int, n: int, device: str) -> tuple:
    """Seeded inputs of selective_scan but A: x, dt, B, C (with gradients), D, dt_bias."""
    torch.manual_seed(0)
    x = torch.randn(b, length, h, p, device=device, requires_grad=True)
    dt = torch.randn(b, length, h, device=device, requires_grad=True)
    B, C = (torch.randn(b, length, 1, n, device=device, requires_grad=True) for _ in range(2))
    return x, dt, B, C, torch.ones(h, device=device), torch.zeros(h, device=device)


def _setup(kind: str, impl: str, length: int, device: str):
    from dnachunker.ops import gated_scan, gated_scan_ref, selective_scan, selective_scan_ref
    torch.manual_seed(0)
    b = 2
    if kind == "selective":
        x, dt, B, C, D, bias = _selective_inputs(b, length, 4, 16, 16, device)
        A = -torch.rand(4, device=device) - 0.5
        f = (lambda: selective_scan(x, dt, A, B, C, D, bias)) if impl == "ssd" else \
            (lambda: selective_scan_ref(x, dt, A, B, C, D, bias))
    else:
        u = torch.randn(b, length, 64, device=device, requires_grad=True)
        p = torch.rand(b, length, device=device).requires_grad_(True)
        f = (lambda: gated_scan(u, p)) if impl == "ssd" else (lambda: gated_scan_ref(u, p))

    def step():
        f().square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
    return step, (1 if impl == "sequential" else 3)


# (name, batch, length, heads, head dim, state)
CHUNK_SHAPES = [("small.yaml stage 0", 16, 1024, 4, 32, 32), ("paper.yaml stage 0", 1, 8192, 8, 64, 64)]
# (name, batch, length, width) of the dechunk gated scan
GATED_SHAPES = [("small.yaml dechunk 0", 16, 1024, 64), ("paper.yaml dechunk 0", 1, 8192, 256)]


def _chunk_steps(device: str):
    """-> (shape name, step(chunk_size)) for each shape of CHUNK_SHAPES and GATED_SHAPES."""
    from dnachunker.ops import gated_scan, selective_scan
    for name, b, length, h, p, n in CHUNK_SHAPES:
        x, dt, B, C, D, bias = _selective_inputs(b, length, h, p, n, device)
        A = -torch.empty(h, device=device).uniform_(1, 16)  # as MambaDirection initialises it
        yield f"selective, {name}", lambda size: selective_scan(x, dt, A, B, C, D, bias, size)
    for name, b, length, d in GATED_SHAPES:
        u = torch.randn(b, length, d, device=device, requires_grad=True)
        prob = torch.rand(b, length, device=device).requires_grad_(True)
        yield f"gated, {name}", lambda size: gated_scan(u, prob, size)


def chunk_sizes(sizes: list[int], device: str) -> list[dict]:
    rows = []
    for name, fn in _chunk_steps(device):
        best = {}
        for _ in range(5):
            for size in sizes:
                t = time.perf_counter()
                fn(size).square().mean().backward()
                if device == "cuda":
                    torch.cuda.synchronize()
                best[size] = min(best.get(size, float("inf")), time.perf_counter() - t)
        rows += [{"shape": name, "chunk_size": size, "ms": 1e3 * best[size], f"time / {sizes[0]}'s": best[size] / best[sizes[0]]}
                 for size in sizes]
    return rows


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192], help="sequence lengths (bp)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[32, 64], help="SSD chunk lengths to compare")
    a = ap.parse_args(argv)
    rows = []
    for kind in ("selective", "dechunk"):
        for L in a.lengths:
            fast = isolated(_setup, kind, "ssd", L, a.device)
            ref = isolated(_setup, kind, "sequential", L, a.device)
            rows.append({"scan": kind, "length": L, "ssd_ms": 1e3 * fast["seconds"], "sequential_ms": 1e3 * ref["seconds"],
                         "speedup": ref["seconds"] / fast["seconds"], "ssd_peak_MB": fast["peak_mb"],
                         "sequential_peak_MB": ref["peak_mb"],
                         "memory_ratio": ref["peak_mb"] / max(fast["peak_mb"], 1e-3)})
            print(f"{kind} {L}: {rows[-1]['speedup']:.1f}x", flush=True)
    print(markdown_table(rows, list(rows[0])))
    print(markdown_table(chunk_sizes(a.chunk_sizes, a.device)))


if __name__ == "__main__":
    main()
