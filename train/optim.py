"""The optimizer side of a run: AdamW's parameter groups, the learning-rate schedule, the DeepSpeed
config, the micro-batches per step, and the config's settings over a restored optimizer."""
from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .distributed import SetupError


def lr_lambda(cfg: TrainConfig):
    o = cfg.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        progress = min(1.0, (step - o.warmup_steps) / max(1, (o.decay_steps or cfg.max_steps) - o.warmup_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices; no decay on norms, biases and other vectors (A_log, D, dt_bias)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def deepspeed_config(cfg: TrainConfig, load_universal: bool) -> dict:
    o = cfg.optim
    return {
        "train_micro_batch_size_per_gpu": cfg.data.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        # bf16: the module keeps fp32 parameters (the SSM's A_log, dt_bias and D, the norms and the
        # routers' upcast projections stay fp32) and DeepSpeed runs its forward under bf16
        # autocast, reducing Linear and Conv gradients in bf16. bf16-weights: DeepSpeed's bf16 mode,
        # every parameter in bf16 and fp32 master copies in the optimizer: 2 bytes less per
        # parameter (0.35 GB at 173 M), the SSM parameters rounded to 8 bits of mantissa.
        # Either way fp32 gradient accumulation; the ZeRO optimizers skip a step whose gradient
        # norm is not finite (tested for stages 2 and 3).
        "torch_autocast": {"enabled": cfg.precision == "bf16", "dtype": "bfloat16"},
        "bf16": {"enabled": cfg.precision == "bf16-weights", "check_grad_overflow": True},
        "data_types": {"grad_accum_dtype": "fp32"},
        "optimizer": {"type": "AdamW", "params": {"lr": o.lr, "betas": list(o.betas), "eps": o.eps,
                                                  "weight_decay": o.weight_decay, "torch_adam": True}},
        "checkpoint": {"load_universal": load_universal},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def grad_accum(cfg: TrainConfig, world: int) -> int:
    """Micro-batches per optimizer step: `grad_accum`, or derived from `global_batch_size` so that
    the global batch stays the same whatever the number of nodes and ranks."""
    if cfg.global_batch_size is None:
        return cfg.grad_accum
    per_pass = world * cfg.data.micro_batch_size
    if cfg.global_batch_size % per_pass:
        raise SetupError(f"global_batch_size={cfg.global_batch_size} is not a multiple of ranks x "
                         f"data.micro_batch_size = {world} x {cfg.data.micro_batch_size} = {per_pass}")
    return cfg.global_batch_size // per_pass


def apply_optim(engine, cfg: TrainConfig) -> None:
    """The config's optimizer settings over those a checkpoint restored: the same values, unless
    checkpoint.allow_changes let them differ, and then the new ones are what trains (the learning
    rate's base through the schedule, AdamW's betas, eps and weight decay)."""
    o, sched = cfg.optim, engine.lr_scheduler
    sched.base_lrs = [o.lr] * len(sched.base_lrs)
    for i, group in enumerate(engine.optimizer.param_groups):  # param_groups: decay first, then the rest
        group.update(betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay if i == 0 else 0.0,
                     lr=o.lr * sched.lr_lambdas[0](sched.last_epoch))
