"""One real training step of the paper's model (configs/model/paper.yaml) at its full length on
this machine: to debug the paper config on a laptop before a cluster sees it.

    python -m bench.paper_step [--length 8192] [--checkpointing none|main|all] [--recompute true|false]
                               [--precision fp32|bf16] [--steps 1]

One micro-batch of one real chr20 window (the first N-free one from 5 Mbp), BERT-masked, through
forward, backward and an AdamW update, in a fresh process: wall time per step, the increase of
peak resident memory over the built model (what the step adds: activations, gradients, optimizer
state, the CPU allocator's slack), the chunks the main network saw, and the step's FLOPs
(train.flops: matrix products counted by torch.utils.flop_counter, attention added by hand, which
the counter does not see on CPU), counted on a separate step after the timed ones. The router is
the untrained model's: mask protection's forced boundaries are most of its cuts, which is what a
first step on a cluster sees too.
"""
from __future__ import annotations

import time

import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import _rss_kb, in_fresh_process
from .model import ROOT, real_window


def step(length: int, checkpointing: str, recompute: bool, precision: str, steps: int) -> dict:
    import resource

    from dnachunker import DNAChunker, DNAChunkerConfig
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    from train.flops import training_flops
    torch.manual_seed(0)
    cfg = DNAChunkerConfig.load(ROOT / "configs" / "model" / "paper.yaml", f"max_len={length}",
                                f"activation_checkpointing={checkpointing}", f"mamba.recompute={recompute}")
    model = DNAChunker(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = batch_encode([real_window(length)])
    ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "valid": b.valid, "labels": labels, "weight": None}
    before = _rss_kb()
    seconds = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(ids, b.valid, labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    flops = training_flops(model, batch)
    return {"params": sum(p.numel() for p in model.parameters()), "seconds": min(seconds),
            "peak_GB": peak / 2**20, "loss": out.loss.item(), "flops": flops["flops_per_bp"] * length,
            "attention_share": flops["attention_share"], "main_positions_per_bp": flops["main_positions_per_bp"]}


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--length", type=int, default=8192, help="window length (bp)")
    ap.add_argument("--checkpointing", default="none", choices=["none", "main", "all"],
                    help="model.activation_checkpointing")
    ap.add_argument("--recompute", default="true", choices=["true", "false"], help="model.mamba.recompute")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: CPU autocast")
    ap.add_argument("--steps", type=int, default=1, help="timed steps (the fastest is reported)")
    a = ap.parse_args(argv)
    print(f"one paper-config step at {a.length} bp (activation_checkpointing={a.checkpointing}, "
          f"mamba.recompute={a.recompute}, {a.precision}) in a fresh process ...", flush=True)
    r = in_fresh_process(step, a.length, a.checkpointing, a.recompute == "true", a.precision, a.steps)
    if "error" in r:
        raise SystemExit(f"the step failed: {r['error']}")
    print(markdown_table([{"params (M)": r["params"] / 1e6, "length": a.length, "checkpointing": a.checkpointing,
                           "recompute": a.recompute, "precision": a.precision, "step s": r["seconds"],
                           "peak RSS added (GB)": r["peak_GB"], "training TFLOP per step": r["flops"] / 1e12,
                           "attention share": r["attention_share"],
                           "main positions / bp": r["main_positions_per_bp"], "loss": r["loss"]}]))


if __name__ == "__main__":
    main()
