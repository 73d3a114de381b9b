"""The paper's model at 8 kbp in counts that do not depend on this machine, beside the models a user
would pick instead, and what they project to on the GPUs users train on.

    python -m bench.paper_cost [--lengths 256 512 1024] [--memory-depths 1 2] [--infer-length 1024]
                               [--rounds 3] [--parts flops memory inference]

Models (randomly initialised; parameter counts printed):
  dnachunker    configs/model/paper.yaml with cuts every 2nd position at each stage (alpha = 0.5
                exactly; the router still runs): 0.25 T into the main network without [MASK]
                ("inference ratio"). Trained with 15 % BERT masking, mask protection adds
                boundaries ("training ratio", measured and printed); both are counted.
  transformer   single-nucleotide, DNAChunker's main network (30 x 672, 12 heads) on every base
  nt-v2         transformers' EsmForMaskedLM (the class NT-v2 is published as), rotary, non-
                overlapping 6-mer tokens, width 672 and 12 heads, its depth chosen for
                DNAChunker's parameter count
  bimamba       single-nucleotide BiMamba stack (Caduceus-like), width 672, depth chosen likewise

Training FLOPs per bp: forward + backward of one sample under torch.utils.flop_counter at each of
--lengths. It does not count CPU scaled_dot_product_attention, so attention is added by hand:
4 L^2 d per layer forward and 8 L^2 d backward, L the tokens attending. The rest is linear in the
length (fitted a + b T; the fit's largest relative residual is printed) and evaluated at 8192.
Live-tensor peak: one training step's allocations replayed (bench.memory) under bf16 autocast at
8192 bp, micro-batch 1, with the gradients and optimizer state already allocated (so what is
counted is what the step adds), measured directly at --memory-depths main-network depths (the
blocks are identical, so each adds the same: the increment per layer is measured, and the full
depth is reached by adding it, a step in depth only; give the full depth among --memory-depths to
measure it too). Nothing is extrapolated in length: an earlier fit of a + bT + cT^2 over 128-512
bp, evaluated at 8192, read the small-length curvature as a T^2 term the model does not have. A
sample's share is the peak less autocast's bf16 copies of the weights (2 bytes per parameter). On
a GPU the same quantity is max_memory_allocated; the fused kernels there (flash-attn, mamba-ssm)
keep less than the reference paths measured here, so the CPU peak is an upper estimate. A model
name takes bench.model's variants: dnachunker+mainckpt, dnachunker+ckpt, dnachunker+kept.
Inference: forward bp/s of every model at --infer-length, batch 8, alternating rounds; the spread
is slowest / fastest. Breakdown: where DNAChunker's forward time goes, by part, at
--breakdown-lengths (8 kbp per call: 8 windows of 1 kbp, one of 8 kbp), fastest round.
Projection (labelled so): step time and tokens/s per GPU at 40 % of an H100's 989 TFLOP/s dense
bf16, and the micro-batch that fits 80 and 141 GB.
"""
from __future__ import annotations

import numpy as np

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import in_fresh_process
from .paper_models import TARGET, count, depth, forward_parts, infer, paper_config, parameters, peak

H100_BF16, MFU = 989e12, 0.40


def _answer(out, what: str):
    """A measurement's result, or stop naming what failed (a length that does not fit in memory, say)."""
    if isinstance(out, dict) and "error" in out:
        raise SystemExit(f"{what}: {out['error']}; try shorter --lengths / fewer --memory-depths")
    return out


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024], help="lengths counted (bp)")
    ap.add_argument("--memory-depths", type=int, nargs="+", default=[1, 2],
                    help="main-network depths whose step is profiled at 8192 bp (at least two)")
    ap.add_argument("--infer-length", type=int, default=1024, help="inference throughput length (bp)")
    ap.add_argument("--rounds", type=int, default=3, help="inference rounds per model")
    ap.add_argument("--models", nargs="+", default=["dnachunker", "transformer", "nt-v2", "bimamba"],
                    help="which models to count (the module docstring describes each)")
    ap.add_argument("--breakdown-lengths", type=int, nargs="+", default=[1024, 8192],
                    help="lengths of the forward-time breakdown (8 windows at 1 kbp, 1 at 8 kbp: 8 kbp per call)")
    ap.add_argument("--parts", nargs="+", default=["flops", "memory", "inference", "breakdown"],
                    help="what to measure")
    a = ap.parse_args(argv)
    per_bp = _flops(a) if "flops" in a.parts else {}
    mem = _memory(a) if "memory" in a.parts else {}
    speeds = _inference(a) if "inference" in a.parts else {}
    if "breakdown" in a.parts:
        _breakdown(a)
    _goals(per_bp, mem, speeds)


def _flops(a) -> dict[str, float]:
    rows, per_bp = [], {}
    for name in a.models:
        c = _answer(in_fresh_process(count, name, a.lengths), name)
        for masked in sorted({r["masked"] for r in c["rows"]}, reverse=True):
            pts = [r for r in c["rows"] if r["masked"] == masked]
            T = np.array([r["T"] for r in pts], dtype=float)
            rest = np.array([r["counted"] for r in pts], dtype=float)
            b, a0 = np.polyfit(T, rest, 1)
            residual = float(np.max(np.abs(a0 + b * T - rest) / rest))
            ratio = float(np.mean([r["tokens"] / r["T"] for r in pts]))
            at8k = (a0 + b * TARGET + pts[0]["attention_coef"] * (ratio * TARGET) ** 2) / TARGET
            label = name if not name.startswith("dnachunker") else f"{name} ({'training' if masked else 'inference'} ratio)"
            per_bp[label] = at8k
            rows.append({"model": label, "params (M)": c["params"] / 1e6, "attention tokens / bp": ratio,
                         "training GFLOP / bp at 8 kbp": at8k / 1e9, "linear fit residual": residual})
    print(markdown_table(rows), flush=True)
    return per_bp


