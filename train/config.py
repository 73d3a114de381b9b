"""Pretraining configuration: one dataclass with the model as a section, loaded once (YAML plus
key=value overrides, dnachunker.configlib.load_structured) and recorded whole: <out_dir>/config.yaml,
every checkpoint, the MLflow params."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from dnachunker import tokenization
from dnachunker.config import DNAChunkerConfig
from dnachunker.configlib import ConfigError, flatten, invalid, load_structured, out_of_range, to_dict


@dataclass
class DataConfig:
    root: str = MISSING              # a shard set made by `python -m data_pipeline`
    micro_batch_size: int = 8        # per rank
    num_workers: int = 2
    seed: int = 0
    rc_augment: bool = True
    mask_prob: float = 0.15
    repeat_weight: float = 0.1       # MLM loss weight of soft-masked (repeat) bases; others weigh 1


@dataclass
class OptimConfig:
    lr: float = 8e-4
    min_lr_ratio: float = 0.1        # cosine decays to lr * min_lr_ratio
    decay_steps: int | None = None   # steps the cosine spans (default max_steps): a run stopped before
                                     # them follows a longer run's schedule (the budgets of a scaling study)
    warmup_steps: int = 1000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1        # on every matrix (embeddings included); not on norms, biases, A_log, D, dt_bias
    grad_clip: float = 1.0


@dataclass
class CheckpointConfig:
    every: int = 1000                # steps between checkpoints (also saved on a stop signal and at the end)
    keep: int = 3                    # retention: the newest K checkpoints by write order
    resume: str = "auto"             # auto | none | <path to a checkpoint directory> (older: a rollback)
    # resume although what is trained differs from the checkpoint (the model section, data, optimizer,
    # precision, global batch: train.config.training_changes); the changes are recorded
    allow_changes: bool = False


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None  # default: sqlite:///<out_dir>/mlflow.db
    experiment: str = "dnachunker-pretrain"
    run_name: str | None = None
    parent_run_id: str | None = None # set by studies.sweep: this run becomes a child run
    log_every: int = 10
    retries: int = 3                 # tries of each MLflow call before tracking is switched off for the run
    retry_backoff_s: float = 1.0     # wait before the second try; doubles each time


PRECISIONS = ("bf16", "bf16-weights", "fp32")


@dataclass
class TrainConfig:
    out_dir: str = MISSING
    # the model: a section (model.target_ratio=[0.3,0.5] on the command line), or the path of a
    # model YAML (model=configs/model/tiny.yaml), read once at load; defaults: the paper's model
    model: DNAChunkerConfig = field(default_factory=DNAChunkerConfig)
    # a tokenization that is fitted (model.tokenization=bpe): a directory holding it fitted (another
    # run's out_dir or export); default: <out_dir>, where it is fitted on data.root's train split at
    # the first start (resolved and recorded in config.yaml; exported with the weights)
    tokenization_from: str | None = None
    # warm start from an export (its model.safetensors and recorded model config, which replaces the
    # model section; runtime keys stay yours): fresh optimizer, step 0. Applies when no checkpoint
    # is resumed. Safe with weights you did not write: safetensors holds no code, unlike a checkpoint
    init_from: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    max_steps: int = 10000
    # steps (< max_steps) at which the weights are also exported, to <out_dir>/exports/step<N>/ with
    # a summary.json (tokens seen, validation): the checkpoints of a token-scaling study
    export_steps: list[int] = field(default_factory=list)
    grad_accum: int = 1              # micro-batches per optimizer step (derived when global_batch_size is set)
    global_batch_size: int | None = None  # windows per optimizer step, fixed whatever the number of ranks
    zero_stage: int = 2
    # bf16: fp32 parameters, bf16 autocast (as Mamba and H-Net train); bf16-weights: DeepSpeed's
    # bf16 mode, every parameter cast to bf16 with fp32 master copies in the optimizer; fp32
    precision: str = "bf16"
    val_every: int = 500
    val_batches: int = 20
    max_nonfinite: int = 5           # stop after this many non-finite steps in a row
    max_stops_without_progress: int = 3  # refuse to start after this many stops in a row with no step done
    seed: int = 0                    # model initialisation

    def validate(self) -> "TrainConfig":
        problems = out_of_range(self, {
            "data.micro_batch_size": ">=1", "data.num_workers": ">=0", "data.mask_prob": "(0,1)",
            "data.repeat_weight": ">=0", "optim.lr": ">0", "optim.min_lr_ratio": "[0,1]", "optim.warmup_steps": ">=0",
            "optim.decay_steps": ">=1",
            "optim.betas": "[0,1)", "optim.eps": ">0", "optim.weight_decay": ">=0", "optim.grad_clip": ">=0",
            "checkpoint.every": ">=1", "checkpoint.keep": ">=1", "tracking.log_every": ">=1",
            "tracking.retries": ">=1", "tracking.retry_backoff_s": ">=0", "max_steps": ">=1", "grad_accum": ">=1",
            "global_batch_size": ">=1", "zero_stage": "[1,3]", "val_every": ">=0", "val_batches": ">=1",
            "max_nonfinite": ">=1", "max_stops_without_progress": ">=1"})
        if any(not 1 <= s < self.max_steps for s in self.export_steps):
            problems.append(("export_steps", f"every step must be in [1, max_steps={self.max_steps}), got {self.export_steps}"))
        if len(self.optim.betas) != 2:
            problems.append(("optim.betas", f"needs two values, got {self.optim.betas}"))
        if self.precision not in PRECISIONS:
            problems.append(("precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"))
        problems += self.model.problems(prefix="model.")
        if problems:
            raise invalid(problems, "pretraining config")
        self.model.resolve()
        return self


def load_config(path: str | Path | None, overrides: list[str]) -> TrainConfig:
    """The resolved pretraining config (with init_from: the export's model section)."""
    cfg = load_structured(TrainConfig, path, overrides, what="pretraining config",
                          sections={"model": DNAChunkerConfig})
    replaced = apply_init_from(cfg)
    if replaced:
        print(f"init_from={cfg.init_from}: the model section is the export's ({'; '.join(replaced)})", file=sys.stderr)
    return cfg


# keys of the model section that change how it runs, not what it computes: free to differ on resume
RUNTIME_MODEL_KEYS = {"activation_checkpointing", "compile", "mamba.recompute"}


def apply_init_from(cfg: TrainConfig) -> list[str]:
    """With `init_from`: the model section becomes the export's recorded config (runtime keys kept),
    and a fitted tokenization comes from the export too. -> 'model.key: yours -> export's' for
    every key that the export replaced."""
    if cfg.init_from is None:
        return []
    path = Path(cfg.init_from) / "config.yaml"
    if not (Path(cfg.init_from) / "model.safetensors").is_file() or not path.is_file():
        raise ConfigError(f"init_from={cfg.init_from}: not an export (needs config.yaml and model.safetensors; "
                          f"a training run's is <out_dir>/export)", ["init_from"])
    export = DNAChunkerConfig.load(path)
    for key in RUNTIME_MODEL_KEYS:
        *path, name = key.split(".")
        into, mine = export, cfg.model
        for part in path:
            into, mine = getattr(into, part), getattr(mine, part)
        setattr(into, name, getattr(mine, name))
    a, b = flatten(to_dict(cfg.model)), flatten(to_dict(export))
    replaced = [f"model.{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    cfg.model = export
    fitted = tokenization.build(export).file
    if cfg.tokenization_from is None and fitted and (Path(cfg.init_from) / fitted).is_file():
        cfg.tokenization_from = cfg.init_from
    return replaced


# what a resumed run trains on and how, beside the model: compared with the checkpoint's config
TRAINED_KEYS = ("data.root", "data.seed", "data.rc_augment", "data.mask_prob", "data.repeat_weight", "optim.lr",
                "optim.min_lr_ratio", "optim.decay_steps", "optim.warmup_steps", "optim.betas", "optim.eps",
                "optim.weight_decay", "optim.grad_clip", "precision")


def training_changes(cfg: TrainConfig, checkpoint_state: dict, world_size: int) -> list[str]:
    """'key: checkpoint -> now' for every key that changes what a resumed run trains: the model
    section (but RUNTIME_MODEL_KEYS), TRAINED_KEYS, and the global batch (ranks x micro-batch x
    accumulation: the micro-batch may change with the number of ranks, the global batch not).
    Free to change: max_steps, the number of ranks, runtime, logging and checkpoint cadence."""
    saved = OmegaConf.to_container(OmegaConf.create(checkpoint_state["config"]))
    now = to_dict(cfg)
    changes = []
    if isinstance(saved.get("model"), dict):  # written before the model was a section: not compared
        a, b = flatten(saved["model"]), flatten(now["model"])
        changes += [f"model.{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k) and k not in RUNTIME_MODEL_KEYS]
    a, b = flatten(saved), flatten(now)
    changes += [f"{k}: {a[k]} -> {b.get(k)}" for k in TRAINED_KEYS if k in a and a[k] != b.get(k)]
    world = checkpoint_state.get("world_size")
    if world and "micro_batch_size" in saved.get("data", {}):
        before = world * saved["data"]["micro_batch_size"] * saved.get("grad_accum", 1)
        after = (cfg.global_batch_size or world_size * cfg.data.micro_batch_size * cfg.grad_accum)
        if before != after:
            changes.append(f"global batch (ranks x data.micro_batch_size x grad_accum): {before} -> {after} windows")
    return changes
