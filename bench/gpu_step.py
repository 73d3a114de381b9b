"""A pretraining step as a GPU node runs it: the pretraining config's model under its DeepSpeed
config (ZeRO stage, precision, AdamW), micro-batch --batch of --length bp real chr20 windows with
BERT masking, on the default device. Prints peak memory (max_memory_allocated on CUDA, peak RSS on
CPU), step time, tokens/s and MFU.

    python -m bench.gpu_step [--config configs/pretrain/paper_hg38.yaml] [--batch 8] [--length 8192]
                             [--steps 5] [--peak-tflops 989] [key=value ...]

FLOPs: torch.utils.flop_counter sees neither the Triton scans nor the flash-attn custom op, so a
step's FLOPs are counted once on the PyTorch paths (DNACHUNKER_KERNELS=torch: the scans are matrix
products there), on one window, with attention added by hand (train.flops), and multiplied by the
batch; the step is then timed on whatever kernels the device has (all of them on a GPU: training
refuses to run without). MFU = those FLOPs / step time / peak.
"""
from __future__ import annotations

import os
import resource
import time

import torch

from dnachunker.cli import parser

from .model import ROOT


def _batch(length: int, n: int, device) -> dict:
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import N, decode
    from .model import CHR20
    _, codes, soft = next(iter(read_fasta(CHR20)))
    seqs, start = [], 5_000_000
    while len(seqs) < n:
        if not (codes[start:start + length] == N).any():
            seqs.append(decode(codes[start:start + length], soft[start:start + length]))
        start += length
    b = batch_encode(seqs)
    ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
    return {k: v.to(device) for k, v in {"input_ids": ids, "valid": b.valid, "labels": labels,
                                         "weight": b.weight()}.items()}


def counted_flops(cfg, length: int, device) -> float:
    """Training FLOPs of one window on the PyTorch paths (see the module docstring)."""
    from train.flops import training_flops
    from train.build import init_model
    saved = os.environ.get("DNACHUNKER_KERNELS")
    os.environ["DNACHUNKER_KERNELS"] = "torch"
    try:
        model = init_model(cfg).to(device)
        return training_flops(model, _batch(length, 1, device))["flops_per_bp"] * length
    finally:
        os.environ.pop("DNACHUNKER_KERNELS") if saved is None else os.environ.update(DNACHUNKER_KERNELS=saved)


def main(argv=None, prog: str | None = None):
    ap = parser(prog or "python -m bench.gpu_step", __doc__)
    ap.add_argument("--config", default=str(ROOT / "configs" / "pretrain" / "paper_hg38.yaml"),
                    help="the pretraining config: its model, precision, ZeRO stage and optimizer")
    ap.add_argument("--batch", type=int, default=8, help="the micro-batch, in windows")
    ap.add_argument("--length", type=int, default=8192, help="the window length, bp")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak at this precision")
    ap.add_argument("overrides", nargs="*", help="pretraining config overrides (precision=bf16-weights, zero_stage=1)")
    a = ap.parse_args(argv)
    import deepspeed

    from train import distributed
    from train.config import load_config
    from train.build import init_model
    from train.optim import deepspeed_config, param_groups
    cfg = load_config(a.config, [*a.overrides, f"data.micro_batch_size={a.batch}", "grad_accum=1",
                                 "global_batch_size=null", f"model.max_len={max(a.length, 1024)}"])
    d = distributed.setup()
    flops = counted_flops(cfg, a.length, d.device) * a.batch
    model = init_model(cfg).to(d.device)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=param_groups(model, cfg.optim.weight_decay),
                                      config=deepspeed_config(cfg, load_universal=False))
    batch = _batch(a.length, a.batch, d.device)
    cuda = d.device.type == "cuda"

    def step():
        out = engine(batch["input_ids"], batch["valid"], batch["labels"], batch["weight"])
        engine.backward(out.loss)
        engine.step()
        return out.loss
    step()  # warm-up: autotuning, allocator
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step().detach()
    if cuda:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    peak = (torch.cuda.max_memory_allocated() / 2**30 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(f"| config | precision | ZeRO | batch x length | step s | tokens/s | peak GiB ({'allocated' if cuda else 'RSS'}) "
          f"| counted GFLOP / step | MFU |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {os.path.basename(a.config)} | {cfg.precision} | {cfg.zero_stage} | {a.batch} x {a.length} | {dt:.3f} | "
          f"{a.batch * a.length / dt:,.0f} | {peak:.2f} | {flops / 1e9:,.1f} | "
          + (f"{flops / dt / (a.peak_tflops * 1e12):.1%}" if a.peak_tflops else "–") + " |")
    print(f"final loss {float(loss):.3f} (finite: {bool(torch.isfinite(loss))})")
    distributed.teardown()
    return 0 if torch.isfinite(loss) else 1


if __name__ == "__main__":
    raise SystemExit(main())
