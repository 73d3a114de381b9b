"""What one full run of each evaluation suite costs for one model: the base pairs its protocol puts
through the model, the model's throughput measured here, and a projection for one GPU.

    python -m bench.suite_cost [--model small | --export runs/x/export] [--suites gue ...] [key=value ...]

Base pairs, from the suite's data as configured (its caps applied; `key=value` overrides every
suite, e.g. data=... for the full download):
  probe      every distinct sequence forward once (features are cached across seeds and folds)
  finetune   per seed and fold: epochs x (train forward + backward, valid forward) + test forward
CPU time: those base pairs at the forward and training (forward + backward + AdamW) bp/s of the
model measured in this run, on 500-bp real chr20 windows in batches of 32 (the suites' default).
GPU projection: FLOPs per bp counted with torch.utils.flop_counter on the same batch (it does not
count CPU scaled_dot_product_attention: attention is added by hand, 4 L^2 d per layer forward and
twice that backward, L = the sequence's chunks at the last stage), at 40 % of an H100's 989
TFLOP/s dense bf16. A projection, labelled so: short sequences and small models seldom reach it.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import ROOT, real_window

SUITES = ["gue", "nt_benchmark", "genomic_benchmarks", "paper_ablation", "paper_columns", "paper_columns_finetune"]
H100_BF16, MFU = 989e12, 0.40


def suite_bp(suite) -> dict:
    """{'sequences', 'forward_bp', 'train_bp'} of one run of `suite` on one model."""
    from evaluation.finetune import folds
    from evaluation.formats import load_task
    seqs = fwd = train = 0
    for t in suite.tasks:
        task = load_task(t.format, t.path, task=t.nt_task, fasta=t.fasta or suite.fasta, type=t.type)
        parts = folds(task, suite.folds)
        bp = lambda data, cap=None: sum(len(s) for s, _ in data) * min(1.0, (cap or len(data)) / max(len(data), 1))  # noqa: E731
        rows = {s for _, p in parts for s, _ in p.train + p.valid + p.test}
        seqs += len(rows)
        if suite.mode == "probe":  # each sequence's features once, at most
            fwd += min(sum(len(s) for s in rows), sum(bp(p.train, suite.max_train) + bp(p.valid, suite.max_valid)
                                                      + bp(p.test, suite.max_test) for _, p in parts))
            continue
        for _, p in parts:
            tr = bp(p.train, suite.max_train)
            va = bp(p.valid, suite.max_valid) if p.valid else 0.1 * tr
            te = bp(p.test, suite.max_test)
            train += len(suite.seeds) * suite.epochs * (tr - (0 if p.valid else va))
            fwd += len(suite.seeds) * (suite.epochs * va + te)
    return {"sequences": seqs, "forward_bp": fwd, "train_bp": train}


def measure(model, batch: int = 32, length: int = 500, rounds: int = 3) -> dict:
    """Forward and training bp/s of `model` here, and its FLOPs per bp (attention by hand)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dnachunker.tokenizer import batch_encode
    window = real_window(length * batch)
    b = batch_encode([window[i * length:(i + 1) * length] for i in range(batch)])
    head = torch.nn.Linear(model.cfg.d_model[0], 2)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-4)
    y = torch.zeros(batch, dtype=torch.long)

    def forward():
        with torch.no_grad():
            return model(b.input_ids, b.valid)

    def step():
        loss = torch.nn.functional.cross_entropy(head(model(b.input_ids, b.valid).hidden.mean(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def best(fn):
        fn()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times), max(times) / min(times)
    bp = batch * length
    (f_s, f_spread), (t_s, t_spread) = best(forward), best(step)
    with FlopCounterMode(display=False) as fc:
        out = forward()
    fwd_flops = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        step()
    train_flops = fc.get_total_flops()
    chunks = out.stages[-1].boundary.sum(1).double()
    attention = 4 * float((chunks ** 2).sum()) * model.cfg.d_model[-1] * model.cfg.main_layers
    return {"params": sum(p.numel() for p in model.parameters()), "forward_bp_s": bp / f_s,
            "train_bp_s": bp / t_s, "spread": max(f_spread, t_spread),
            "forward_flop_bp": (fwd_flops + attention) / bp, "train_flop_bp": (train_flops + 3 * attention) / bp,
            "main_tokens_per_bp": float(chunks.sum()) / bp}


def main(argv=None, prog: str | None = None):
    from evaluation.suite import SuiteConfig
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    from dnachunker import DNAChunker, DNAChunkerConfig
    ap.add_argument("--model", default="small", help="configs/model/<name>.yaml, randomly initialised")
    ap.add_argument("--export", help="an export directory instead (its learned compression)")
    ap.add_argument("--batch", type=int, default=32, help="sequences per measured batch")
    ap.add_argument("--suites", nargs="+", default=SUITES, help="configs/eval/<name>.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of every suite")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    model = (DNAChunker.from_pretrained(a.export) if a.export
             else DNAChunker(DNAChunkerConfig.load(ROOT / "configs" / "model" / f"{a.model}.yaml")))
    m = measure(model, a.batch)
    print(f"{a.export or a.model + ' (random init)'}: {m['params'] / 1e6:.2f} M parameters; here "
          f"{m['forward_bp_s']:,.0f} bp/s forward, {m['train_bp_s']:,.0f} bp/s training (slowest / fastest of 3 "
          f"rounds: {m['spread']:.2f}); {m['forward_flop_bp'] / 1e6:.2f} / {m['train_flop_bp'] / 1e6:.2f} MFLOP per "
          f"bp forward / training at {m['main_tokens_per_bp']:.3f} main-network tokens per bp")
    target = float(np.prod(model.cfg.target_ratio))
    if not a.export and model.cfg.tokenization == "learned" and m["main_tokens_per_bp"] < 0.5 * target:
        print(f"note: an untrained router sends {m['main_tokens_per_bp']:.3f} of the base pairs to the main network, "
              f"a trained model about {target:.2f} (the target ratios' product): the FLOPs and times below are "
              f"low for a trained model; give --export a trained one, or see bench.paper_cost")
    rows = []
    for name in a.suites:
        suite = SuiteConfig.load(ROOT / "configs" / "eval" / f"{name}.yaml", a.overrides)
        c = suite_bp(suite)
        cpu_h = (c["forward_bp"] / m["forward_bp_s"] + c["train_bp"] / m["train_bp_s"]) / 3600
        gpu_s = (c["forward_bp"] * m["forward_flop_bp"] + c["train_bp"] * m["train_flop_bp"]) / (H100_BF16 * MFU)
        rows.append({"suite": name, "protocol": suite.protocol_name, "tasks": len(suite.tasks),
                     "sequences": c["sequences"], "forward Mbp": c["forward_bp"] / 1e6, "training Mbp": c["train_bp"] / 1e6,
                     "CPU hours here": cpu_h, "H100 minutes (projection, 40 % MFU)": gpu_s / 60})
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
