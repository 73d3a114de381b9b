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

import time
import types

import numpy as np
import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import in_fresh_process
from .model import ROOT, real_window

H100_BF16, MFU, TARGET = 989e12, 0.40, 8192
PAPER = ROOT / "configs" / "model" / "paper.yaml"


def _cfg(**overrides):
    from dnachunker import DNAChunkerConfig
    return DNAChunkerConfig.load(PAPER, *[f"{k}={v}" for k, v in overrides.items()])


def _every_second(router, x, valid):
    """The router's own computation, then cuts at every 2nd position (alpha = 0.5 exactly)."""
    from dnachunker.modules.routing import Router
    p, _ = Router.forward(router, x, valid)
    return p, (torch.arange(x.size(1), device=x.device) % 2 == 0)[None, :] & valid


def _ntv2(layers: int):
    from transformers import EsmConfig, EsmForMaskedLM
    return EsmForMaskedLM(EsmConfig(vocab_size=4107, hidden_size=672, num_hidden_layers=layers, num_attention_heads=12,
                                    intermediate_size=4 * 672, position_embedding_type="rotary",
                                    max_position_embeddings=2050, pad_token_id=1, mask_token_id=2,
                                    token_dropout=False, attn_implementation="sdpa"))


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _matching(build, target: int) -> int:
    """The depth whose parameter count is closest to target."""
    one, two = _params(build(1)), _params(build(2))
    return max(1, round((target - (2 * one - two)) / (two - one)))


def depth(name: str) -> int:
    """The model's full depth: the paper's 30 main layers, or the depth matching its parameters."""
    from dnachunker import DNAChunker

    from .baselines import SingleNucleotideMLM
    base = name.partition("+")[0]
    if base == "bimamba":
        return _matching(lambda n: SingleNucleotideMLM(_cfg(main_layers=n), "bimamba"), _params(DNAChunker(_cfg())))
    if base == "nt-v2":
        return _matching(_ntv2, _params(DNAChunker(_cfg())))
    return _cfg().main_layers


