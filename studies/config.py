"""A sweep's schema: the pretraining points, where they run, what evaluates them."""
from __future__ import annotations

from dataclasses import dataclass, field

from dnachunker.configlib import invalid, load_structured, out_of_range


@dataclass
class SlurmConfig:
    partition: str | None = None
    time_min: int = 24 * 60
    eval_time_min: int = 120
    nodes: int = 1
    tasks_per_node: int = 1          # one per GPU
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: int | None = None
    additional: dict = field(default_factory=dict)  # any other sbatch option, e.g. {account: x}


@dataclass
class SweepConfig:
    name: str = "sweep"
    config: str = "configs/pretrain/tiny_chr20.yaml"   # base pretraining config
    overrides: list[str] = field(default_factory=list)  # applied to every point
    grid: dict = field(default_factory=dict)             # key -> list of values
    points: list = field(default_factory=list)           # explicit list of {key: value} (+ label)
    cluster: str = "local"                               # a runner (studies.runners): local | slurm
    parallel: int | None = None                          # points at once (local: GPUs or 1; Slurm: all)
    out_dir: str = "runs/sweeps/sweep"
    tracking_uri: str | None = None                      # default sqlite:///<out_dir>/mlflow.db
    evaluation: str | None = None                        # an evaluation suite (configs/eval/*.yaml)
    control: bool = True                                 # with an evaluation: probe the untrained model too
    baselines: list[str] = field(default_factory=lambda: ["kmer_lr", "cnn"])  # with an evaluation: their rows
    seeds: list[int] = field(default_factory=lambda: [0])  # pretraining seeds of every point (and control)
    budgets: list[int] = field(default_factory=list)     # steps at which each point is exported and probed
    reference: str = "DNAChunker"                        # the row every other row is compared with
    # A row label: every other row's steps (max_steps, budgets, schedule) scaled so that its training
    # FLOPs match that row's at each budget, from train.flops measured at initialisation (None: steps match)
    match_flops: str | None = None
    paper: dict = field(default_factory=dict)            # reference numbers: {row label: {column: value}}
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def validate(self) -> "SweepConfig":
        from evaluation.baselines import BASELINES

        from .runners import RUNNERS
        problems = out_of_range(self, {"parallel": ">=1", "slurm.time_min": ">=1", "slurm.eval_time_min": ">=1",
                                       "slurm.nodes": ">=1", "slurm.tasks_per_node": ">=1", "slurm.gpus_per_node": ">=0",
                                       "slurm.cpus_per_task": ">=1", "slurm.mem_gb": ">=1"})
        problems += [("baselines", f"unknown baseline {b!r} (known: {', '.join(BASELINES)})")
                     for b in self.baselines if b not in BASELINES]
        if not self.seeds:
            problems.append(("seeds", "needs at least one pretraining seed"))
        if any(not isinstance(b, int) or b < 1 for b in self.budgets):
            problems.append(("budgets", f"must be steps >= 1, got {self.budgets}"))
        labels = [p.get("label") for p in self.points]
        if self.match_flops is not None and self.match_flops not in labels:
            problems.append(("match_flops", f"no point is labelled {self.match_flops!r} (labels: {labels})"))
        if self.cluster not in RUNNERS:
            problems.append(("cluster", f"must be one of {', '.join(RUNNERS)}, got {self.cluster!r}"))
        if problems:
            raise invalid(problems, "sweep config")
        return self


def load_sweep(path: str | None, overrides: list[str]) -> SweepConfig:
    """The sweep file <- overrides; `grid=...` on the command line replaces the file's grid."""
    return load_structured(SweepConfig, path, overrides, what="sweep config", whole=("grid",))
