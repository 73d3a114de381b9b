"""Fine-tuning and linear probing of a pretrained DNAChunker on sequence classification.

Classifier: mean of the backbone's final hidden states over the real bases -> linear head.
`probe`: the backbone is frozen (eval mode, no gradients) and its pooled features are computed
once; only the head is trained. `finetune`: everything is trained. For each seed the train split
is split again into train/valid (unless the benchmark has its own valid split), the epoch with
the best valid MCC is kept, and the test split is scored with MCC, accuracy and macro F1.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from dnachunker.model import DNAChunker
from dnachunker.tokenizer import batch_encode
from .baselines import score_baseline
from .metrics import METRICS, all_metrics
from .tasks import Task


@dataclass
class FinetuneConfig:
    mode: str = "finetune"           # finetune | probe
    epochs: int = 3
    lr: float | None = None          # default: 1e-4 finetune, 1e-2 probe
    batch_size: int = 32
    weight_decay: float = 0.01
    max_len: int | None = None       # truncate longer sequences
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    val_fraction: float = 0.1
    max_train: int | None = None     # subsample the training pool, before each seed's valid split is held out
    max_test: int | None = None      # subsample the test split
    # (both with a fixed seed: the same sequences for every model and every seed)
    metric: str = "mcc"              # evaluation.metrics.METRICS: picks the epoch on valid, headlines the summary


def pooled(model: DNAChunker, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(b, L) -> (b, d) mean of final hidden states over real positions."""
    h = model(ids, valid).hidden.float()
    v = valid.unsqueeze(-1).float()
    return (h * v).sum(1) / v.sum(1)


def _batches(data, batch_size, max_len, shuffle_rng=None):
    order = np.arange(len(data))
    if shuffle_rng is not None:
        shuffle_rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = [data[j] for j in order[i:i + batch_size]]
        b = batch_encode([s for s, _ in chunk], max_len=max_len)
        yield b.input_ids, b.valid, torch.tensor([y for _, y in chunk])


def _features(model, data, cfg, device, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats, ys = [], []
    with torch.no_grad(), tqdm(total=len(data), desc=desc, unit="seq", leave=False, dynamic_ncols=True) as bar:
        for ids, valid, y in _batches(data, cfg.batch_size, cfg.max_len):
            feats.append(pooled(model, ids.to(device), valid.to(device)).cpu())
            ys.append(y)
            bar.update(len(y))
    return torch.cat(feats), torch.cat(ys)


@torch.no_grad()
def _predict(model, head, data, cfg, device) -> np.ndarray:
    """(n, classes) class probabilities."""
    return head(_features(model, data, cfg, device)[0].to(device)).softmax(-1).cpu().numpy()


def run_seed(model_dir: str, task: Task, cfg: FinetuneConfig, seed: int, device="cpu",
             probe_cache: dict | None = None) -> dict[str, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train, valid = task.split_valid(seed, cfg.val_fraction)
    n = task.n_classes
    model = DNAChunker.from_pretrained(model_dir, map_location=device)
    head = nn.Linear(model.cfg.d_model[0], n).to(device)
    if cfg.mode == "probe":
        return _probe(model, head, task, train, valid, cfg, seed, device, probe_cache)
    if cfg.mode != "finetune":
        raise ValueError(f"mode must be finetune or probe, got {cfg.mode!r}")
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr or 1e-4, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr or 1e-4, total_steps=max(steps, 1),
                                                pct_start=0.1)
    best, best_state = -2.0, None
    for _ in range(cfg.epochs):
        model.train()
        for ids, v, y in _batches(train, cfg.batch_size, cfg.max_len, rng):
            loss = F.cross_entropy(head(pooled(model, ids.to(device), v.to(device))), y.to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        score = all_metrics([y for _, y in valid], _predict(model, head, valid, cfg, device))[cfg.metric]
        if score > best:
            best, best_state = score, (copy.deepcopy(model.state_dict()), copy.deepcopy(head.state_dict()))
    model.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    test = all_metrics([y for _, y in task.test], _predict(model, head, task.test, cfg, device))
    return {**test, f"valid_{cfg.metric}": best}


def _probe(model, head, task, train, valid, cfg, seed, device, cache):
    for p in model.parameters():
        p.requires_grad_(False)
    cache = cache if cache is not None else {}  # sequence -> pooled features, shared by the seeds

    def feats(data, split):
        missing = list({s: (s, y) for s, y in data if s not in cache}.values())
        if missing:
            x, _ = _features(model, missing, cfg, device, desc=f"features ({split})")
            cache.update(zip((s for s, _ in missing), x))
        return torch.stack([cache[s] for s, _ in data]), torch.tensor([y for _, y in data])
    xtr, ytr = feats(train, "train")
    xva, yva = feats(valid, "valid")
    xte, yte = feats(task.test, "test")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    norm = lambda x: ((x - mu) / sd).to(device)  # noqa: E731
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr or 1e-2, weight_decay=cfg.weight_decay)
    best, best_state = -2.0, None
    g = torch.Generator().manual_seed(seed)
    for _ in range(max(cfg.epochs, 1) * 20):  # a linear head on fixed features: many cheap epochs
        for idx in torch.randperm(len(xtr), generator=g).split(cfg.batch_size):
            loss = F.cross_entropy(head(norm(xtr[idx])), ytr[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            score = all_metrics(yva.numpy(), head(norm(xva)).softmax(-1).cpu().numpy())[cfg.metric]
        if score > best:
            best, best_state = score, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    with torch.no_grad():
        probs = head(norm(xte)).softmax(-1).cpu().numpy()
    return {**all_metrics(yte.numpy(), probs), f"valid_{cfg.metric}": best}


def evaluate(model, task: Task, cfg: FinetuneConfig, device="cpu") -> tuple[list[dict], dict]:
    """model: an export directory, or a baseline (evaluation.baselines), scored on the same capped
    subsample and the same per-seed valid splits. -> (one row per seed, summary with mean and std)."""
    def cap(data, k):
        return data if not k or len(data) <= k else [data[i] for i in sorted(
            np.random.default_rng(0).choice(len(data), k, replace=False))]
    task = dataclasses.replace(task, train=cap(task.train, cfg.max_train), test=cap(task.test, cfg.max_test))
    baseline = not isinstance(model, (str, Path))
    mode = model.name if baseline else cfg.mode
    rows, cache = [], {}
    for seed in tqdm(cfg.seeds, desc=f"{task.name} ({mode})", unit="seed", dynamic_ncols=True):
        r = (score_baseline(model, task, cfg.val_fraction, seed, cfg.metric) if baseline
             else run_seed(str(model), task, cfg, seed, device, cache))
        rows.append({"task": task.name, "mode": mode, "seed": seed, **r})
    majority = max(np.bincount([y for _, y in task.test])) / len(task.test)
    summary = {"task": task.name, "mode": mode, "metric": cfg.metric, "seeds": len(rows), "majority_accuracy": majority}
    for k in METRICS:
        vals = [r[k] for r in rows]
        summary[k] = statistics.fmean(vals)
        summary[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return rows, summary