def build(name: str, layers: int | None = None):
    """name: a model, optionally '+<bench.model variant>'; layers: its depth (None: full) ->
    (model, step(seq, masked) -> (loss, attention tokens, attention width, attention layers))."""
    from dnachunker import DNAChunker
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode

    from .baselines import SingleNucleotideMLM
    from .model import VARIANTS
    torch.manual_seed(0)
    name, _, variant = name.partition("+")
    layers = layers or depth(name)
    settings = dict([VARIANTS[variant].split("=", 1)]) if variant else {}
    cfg = _cfg(max_len=TARGET, main_layers=layers, **settings)
    if name == "dnachunker":
        model = DNAChunker(cfg)
        for stage in model.stages:
            stage.router.forward = types.MethodType(_every_second, stage.router)
    elif name in ("transformer", "bimamba"):
        model = SingleNucleotideMLM(cfg, name)
    else:
        model = _ntv2(layers)

    def step(seq: str, masked: bool = True):
        b = batch_encode([seq])
        ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
        if not masked:
            ids = b.input_ids
        if name == "nt-v2":  # non-overlapping 6-mers (ids 5...), [MASK] where any base is masked
            codes = (b.input_ids[0, :len(seq) // 6 * 6] - 2).clamp(0, 3).view(-1, 6)
            tokens = 5 + (codes * 4 ** torch.arange(5, -1, -1)).sum(1)
            hit = (labels[0, :len(seq) // 6 * 6] != -100).view(-1, 6).any(1) if masked else torch.zeros_like(tokens, dtype=torch.bool)
            out = model(input_ids=torch.where(hit, 2, tokens)[None], labels=torch.where(hit, tokens, -100)[None])
            return out.loss, len(tokens), 672, model.config.num_hidden_layers
        if name == "dnachunker":
            out = model(ids, None, labels)
            return out.loss, int(out.stages[-1].boundary.sum()), cfg.d_model[-1], cfg.main_layers
        loss = model(ids, b.valid, labels)
        return loss, (len(seq) if name == "transformer" else 0), cfg.d_model[-1], cfg.main_layers
    return model, step


def count(name: str, lengths: list[int]) -> dict:
    """Training FLOPs (non-attention counted, attention by hand) and main tokens at each length."""
    from torch.utils.flop_counter import FlopCounterMode
    model, step = build(name)
    rows = []
    for T in lengths:
        for masked in ((True, False) if name == "dnachunker" else (True,)):
            with FlopCounterMode(display=False) as fc:
                loss, tokens, d, layers = step(real_window(T), masked)
                loss.backward()
            model.zero_grad(set_to_none=True)
            rows.append({"T": T, "masked": masked, "counted": fc.get_total_flops(), "tokens": tokens,
                         "attention": 12 * tokens ** 2 * d * layers})
    return {"params": _params(model), "rows": rows}


def peak(name: str, T: int, layers: int) -> dict:
    """MB of live tensors at the peak of one bf16-autocast training step (bench.memory's replay) of
    the model at `layers` depth, and its parameters."""
    from .memory import replay_peak
    model, step = build(name, layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    seq = real_window(T)

    def train():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = step(seq)[0]
        opt.zero_grad(set_to_none=False)  # gradients persist: what the step adds is the sample's
        loss.backward()
        opt.step()
    train()  # gradients and optimizer state exist before the measured step
    return {"MB": replay_peak(train, stacks=False)[0] / 2**20, "params": _params(model)}


def infer(names: list[str], T: int, rounds: int) -> dict[str, list[float]]:
    """Forward bp/s of each model, batch 8, alternating rounds."""
    built = {n: build(n) for n in names}
    seqs = [real_window(T * 8)[i * T:(i + 1) * T] for i in range(8)]
    speeds = {n: [] for n in names}
    for _ in range(rounds + 1):
        for n, (model, step) in built.items():
            model.eval()
            t = time.perf_counter()
            with torch.no_grad():
                for s in seqs:
                    step(s, masked=False)
            speeds[n].append(T * 8 / (time.perf_counter() - t))
    return {n: v[1:] for n, v in speeds.items()}  # the first round warms up


def forward_parts(T: int, batch: int, rounds: int) -> dict[str, float]:
    """Seconds of DNAChunker's forward (no masking, no gradients) by part, fastest of `rounds`:
    each stage's encoder, router, chunking (the rest of `down`), dechunking (`up` less its
    decoder: the upsampling and the p-gated scans), decoder; the main network; the rest
    (embedding, head)."""
    import functools
    model, _ = build("dnachunker")
    model.eval()
    spent: dict[str, float] = {}

    def timed(name, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            return out
        return run
    for s, stage in enumerate(model.stages):
        for part in ("encoder", "router", "decoder"):
            getattr(stage, part).forward = timed(f"stage {s} {part}", getattr(stage, part).forward)
        stage.down, stage.up = timed(f"stage {s} down", stage.down), timed(f"stage {s} up", stage.up)
    model.main.forward = timed("main network", model.main.forward)
    from dnachunker.tokenizer import batch_encode
    seq = real_window(T * batch)
    ids = batch_encode([seq[i * T:(i + 1) * T] for i in range(batch)]).input_ids
    best: dict[str, float] = {}
    for _ in range(rounds + 1):  # the first warms up
        spent.clear()
        t = time.perf_counter()
        with torch.no_grad():
            model(ids)
        spent["total"] = time.perf_counter() - t
        if not best or spent["total"] < best["total"]:
            best = dict(spent)
    out = {}
    for s in range(len(model.stages)):
        out[f"stage {s} encoder"] = best[f"stage {s} encoder"]
        out[f"stage {s} router"] = best[f"stage {s} router"]
        out[f"stage {s} chunking"] = best[f"stage {s} down"] - best[f"stage {s} encoder"] - best[f"stage {s} router"]
        out[f"stage {s} dechunking"] = best[f"stage {s} up"] - best[f"stage {s} decoder"]
        out[f"stage {s} decoder"] = best[f"stage {s} decoder"]
    out["main network"] = best["main network"]
    out["embedding, head"] = best["total"] - sum(best[f"stage {s} {w}"] for s in range(len(model.stages))
                                                 for w in ("down", "up")) - best["main network"]
    return {**out, "total": best["total"]}


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
            d_layers = pts[0]["attention"] / max(pts[0]["tokens"], 1) ** 2 / 12 if pts[0]["tokens"] else 0
            at8k = (a0 + b * TARGET + 12 * (ratio * TARGET) ** 2 * d_layers) / TARGET
            label = name if name != "dnachunker" else f"dnachunker ({'training' if masked else 'inference'} ratio)"
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
        states = 16 * _params(DNAChunker(_cfg())) / 2**30  # mixed-precision Adam, unsharded (ZeRO's 16 bytes/param)
        per_sample, fixed = mem["dnachunker"]["sample"] / 1024, mem["dnachunker"]["fixed"] / 1024
        fits = {gb: int((gb - states - fixed) / per_sample) for gb in (80, 141)}
        print(f"Projection: largest micro-batch from the CPU live-tensor peak ({per_sample:.2f} GB per 8 kbp sample + "
              f"{fixed:.2f} GB fixed + {states:.2f} GB model states at 16 bytes/param): {fits[80]} on 80 GB, "
              f"{fits[141]} on 141 GB (paper_hg38.yaml asks for 8).")

if __name__ == "__main__":
    main()