def _memory(a) -> dict[str, dict]:
    """Each model's peak at 8192 bp at a few depths, its increment per layer, and its full depth;
    printed as it is measured."""
    if len(set(a.memory_depths)) < 2:
        raise SystemExit("--memory-depths: give at least two depths (the increment per layer is their difference)")
    mem, rows = {}, []
    for name in a.models:
        full = depth(name)
        at = {d: _answer(in_fresh_process(peak, name, TARGET, d), f"{name} at {d} layers, {TARGET} bp")
              for d in sorted(set(a.memory_depths))}
        d1, d2 = sorted(at)[:2]
        per_layer = (at[d2]["MB"] - at[d1]["MB"]) / (d2 - d1)
        projected = at[d1]["MB"] + (full - d1) * per_layer
        params = at[d1]["params"] + (full - d1) * (at[d2]["params"] - at[d1]["params"]) / (d2 - d1)
        weights = 2 * params / 2**20  # autocast's bf16 copies: there whatever the batch
        mem[name] = {"fixed": weights, "sample": projected - weights}
        row = {"model": name, **{f"peak MB, {d} layers": r["MB"] for d, r in at.items()}, "MB per layer": per_layer,
               "full depth": full, f"peak GB, {full} layers (+ increments)": projected / 1024}
        if full in at:
            row["measured / projected"] = at[full]["MB"] / projected
        row["per sample GB"] = (projected - weights) / 1024
        rows.append(row)
        print(markdown_table([row]), flush=True)
    print(markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))), flush=True)
    return mem


def _breakdown(a) -> None:
    cols = {}
    for T in a.breakdown_lengths:
        cols[T] = _answer(in_fresh_process(forward_parts, T, max(1, TARGET // T), a.rounds), f"breakdown at {T} bp")
    rows = [{"part of DNAChunker's forward": part, **{f"share at {T} bp": cols[T][part] / cols[T]["total"]
                                                     for T in cols}}
            for part in next(iter(cols.values())) if part != "total"]
    rows.append({"part of DNAChunker's forward": "total (ms per 8 kbp)",
                 **{f"share at {T} bp": 1e3 * cols[T]["total"] for T in cols}})
    print(markdown_table(rows), flush=True)


def _inference(a) -> dict[str, list[float]]:
    speeds = _answer(in_fresh_process(infer, a.models, a.infer_length, a.rounds), "inference")
    print(markdown_table([{"model": n, "inference bp/s (best)": max(v), "spread": max(v) / min(v)}
                          for n, v in speeds.items()]), flush=True)
    return speeds


def _goals(per_bp: dict, mem: dict, speeds: dict) -> None:
    ref, base = per_bp.get("dnachunker (training ratio)"), per_bp.get("transformer")
    if ref and base:
        print(f"\nGoal: training FLOPs per bp, DNAChunker / same-main-network Transformer = {ref / base:.3f} at the "
              f"training ratio, {per_bp['dnachunker (inference ratio)'] / base:.3f} at the inference ratio (goal <= 0.35)")
    if "transformer" in mem:
        for name in (n for n in mem if n.startswith("dnachunker")):
            print(f"Goal: live-tensor peak per 8 kbp sample, {name} / Transformer = "
                  f"{mem[name]['sample'] / mem['transformer']['sample']:.3f} (goal <= 0.5)")
    if "dnachunker" in speeds and "nt-v2" in speeds:
        print(f"Inference bp/s, DNAChunker / NT-v2-style = {max(speeds['dnachunker']) / max(speeds['nt-v2']):.2f}")
    if ref:
        bp = 8 * TARGET  # configs/pretrain/paper_hg38.yaml: micro-batch 8 x 8192 bp per GPU
        step_s = ref * bp / (H100_BF16 * MFU)
        print(f"Projection (not a measurement; 40 % MFU of an H100's 989 TFLOP/s bf16): a micro-batch of 8 x 8 kbp "
              f"takes {step_s:.3f} s, {bp / step_s:,.0f} bp/s per GPU. GPU-days: 2 B tokens "
              f"{2e9 * ref / (H100_BF16 * MFU) / 86400:.3f}; configs/pretrain/paper_hg38.yaml (100,000 steps x 256 x "
              f"8192 bp = 2.1e11 bp) {2.1e11 * ref / (H100_BF16 * MFU) / 86400:.1f}.")
    if "dnachunker" in mem:
        from dnachunker import DNAChunker
        states = 16 * parameters(DNAChunker(paper_config())) / 2**30  # mixed-precision Adam, unsharded (ZeRO's 16 bytes/param)
        per_sample, fixed = mem["dnachunker"]["sample"] / 1024, mem["dnachunker"]["fixed"] / 1024
        fits = {gb: int((gb - states - fixed) / per_sample) for gb in (80, 141)}
        print(f"Projection: largest micro-batch from the CPU live-tensor peak ({per_sample:.2f} GB per 8 kbp sample + "
              f"{fixed:.2f} GB fixed + {states:.2f} GB model states at 16 bytes/param): {fits[80]} on 80 GB, "
              f"{fits[141]} on 141 GB (paper_hg38.yaml asks for 8).")

if __name__ == "__main__":
    main()
