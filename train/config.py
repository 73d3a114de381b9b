"""Pretraining configuration: one dataclass with the model as a section, loaded once (YAML plus
key=value overrides, dnachunker.config.load_structured) and recorded whole: <out_dir>/config.yaml,
every checkpoint, the MLflow params."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from dnachunker.config import DNAChunkerConfig, flatten, load_structured, to_dict


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
    allow_model_change: bool = False # resume although the model section differs from the checkpoint's


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None  # default: sqlite:///<out_dir>/mlflow.db
    experiment: str = "dnachunker-pretrain"
    run_name: str | None = None
    parent_run_id: str | None = None # set by slurm.sweep: this run becomes a child run
    log_every: int = 10
    retries: int = 3                 # tries of each MLflow call before tracking is switched off for the run
    retry_backoff_s: float = 1.0     # wait before the second try; doubles each time


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
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    max_steps: int = 10000
    grad_accum: int = 1              # micro-batches per optimizer step (derived when global_batch_size is set)
    global_batch_size: int | None = None  # windows per optimizer step, fixed whatever the number of ranks
    zero_stage: int = 2
    precision: str = "bf16"          # bf16 (fp32 master weights and gradient accumulation) | fp32
    val_every: int = 500
    val_batches: int = 20
    max_nonfinite: int = 5           # stop after this many non-finite steps in a row
    max_stops_without_progress: int = 3  # refuse to start after this many stops in a row with no step done
    seed: int = 0                    # model initialisation

    def validate(self) -> "TrainConfig":
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"zero_stage must be 1, 2 or 3, got {self.zero_stage}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, got {self.precision!r}")
        self.model.validate()
        return self


def load_config(path: str | Path | None, overrides: list[str]) -> TrainConfig:
    return load_structured(TrainConfig, path, overrides, what="pretraining config",
                           sections={"model": DNAChunkerConfig})


# keys of the model section that change how it runs, not what it computes: free to differ on resume
RUNTIME_MODEL_KEYS = {"activation_checkpointing", "compile"}


def model_changes(cfg: TrainConfig, checkpoint_config: str) -> list[str]:
    """'model.key: checkpoint -> now' for every model key that differs from a checkpoint's config
    (its resolved YAML)."""
    saved = OmegaConf.to_container(OmegaConf.create(checkpoint_config)).get("model")
    if not isinstance(saved, dict):  # written before the model was a section: nothing to compare
        return []
    a, b = flatten(saved), flatten(to_dict(cfg.model))
    return [f"model.{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in RUNTIME_MODEL_KEYS]
