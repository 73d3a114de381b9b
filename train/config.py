"""Pretraining configuration: one OmegaConf dataclass, loaded from YAML plus key=value overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from dnachunker.config import DNAChunkerConfig


@dataclass
class DataConfig:
    root: str = MISSING              # a shard set made by `python -m data_pipeline`
    micro_batch_size: int = 8        # per rank
    num_workers: int = 2
    seed: int = 0
    rc_augment: bool = True
    mask_prob: float = 0.15
    bpe_tokenizer: str | None = None # baseline: BPE token starts as fixed boundaries (model tokenization=given)


@dataclass
class OptimConfig:
    lr: float = 8e-4
    min_lr_ratio: float = 0.1        # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 1000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1        # not applied to norms, biases and embeddings
    grad_clip: float = 1.0


@dataclass
class CheckpointConfig:
    every: int = 1000                # steps between checkpoints (also saved on a stop signal and at the end)
    keep: int = 3                    # retention: the newest K checkpoints by write order
    resume: str = "auto"             # auto | none | <path to a checkpoint directory> (older: a rollback)


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None  # default: sqlite:///<out_dir>/mlflow.db
    experiment: str = "dnachunker-pretrain"
    run_name: str | None = None
    parent_run_id: str | None = None # set by slurm.sweep: this run becomes a child run
    log_every: int = 10


@dataclass
class TrainConfig:
    out_dir: str = MISSING
    model: str = "configs/model/tiny.yaml"       # a model YAML, overridden by model_overrides
    model_overrides: list[str] = field(default_factory=list)
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

    def model_config(self) -> DNAChunkerConfig:
        return DNAChunkerConfig.load(self.model, *self.model_overrides)

    def validate(self) -> "TrainConfig":
        if self.zero_stage not in (1, 2, 3):
            raise ValueError(f"zero_stage must be 1, 2 or 3, got {self.zero_stage}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, got {self.precision!r}")
        self.model_config()  # fails early, naming the model file
        return self


def load_config(path: str | None, overrides: list[str]) -> TrainConfig:
    base = OmegaConf.structured(TrainConfig)
    try:
        if path:
            if not Path(path).is_file():
                raise ValueError(f"{path}: config file not found")
            base = OmegaConf.merge(base, OmegaConf.load(path))
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
        return OmegaConf.to_object(merged).validate()
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{path or 'config'}: {e}") from None


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
