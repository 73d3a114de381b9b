"""Evaluation suites: downstream tasks under one probe protocol, run on an exported model.

A suite (configs/eval/*.yaml) lists tasks, each filling one column of a results table (histone,
enhancers, promoters, splice in configs/eval/paper_columns.yaml), with the protocol shared by all:
probe or fine-tune, seeds, training-set cap, test-set cap. `run_suite` writes one JSON per task
into its output directory: the per-seed rows and the mean / std summary, keyed by the model's
weights and the task's protocol, so a re-run skips every task already done on the same weights.

    python -m evaluation suite --model runs/x/export --suite configs/eval/paper_columns.yaml --out runs/x/eval
    python -m evaluation suite --baseline kmer_lr --suite configs/eval/paper_columns.yaml --out runs/kmer_lr

A baseline (evaluation.baselines: k-mer logistic regression, the Genomic Benchmarks CNN) takes the
model's place on the same subsamples, seeds and valid splits; the suite's probe settings (mode,
epochs, lr) are the model's and do not apply to it.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_pipeline.config import digest, file_sha256
from dnachunker.config import invalid, load_structured, out_of_range
from dnachunker.fileio import write_text

from .finetune import FinetuneConfig, evaluate
from .metrics import METRICS
from .tasks import load_task


@dataclass
class SuiteTask:
    column: str                      # the results-table column this task fills
    format: str                      # gue | csv | nt | gb | gbseq | janggu (evaluation.tasks)
    path: str
    nt_task: str | None = None
    fasta: str | None = None
    metric: str = "mcc"              # evaluation.metrics.METRICS: what the column reports (and picks epochs on valid)


@dataclass
class SuiteConfig:
    name: str = "suite"
    mode: str = "probe"              # probe (linear probe, frozen backbone) | finetune
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 3
    lr: float | None = None
    batch_size: int = 32
    max_len: int | None = None
    max_train: int | None = None     # subsample each training split (same subsample for every model)
    max_test: int | None = None      # subsample each test split (same subsample for every model)
    tasks: list[SuiteTask] = field(default_factory=list)

    def validate(self) -> "SuiteConfig":
        problems = out_of_range(self, {"epochs": ">=1", "lr": ">0", "batch_size": ">=1", "max_len": ">=1",
                                       "max_train": ">=2", "max_test": ">=1"})
        if self.mode not in ("probe", "finetune"):
            problems.append(("mode", f"must be probe or finetune, got {self.mode!r}"))
        if not self.seeds:
            problems.append(("seeds", "needs at least one seed"))
        if not self.tasks:
            problems.append(("tasks", "an evaluation suite needs at least one task"))
        problems += [("tasks", f"{t.column}: unknown metric {t.metric!r} (known: {', '.join(METRICS)})")
                     for t in self.tasks if t.metric not in METRICS]
        columns = [t.column for t in self.tasks]
        if len(set(columns)) != len(columns):
            problems.append(("tasks", f"task columns must be unique, got {columns}"))
        if problems:
            raise invalid(problems, "evaluation suite")
        return self

    @property
    def columns(self) -> list[str]:
        return [t.column for t in self.tasks]

    @property
    def metrics(self) -> dict[str, str]:
        """column -> the metric it reports."""
        return {t.column: t.metric for t in self.tasks}

    def protocol(self, task: SuiteTask) -> FinetuneConfig:
        return FinetuneConfig(mode=self.mode, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                              max_len=self.max_len, seeds=list(self.seeds), max_train=self.max_train,
                              max_test=self.max_test, metric=task.metric)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "SuiteConfig":
        return load_structured(cls, path, overrides, what="evaluation suite")


def run_suite(model, suite: SuiteConfig, out_dir: str | Path, device: str = "cpu") -> dict[str, dict]:
    """Every task of the suite on one model (an export directory, or a baseline of
    evaluation.baselines) -> {column: summary (mean / std over seeds)}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline = not isinstance(model, (str, Path))
    weights = {"baseline": model.name, **asdict(model)} if baseline else file_sha256(Path(model) / "model.safetensors")
    results = {}
    for i, task_spec in enumerate(suite.tasks, 1):
        protocol = suite.protocol(task_spec)
        key = digest({"weights": weights, "task": asdict(task_spec), "protocol": asdict(protocol)})
        path = out_dir / f"{task_spec.column}.json"
        done = json.loads(path.read_text()) if path.is_file() else {}
        if done.get("key") == key:
            results[task_spec.column] = done["summary"]
            print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: done before, kept ({path})", file=sys.stderr)
            continue
        print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: {task_spec.format} {task_spec.path}", file=sys.stderr)
        task = load_task(task_spec.format, task_spec.path, task=task_spec.nt_task, fasta=task_spec.fasta)
        rows, summary = evaluate(model if baseline else str(model), task, protocol, device)
        write_text(path, json.dumps({"key": key, "task": asdict(task_spec), "rows": rows, "summary": summary}, indent=1))
        results[task_spec.column] = summary
        m = task_spec.metric
        print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: {m} {summary[m]:.3f} ± {summary[f'{m}_std']:.3f} "
              f"-> {path}", file=sys.stderr)
    return results
