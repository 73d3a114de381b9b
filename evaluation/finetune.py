"""Fine-tuning and linear probing of a pretrained DNAChunker on sequence tasks.

Model: the backbone's final hidden states read by the task's probe (evaluation.probes: the mean
over the real bases by default) -> linear head, trained as the task's type says
(evaluation.task_types: cross-entropy over classes, or squared error on a value). `probe`: the
backbone is frozen (eval mode, no gradients) and its probed features are computed once; only the
head is trained. `finetune`: everything is trained (or, with `lora_rank`, LoRA adapters through
peft and the head); with `lrs`, each learning rate of the grid is trained in turn. For each seed
the train split is split again into train/valid (unless the benchmark has its own valid split),
the (learning rate, epoch) with the best valid score (the task's metric) is kept and recorded in
the seed's row, and the test split is scored with every metric of the task's type. `folds`: a
task whose source has no test split is scored by k-fold cross-validation of all its rows instead
of one held-out split.
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
from tqdm import tqdm

from dnachunker.masking import bert_mask
from dnachunker.model import DNAChunker
from dnachunker.tokenizer import batch_encode
from .baselines import score_baseline
from .metrics import all_metrics, score
from .predictions import Predictions
from .probes import ProbeSpec, fit_linear_head, probe
from .task_types import task_type
from .tasks import EvalDataError, Task


@dataclass
class FinetuneConfig:
    mode: str = "finetune"           # finetune | probe
    epochs: int = 3
    lr: float | None = None          # default: 1e-4 finetune, 1e-2 probe
    lrs: list[float] = field(default_factory=list)  # finetune: a grid; the (lr, epoch) best on valid is kept per seed
    lora_rank: int | None = None     # finetune: LoRA adapters of this rank (peft) instead of every weight
    batch_size: int = 32
    weight_decay: float = 0.01
    max_len: int | None = None       # truncate longer sequences
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    val_fraction: float = 0.1
    valid_split: str = "stratified"  # tasks.VALID_SCHEMES: how valid is held out where a benchmark has none
    max_train: int | None = None     # subsample the training pool, before each seed's valid split is held out
    max_test: int | None = None      # subsample the test split
    max_valid: int | None = None     # subsample the benchmark's own valid split
    # (both with a fixed seed: the same sequences for every model and every seed)
    metric: str = "mcc"              # evaluation.metrics.METRICS: picks the epoch on valid, headlines the summary
    folds: int | None = None         # k-fold cross-validation where the source has no test split
    species: str | None = None       # a model with a species embedding reads the sequences as this species
    probe: ProbeSpec = field(default_factory=ProbeSpec)  # evaluation.probes: states -> one vector per sequence
    # A fixed tokenization's stage-0 cuts: `plain`, taken on the sequence as it is (what inference
    # sees); `training`, taken as in pretraining, on a copy with BERT's masking applied (a fixed
    # seed), so that [MASK] breaks them, while the model reads the unmasked bases. Learned cuts: plain.
    cuts: str = "plain"


def load_backbone(model_dir: str | Path, species: str | None, device="cpu") -> DNAChunker:
    """The export, reading sequences as `species` where it embeds species (it must be one of them)."""
    model = DNAChunker.from_pretrained(model_dir, map_location=device)
    try:
        model.set_species(species)
    except ValueError as e:
        raise EvalDataError(f"{model_dir}: {e}") from None
    if why := model.needs_species():
        raise EvalDataError(f"{model_dir}: {why}, the task's (--species; species: in a suite)")
    return model


CUTS = ("plain", "training")


def pooled(model: DNAChunker, ids: torch.Tensor, valid: torch.Tensor, spec: ProbeSpec = ProbeSpec(),
           cuts: str = "plain") -> torch.Tensor:
    """(b, L) -> (b, f): the final hidden states read by the probe (the mean over real positions by
    default), under a fixed tokenization's `cuts` (FinetuneConfig.cuts)."""
    boundaries = None
    if cuts == "training" and model.tokenization.fixed:
        masked, _ = bert_mask(ids, valid, torch.Generator(device=ids.device).manual_seed(0))
        boundaries = model.tokenization.boundaries(masked, valid)
    return probe(spec)(model(ids, valid, boundaries=boundaries).hidden.float(), valid, spec)


def _batches(data, batch_size, max_len, shuffle_rng=None, dtype=torch.long):
    order = np.arange(len(data))
    if shuffle_rng is not None:
        shuffle_rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = [data[j] for j in order[i:i + batch_size]]
        b = batch_encode([s for s, _ in chunk], max_len=max_len)
        yield b.input_ids, b.valid, torch.tensor([y for _, y in chunk], dtype=dtype)


