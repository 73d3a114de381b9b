"""Training compute of a model on real windows, measured rather than projected: what a study's rows
cost, and what matching their compute takes.

`training_flops`: one forward + backward on one micro-batch as training draws it (the loader's BERT
masking; a fixed tokenization's cuts taken on the masked bases, as in training) under
torch.utils.flop_counter. FlopCounterMode counts matrix products and convolutions (the reference
scans are matrix products on the CPU), not CPU scaled_dot_product_attention, so attention is added
by hand: 12 L^2 d per main-network layer and sequence (QK^T and AV, 4 L^2 d forward, twice that
backward), L the chunks the sequence hands the main network. Elementwise operations are not
counted by either.
"""
from __future__ import annotations


from data_pipeline.loader import PretrainLoader


def training_flops(model, batch: dict) -> dict[str, float]:
    """batch: a PretrainLoader micro-batch -> {flops_per_bp, attention_share, main_positions_per_bp}."""
    from torch.utils.flop_counter import FlopCounterMode
    was = model.training
    model.train()
    with FlopCounterMode(display=False) as fc:
        out = model(batch["input_ids"], batch["valid"], batch["labels"], batch["weight"], batch.get("boundaries"),
                    batch.get("species"))
        out.loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was)
    chunks = out.stages[-1].boundary.sum(1).double()  # (b,) main-network positions per sequence
    cfg = model.cfg
    attention = 12 * float((chunks ** 2).sum()) * cfg.d_model[-1] * cfg.main_layers
    bp = float(batch["valid"].sum())
    total = fc.get_total_flops() + attention
    return {"flops_per_bp": total / bp, "attention_share": attention / total,
            "main_positions_per_bp": float(chunks.sum()) / bp}


def measure(model, root: str, micro_batch_size: int, seed: int = 0, split: str = "valid") -> dict[str, float]:
    """training_flops on the first micro-batch of a shard split (masked with `seed`)."""
    loader = PretrainLoader(root, split, micro_batch_size, seed=seed, train=False, tokenization=model.tokenization)
    return training_flops(model, next(iter(loader)))


def at_init(cfg) -> dict[str, float]:
    """training_flops of a pretraining config's model as pretraining starts it (its seed; a fitted
    tokenization fitted on the train split into out_dir, where pretraining then finds it)."""
    import dataclasses
    from pathlib import Path

    from data_pipeline.fitting import fit_tokenization
    from dnachunker import tokenization

    from .build import fitted_tokenization, init_model
    if tokenization.build(cfg.model).file is not None and cfg.tokenization_from is None:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if not (out / tokenization.build(cfg.model).file).is_file():
            fit_tokenization(cfg.model, cfg.data.root, out)
        cfg = dataclasses.replace(cfg, tokenization_from=str(out))
    model = init_model(cfg)
    model.tokenization = fitted_tokenization(cfg)
    return measure(model, cfg.data.root, cfg.data.micro_batch_size, seed=cfg.seed)
