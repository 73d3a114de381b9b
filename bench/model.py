"""Training-step cost: DNAChunker vs single-nucleotide Transformer and BiMamba baselines of the
same depth and width (its main network's), on real chr20 windows.

    python -m bench.model [--sizes tiny mid paper] [--lengths 1024 4096 8192] [--device cpu|cuda]
                          [--precision fp32|bf16] [--peak-tflops 989]   # device peak, to report MFU
                          [--rounds 3]   # repeat every point round-robin; fastest round kept

One step = forward + backward + AdamW update, batch 1, BERT masking. A model's "+variant" is a
setting (VARIANTS: activation_checkpointing all or main, mamba.recompute off, compile;
compile_s = first step minus a steady one); each variant is compared
with DNAChunker's same variant. Peak memory is the increase of
peak RSS (CPU) or of max allocated memory (CUDA) over the warm-up. Ratios are baseline /
DNAChunker in this run; cost exponents come from a log-log fit over the lengths.
"""
from __future__ import annotations

from pathlib import Path

import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import fit_exponent, isolated

ROOT = Path(__file__).resolve().parent.parent
CHR20 = ROOT.parent / "shared" / "data" / "hg19_chr20_softmasked" / "chr20.hg19.softmasked.fa.gz"
MODELS = ("dnachunker", "transformer", "bimamba", "dnachunker+ckpt", "transformer+ckpt")
# "+ckpt": every block recomputed in backward; "+mainckpt": the main network's blocks only; "+kept":
# each BiMamba direction keeps its intermediates instead of recomputing them; "+compile":
# torch.compile of the BiMamba mixers / Transformer blocks (the first step compiles: compile_s)
VARIANTS = {"ckpt": "activation_checkpointing=all", "mainckpt": "activation_checkpointing=main",
            "kept": "mamba.recompute=false", "compile": "compile=true"}
SIZES = {  # model config file + overrides
    "tiny": ("tiny", []),
    "mid": ("tiny", ["d_model=[128,192,256]", "main_layers=4", "n_heads=4", "mamba.headdim=32", "mamba.d_state=32"]),
    "paper": ("paper", []),
}


def real_window(length: int) -> str:
    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import N, decode
    _, codes, soft = next(iter(read_fasta(CHR20)))
    start = 5_000_000
    while (codes[start:start + length] == N).any():
        start += length
    return decode(codes[start:start + length], soft[start:start + length])


def _setup(model_name: str, size: str, seq: str, device: str, precision: str = "fp32"):
    from dnachunker import DNAChunker, DNAChunkerConfig
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    from .baselines import SingleNucleotideMLM

    torch.manual_seed(0)
    base, _, variant = model_name.partition("+")
    name, overrides = SIZES[size]
    cfg = DNAChunkerConfig.load(ROOT / "configs" / "model" / f"{name}.yaml", *overrides, f"max_len={len(seq)}",
                                *([VARIANTS[variant]] if variant else []))
    model = (DNAChunker(cfg) if base == "dnachunker" else SingleNucleotideMLM(cfg, base)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = batch_encode([seq])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    ids, valid, labels = ids.to(device), batch.valid.to(device), labels.to(device)
    extra = {"params": sum(p.numel() for p in model.parameters())}

    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            out = model(ids, valid, labels)
        loss = out if torch.is_tensor(out) else out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if base == "dnachunker":
            extra.update({f"compression_{s}": st.compression.item() for s, st in enumerate(out.stages)})
    step.extra = extra

    def flops() -> float:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            step()
        return fc.get_total_flops()
    step.flops = flops
    return step, 2


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mid"], choices=list(SIZES), help="model sizes")
    ap.add_argument("--models", nargs="+", default=list(MODELS),
                    choices=[*MODELS[:3], *(f"{m}+{v}" for m in MODELS[:3] for v in VARIANTS)],
                    help="models and variants")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192], help="sequence lengths (bp)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak at that precision, for MFU")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every point this many times, round-robin over all points; step_s is the "
                         "fastest round, spread = slowest / fastest (machine noise), peak_MB the highest")
    a = ap.parse_args(argv)
    windows = {L: real_window(L) for L in a.lengths}
    points = [(size, name, L) for size in a.sizes for name in a.models for L in a.lengths]
    runs: dict[tuple, list[dict]] = {pt: [] for pt in points}
    for k in range(a.rounds):  # round-robin, so that a slow spell of the machine hits every model
        for size, name, L in points:
            r = isolated(_setup, name, size, windows[L], a.device, a.precision)
            if "error" in r:
                print(f"{size} {name} {L}: {r['error']}", flush=True)
                continue
            runs[size, name, L].append(r)
            print(f"round {k + 1}/{a.rounds} {size} {name} {L}: {r['seconds']:.3f}s {r['peak_mb']:.0f}MB", flush=True)
    rows, fits = [], []
    for size in a.sizes:
        for name in a.models:
            series = []
            for L in a.lengths:
                measured = runs[size, name, L]
                if not measured:
                    continue
                r = min(measured, key=lambda r: r["seconds"])
                seconds, peak = r["seconds"], max(x["peak_mb"] for x in measured)
                row = {"size": size, "model": name, "length": L, "params": r["params"], "step_s": seconds,
                       **({"spread": max(x["seconds"] for x in measured) / seconds} if a.rounds > 1 else {}),
                       **({"compile_s": r["first_seconds"] - seconds} if name.endswith("+compile") else {}),
                       "bp_per_s": L / seconds, "peak_MB": peak,
                       "comp_0": r.get("compression_0", 1.0), "comp_1": r.get("compression_1", 1.0)}
                if "gflop" in r:
                    row["GFLOP/s"] = r["gflop"] / seconds
                    if a.peak_tflops:
                        row["MFU"] = row["GFLOP/s"] / (a.peak_tflops * 1e3)
                rows.append(row)
                series.append((L, seconds, peak))
            if len(series) > 1:
                fits.append({"size": size, "model": name,
                             "time_exponent": fit_exponent([s[0] for s in series], [s[1] for s in series]),
                             "memory_exponent": fit_exponent([s[0] for s in series], [max(s[2], 1e-3) for s in series])})
    for r in rows:  # ratios against DNAChunker of the same size, length and variant
        variant = r["model"].partition("+")[2]
        ref = next((x for x in rows if x["model"] == "dnachunker" + ("+" + variant if variant else "")
                    and x["size"] == r["size"] and x["length"] == r["length"]), r)
        r["time_vs_dnachunker"] = r["step_s"] / ref["step_s"]
        r["mem_vs_dnachunker"] = r["peak_MB"] / max(ref["peak_MB"], 1e-3)
    print(markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))))
    print()
    print(markdown_table(fits, ["size", "model", "time_exponent", "memory_exponent"]))


if __name__ == "__main__":
    main()