def _features(model, data, cfg, device, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats, ys = [], []
    with torch.no_grad(), tqdm(total=len(data), desc=desc, unit="seq", leave=False, dynamic_ncols=True) as bar:
        for ids, valid, y in _batches(data, cfg.batch_size, cfg.max_len):
            feats.append(pooled(model, ids.to(device), valid.to(device), cfg.probe, cfg.cuts).cpu())
            ys.append(y)
            bar.update(len(y))
    return torch.cat(feats), torch.cat(ys)


@torch.no_grad()
def _predict(model, head, data, cfg, device, tt) -> np.ndarray:
    """The task type's output: (n, classes) class probabilities, or (n,) values."""
    return tt.output(head(_features(model, data, cfg, device)[0].to(device))).cpu().numpy()


def run_seed(model_dir: str, task: Task, cfg: FinetuneConfig, seed: int, device="cpu",
             probe_cache: dict | None = None) -> tuple[dict[str, float], np.ndarray]:
    """One seed: its valid split, the head (and, fine-tuning, the backbone) trained, the test split
    scored -> (test metrics and the valid score, the task type's output on test)."""
    torch.manual_seed(seed)
    train, valid = task.split_valid(seed, cfg.val_fraction, cfg.valid_split)
    tt = task_type(task.type)
    if cfg.mode == "probe":
        model = load_backbone(model_dir, cfg.species, device)
        out, best = _probe(model, task, train, valid, cfg, seed, device, probe_cache, tt)
        return {**all_metrics([y for _, y in task.test], out, tt.metrics), f"valid_{cfg.metric}": best}, out
    if cfg.mode != "finetune":
        raise ValueError(f"mode must be finetune or probe, got {cfg.mode!r}")
    best = (-2.0, None, None)  # valid score, (lr, epoch), (model, head)
    for lr in cfg.lrs or [cfg.lr or 1e-4]:
        model, head = _finetunable(model_dir, task, cfg, seed, device, tt)
        for epoch, value in enumerate(_finetune(model, head, train, valid, cfg, lr, seed, device, tt), 1):
            if value > best[0]:
                best = (value, (lr, epoch), (copy.deepcopy(model), copy.deepcopy(head)))
    model, head = best[2]
    out = _predict(model, head, task.test, cfg, device, tt)
    return {**all_metrics([y for _, y in task.test], out, tt.metrics), f"valid_{cfg.metric}": best[0],
            "lr": best[1][0], "epoch": best[1][1]}, out


LORA_TARGETS = r".*\.(in_proj|out_proj|qkv|out|up|down)"  # the mixers and MLPs; not the routers, nor embedding and head


def _finetunable(model_dir, task, cfg, seed, device, tt) -> tuple[nn.Module, nn.Module]:
    """The backbone (LoRA adapters on its mixers and MLPs, through peft, with lora_rank) and a fresh
    head, both seeded by `seed`."""
    model = load_backbone(model_dir, cfg.species, device)
    torch.manual_seed(seed)
    head = nn.Linear(probe(cfg.probe).width(model.cfg.d_model[0], cfg.probe), tt.width(task.n_classes)).to(device)
    if cfg.lora_rank:
        from peft import LoraConfig, inject_adapter_in_model
        for p in model.parameters():
            p.requires_grad_(False)
        model = inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank,
                                                   target_modules=LORA_TARGETS, lora_dropout=0.0), model)
    return model, head


def _finetune(model, head, train, valid, cfg, lr: float, seed: int, device, tt):
    """Train for cfg.epochs (AdamW, one-cycle at `lr`, clipped gradients), yielding the valid score
    after each epoch (the caller keeps the best)."""
    rng = np.random.default_rng(seed)
    params = [p for p in [*model.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    for _ in range(cfg.epochs):
        model.train()
        for ids, v, y in _batches(train, cfg.batch_size, cfg.max_len, rng, tt.target):
            loss = tt.loss(head(pooled(model, ids.to(device), v.to(device), cfg.probe, cfg.cuts)), y.to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        yield score(cfg.metric, [y for _, y in valid], _predict(model, head, valid, cfg, device, tt))


def _probe(model, task, train, valid, cfg, seed, device, cache, tt) -> tuple[np.ndarray, float]:
    for p in model.parameters():
        p.requires_grad_(False)
    cache = cache if cache is not None else {}  # sequence -> probed features, shared by the seeds

    def feats(data, split):
        missing = list({s: (s, y) for s, y in data if s not in cache}.values())
        if missing:
            x, _ = _features(model, missing, cfg, device, desc=f"features ({split})")
            cache.update(zip((s for s, _ in missing), x))
        return torch.stack([cache[s] for s, _ in data]), torch.tensor([y for _, y in data], dtype=tt.target)
    (xtr, ytr), (xva, yva), (xte, _) = feats(train, "train"), feats(valid, "valid"), feats(task.test, "test")
    return fit_linear_head({"train": xtr, "valid": xva, "test": xte}, {"train": ytr, "valid": yva},
                           tt.width(task.n_classes), tt, cfg.metric, seed, cfg.epochs, cfg.lr or 1e-2,
                           cfg.batch_size, cfg.weight_decay, device)


def folds(task: Task, k: int | None) -> list[tuple[int | None, Task]]:
    """(fold, task) pairs: the task as it is; or, with k and a task whose test split was made here
    (Task.split_here), k folds of all its rows (fixed seed, stratified for classification), each
    the test set once and the rest its training data."""
    if not (k and task.split_here):
        return [(None, task)]
    rows = task.train + task.test
    order = np.random.default_rng(0).permutation(len(rows))
    if task.type == "classification":  # stratified: each class dealt round the folds
        order = sorted(order, key=lambda i: rows[i][1])
    fold_of = {int(i): n % k for n, i in enumerate(order)}
    return [(f, dataclasses.replace(task, train=[r for i, r in enumerate(rows) if fold_of[i] != f],
                                    test=[r for i, r in enumerate(rows) if fold_of[i] == f], split_here=False))
            for f in range(k)]


def _standardised(task: Task) -> Task:
    """Regression labels z-scored with the train split's mean and std (correlations unchanged)."""
    ys = np.array([y for _, y in task.train], dtype=np.float64)
    mu, sd = ys.mean(), ys.std() or 1.0
    z = lambda data: [(s, (y - mu) / sd) for s, y in data]  # noqa: E731
    return dataclasses.replace(task, train=z(task.train), valid=z(task.valid), test=z(task.test))


def evaluate(model, task: Task, cfg: FinetuneConfig, device="cpu") -> tuple[list[dict], dict, Predictions]:
    """model: an export directory, or a baseline (evaluation.baselines), scored on the same capped
    subsample and the same per-seed valid splits. -> (one row per seed (and fold), summary with
    mean and std over the rows, the per-example test outputs of every seed)."""
    def cap(data, k):
        return data if not k or len(data) <= k else [data[i] for i in sorted(
            np.random.default_rng(0).choice(len(data), k, replace=False))]
    tt = task_type(task.type)
    baseline = not isinstance(model, (str, Path))
    mode = model.name if baseline else cfg.mode
    rows, tested, sequences, cache = [], [], [], {}  # cache: a probe's features, shared by seeds and folds
    outputs = {seed: [] for seed in cfg.seeds}
    for fold, part in folds(task, cfg.folds):
        part = dataclasses.replace(part, train=cap(part.train, cfg.max_train), test=cap(part.test, cfg.max_test),
                                   valid=cap(part.valid, cfg.max_valid))
        sequences += [s for s, _ in part.test]
        part = _standardised(part) if tt.standardise else part
        tested += [y for _, y in part.test]
        for seed in tqdm(cfg.seeds, desc=f"{task.name} ({mode})" + (f" fold {fold}" if fold is not None else ""),
                         unit="seed", dynamic_ncols=True):
            r, out = (score_baseline(model, part, cfg, seed) if baseline
                      else run_seed(str(model), part, cfg, seed, device, cache))
            outputs[seed].append(out)
            rows.append({"task": task.name, "mode": mode, "seed": seed, **({"fold": fold} if fold is not None else {}),
                         **r})
    summary = {"task": task.name, "mode": mode, "type": task.type, "metric": cfg.metric, "seeds": len(cfg.seeds),
               "folds": cfg.folds if rows and "fold" in rows[0] else None}
    if "accuracy" in tt.metrics:
        summary["majority_accuracy"] = max(np.bincount(tested)) / len(tested)
    for k in tt.metrics:
        vals = [r[k] for r in rows]
        summary[k] = statistics.fmean(vals)
        summary[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    predictions = Predictions.collect(tested, cfg.seeds, [np.concatenate(outputs[s]) for s in cfg.seeds], sequences)
    return rows, summary, predictions
