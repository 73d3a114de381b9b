"""Evaluation suites: downstream tasks under one protocol, run on an exported model.

A suite (configs/eval/*.yaml) lists tasks, each filling one column of a results table (histone,
enhancers, promoters, splice in configs/eval/paper_columns.yaml) with its type and metric
(evaluation.task_types), and the protocol shared by all: probe or fine-tune, seeds, k-fold where a
task has no test split, training-set cap, test-set cap; `follows` names the source benchmark's
protocol, and `references` are its published numbers (evaluation.references). `run_suite` writes
one JSON per task into its output directory: the per-seed (and per-fold) rows and the mean / std
summary, keyed by the model's weights and the task's protocol, and beside it `<column>.preds.npz`,
every seed's output on every test example (evaluation.predictions; its sha256 is in the JSON), so a re-run skips every task
already done on the same weights; then summary.md / summary.csv, the suite's table with the
published rows beside this model's.

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

from data_pipeline.config import digest
from dnachunker.config import DNAChunkerConfig
from dnachunker.configlib import ConfigError, invalid, load_structured, out_of_range
from dnachunker.fileio import file_sha256, markdown_table, write_csv, write_text

from .finetune import CUTS, FinetuneConfig, evaluate
PREDICTIONS = ".preds.npz"  # beside <column>.json
from .probes import ProbeSpec, check as check_probe
from .references import MEAN, Reference, reference_table
from .task_types import TASK_TYPES
from .formats import load_task
from .tasks import VALID_SCHEMES, EvalDataError


@dataclass
class SuiteTask:
    column: str                      # the results-table column this task fills
    format: str                      # gue | csv | nt | gb | gbseq | janggu (evaluation.formats); vcf (variant_effect)
    path: str | None                 # None only through an unset ${data}: an error naming it
    nt_task: str | None = None
    fasta: str | None = None         # gb coordinates and vcf: the reference (default: the suite's `fasta`)
    metric: str = "mcc"              # one of its type's metrics: what the column reports (and picks epochs on valid)
    type: str = "classification"     # evaluation.task_types: classification | regression | variant_effect
    species: str | None = None       # the organism of its sequences, a genome name (default: the suite's `species`)
    probe: str = "mean"              # evaluation.probes: how states become one vector (mean: the paper's)
    anchor: int | str | None = None  # where the signal sits, for position-aware probes: a base index or "center"
    flank: int = 10                  # window probe: bases either side of the anchor
    overall: bool = True             # counts in the suite's overall column (a second probe of a column does not)


@dataclass
class SuiteConfig:
    name: str = "suite"
    follows: str = ""                # the source benchmark's protocol, in words, and where it is defined
    mode: str = "probe"              # probe (linear probe, frozen backbone) | finetune
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 3
    lr: float | None = None
    lrs: list[float] = field(default_factory=list)  # finetune: a learning-rate grid, chosen on valid per seed
    lora_rank: int | None = None     # finetune: LoRA adapters (peft) of this rank instead of every weight
    batch_size: int = 32
    max_len: int | None = None
    max_train: int | None = None     # subsample each training split (same subsample for every model)
    max_test: int | None = None      # subsample each test split (same subsample for every model)
    max_valid: int | None = None     # subsample each benchmark's own valid split (smoke tests)
    valid_split: str = "stratified"  # stratified | random: how each seed's valid split is held out of train
    cuts: str = "plain"              # plain | training: a fixed tokenization's cuts (evaluation.finetune.FinetuneConfig)
    folds: int | None = None         # k-fold cross-validation for tasks whose source has no test split
    fasta: str | None = None         # the reference genome for tasks that need one and name none (GRCh38)
    data: str | None = None          # the benchmark's data where its tasks share it: their path reads ${data}
    # For models pretrained with a species embedding (model.species; others ignore both): the
    # organism of tasks that name none, and the species read for a task whose organism the model
    # does not know (None: such a task is an error naming it).
    species: str | None = None
    unknown_species: str | None = None
    tasks: list[SuiteTask] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)

    def validate(self) -> "SuiteConfig":
        problems = out_of_range(self, {"epochs": ">=1", "lr": ">0", "batch_size": ">=1", "max_len": ">=1", "lora_rank": ">=1",
                                       "max_train": ">=2", "max_test": ">=1", "max_valid": ">=1",
                                       "folds": ">=2"})
        if self.mode not in ("probe", "finetune"):
            problems.append(("mode", f"must be probe or finetune, got {self.mode!r}"))
        if not self.seeds:
            problems.append(("seeds", "needs at least one seed"))
        if not self.tasks:
            problems.append(("tasks", "an evaluation suite needs at least one task"))
        if missing := [t.column for t in self.tasks if t.path is None]:
            problems.append(("data", f"no path for {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}: this "
                                     f"suite reads the benchmark from `data`: give data=<the downloaded file or directory>"))
        if need := [t.column for t in self.tasks if t.format in ("gb", "vcf") and not (t.fasta or self.fasta)]:
            problems.append(("fasta", f"{', '.join(need[:3])}{'...' if len(need) > 3 else ''} need(s) the reference "
                                      f"genome: give fasta=<FASTA, plain or gzip>"))
        if any(not isinstance(v, (int, float)) or v <= 0 for v in self.lrs):
            problems.append(("lrs", f"learning rates must be > 0, got {self.lrs}"))
        if (self.lrs or self.lora_rank) and self.mode != "finetune":
            problems.append(("lrs" if self.lrs else "lora_rank", "applies to mode finetune only"))
        if self.cuts not in CUTS:
            problems.append(("cuts", f"must be one of {', '.join(CUTS)}, got {self.cuts!r}"))
        if self.valid_split not in VALID_SCHEMES:
            problems.append(("valid_split", f"must be one of {', '.join(VALID_SCHEMES)}, got {self.valid_split!r}"))
        for t in self.tasks:
            problems += [("tasks", f"{t.column}: {p}") for p in check_probe(self.probe_spec(t))]
            if t.type not in TASK_TYPES:
                problems.append(("tasks", f"{t.column}: unknown type {t.type!r} (known: {', '.join(TASK_TYPES)})"))
            elif t.metric not in TASK_TYPES[t.type].metrics:
                problems.append(("tasks", f"{t.column}: a {t.type} task reports {', '.join(TASK_TYPES[t.type].metrics)}, "
                                          f"not {t.metric!r}"))
            elif (t.type == "variant_effect") != (t.format == "vcf"):
                problems.append(("tasks", f"{t.column}: a variant_effect task reads a labelled VCF (format vcf), "
                                          f"and only it does"))
        columns = [t.column for t in self.tasks]
        if len(set(columns)) != len(columns):
            problems.append(("tasks", f"task columns must be unique, got {columns}"))
        for r in self.references:
            if r.protocol != self.protocol_name:
                problems.append(("references", f"{r.label}: {r.protocol} numbers in a {self.protocol_name} suite "
                                               f"(protocols are never mixed)"))
            if unknown := set(r.scores) - {*columns, MEAN}:
                problems.append(("references", f"{r.label}: no task column {sorted(unknown)} (columns: {columns}, "
                                               f"or {MEAN!r} for a published mean over all tasks)"))
        if problems:
            raise invalid(problems, "evaluation suite")
        return self

    @property
    def columns(self) -> list[str]:
        return [t.column for t in self.tasks]

    @property
    def overall_columns(self) -> list[str]:
        """The columns the overall score averages (tasks with overall: true)."""
        return [t.column for t in self.tasks if t.overall]

    @staticmethod
    def probe_spec(task: SuiteTask) -> ProbeSpec:
        return ProbeSpec(task.probe, task.anchor, task.flank)

    @property
    def metrics(self) -> dict[str, str]:
        """column -> the metric it reports."""
        return {t.column: t.metric for t in self.tasks}

    @property
    def protocol_name(self) -> str:
        """What its numbers are: zero-shot (nothing trained), else its mode."""
        return "zero-shot" if self.tasks and not any(TASK_TYPES[t.type].trained for t in self.tasks
                                                      if t.type in TASK_TYPES) else self.mode

    def protocol(self, task: SuiteTask, species: list[str] = ()) -> FinetuneConfig:
        """How `task` is run, for a model embedding `species` (none: a species-blind model or a baseline)."""
        return FinetuneConfig(mode=self.mode, epochs=self.epochs, lr=self.lr, lrs=list(self.lrs),
                              lora_rank=self.lora_rank, batch_size=self.batch_size,
                              max_len=self.max_len, seeds=list(self.seeds), max_train=self.max_train,
                              max_test=self.max_test, max_valid=self.max_valid, metric=task.metric, folds=self.folds,
                              species=self.species_of(task, species), valid_split=self.valid_split,
                              probe=self.probe_spec(task), cuts=self.cuts)

    def species_of(self, task: SuiteTask, known: list[str]) -> str | None:
        """The species a model embedding `known` reads `task` as (None: it embeds none)."""
        if not known:
            return None
        organism = task.species or self.species
        if organism in known:
            return organism
        if self.unknown_species in known:
            return self.unknown_species
        raise EvalDataError(f"suite {self.name}, task {task.column}: its organism ({organism or 'not named'}) is not "
                            f"among the model's species {known}; give unknown_species=<one of them> to read such "
                            f"tasks as that species")

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "SuiteConfig":
        """The suite file <- overrides. `tasks=[splice,promoters]` (column names) runs those of the
        file's tasks only; a list of task mappings replaces them."""
        from omegaconf import OmegaConf
        keep, rest = None, []
        for o in overrides:
            value = OmegaConf.from_dotlist([o]).get("tasks") if o.startswith("tasks=") else None
            if value is not None and len(value) and all(isinstance(v, str) for v in value):
                keep = list(value)
            else:
                rest.append(o)
        suite = load_structured(cls, path, rest, what="evaluation suite")
        if keep is not None:
            if unknown := [c for c in keep if c not in suite.columns]:
                raise ConfigError(f"{path}: tasks={keep}: no task {unknown} (its tasks: {', '.join(suite.columns)})")
            suite.tasks = [t for t in suite.tasks if t.column in keep]
        return suite


def run_suite(model, suite: SuiteConfig, out_dir: str | Path, device: str = "cpu") -> dict[str, dict]:
    """Every task of the suite on one model (an export directory, or a baseline of
    evaluation.baselines) -> {column: summary (mean / std over seeds and folds)}; then the suite's
    table (summary.md / summary.csv). A baseline has nothing to say on a zero-shot task: skipped."""
    from .task_types import task_type
    from .zero_shot import evaluate_variants
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline = not isinstance(model, (str, Path))
    weights = {"baseline": model.name, **asdict(model)} if baseline else file_sha256(Path(model) / "model.safetensors")
    species = [] if baseline else DNAChunkerConfig.load(Path(model) / "config.yaml").species
    protocols = [suite.protocol(t, species) for t in suite.tasks]  # a task of an unknown species stops it here
    results = {}
    for i, (task_spec, protocol) in enumerate(zip(suite.tasks, protocols), 1):
        trained = task_type(task_spec.type).trained
        if baseline and not trained:
            print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: zero-shot, no baseline score", file=sys.stderr)
            continue
        key = digest({"weights": weights, "task": asdict(task_spec), "protocol": asdict(protocol)})
        path = out_dir / f"{task_spec.column}.json"
        done = json.loads(path.read_text()) if path.is_file() else {}
        if done.get("key") == key and _has_predictions(done, out_dir):
            results[task_spec.column] = done["summary"]
            print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: done before, kept ({path})", file=sys.stderr)
            continue
        print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: {task_spec.format} {task_spec.path}"
              + (f", read as species {protocol.species}" if protocol.species else ""), file=sys.stderr)
        fasta = task_spec.fasta or suite.fasta
        if not trained:
            rows, summary, preds = evaluate_variants(model, task_spec.path, fasta, task_spec.metric, suite.max_len,
                                                     device, protocol.species)
        else:
            task = load_task(task_spec.format, task_spec.path, task=task_spec.nt_task, fasta=fasta, type=task_spec.type)
            rows, summary, preds = evaluate(model if baseline else str(model), task, protocol, device)
        summary["species"] = protocol.species
        summary["probe"] = suite.probe_spec(task_spec).name
        preds_path = out_dir / f"{task_spec.column}{PREDICTIONS}"
        preds.save(preds_path)  # first: a JSON is only ever written beside its own predictions
        write_text(path, json.dumps({"key": key, "task": asdict(task_spec), "rows": rows, "summary": summary,
                                     "predictions": {"file": preds_path.name, "sha256": file_sha256(preds_path)}},
                                    indent=1))
        results[task_spec.column] = summary
        m = task_spec.metric
        print(f"[{i}/{len(suite.tasks)}] {task_spec.column}: {m} {summary[m]:.3f} ± {summary[f'{m}_std']:.3f} "
              f"-> {path}", file=sys.stderr)
    write_summary(suite, model.label if baseline else row_label(Path(model)), results, out_dir)
    return results


def protocol_line(suite: SuiteConfig) -> str:
    """The protocol choices that move a column, in words: the probe of each column, the valid split."""
    probes = {c: suite.probe_spec(t).name for c, t in zip(suite.columns, suite.tasks)}
    kinds = sorted(set(probes.values()))
    read = (f"Probe: {kinds[0]}" if len(kinds) == 1
            else "Probes: " + "; ".join(f"{c}: {p}" for c, p in probes.items()))
    left = ", ".join(c for c in suite.columns if c not in suite.overall_columns)
    cuts = " Fixed tokenizations' cuts taken as in training (on masked copies)." if suite.cuts == "training" else ""
    return (f"{read}{f' (not in overall: {left})' if left else ''}. Valid split where a benchmark has none: "
            f"{suite.valid_split}, 10 % of train per seed.{cuts}")


def _has_predictions(record: dict, out_dir: Path) -> bool:
    """A finished task's predictions are beside it, unchanged (else the task runs again)."""
    p = record.get("predictions") or {}
    return bool(p) and (out_dir / p["file"]).is_file() and file_sha256(out_dir / p["file"]) == p["sha256"]


def row_label(export: Path) -> str:
    """A model's row in a table: its run's name for <run>/export (<run>/exports/step<N>: 'run, step N'),
    else the directory's name."""
    export = export.resolve()
    if export.name == "export":
        return export.parent.name
    if export.parent.name == "exports" and export.name.startswith("step"):
        return f"{export.parent.parent.name}, step {int(export.name[4:])}"
    return export.name


def write_summary(suite: SuiteConfig, label: str, results: dict[str, dict], out_dir: Path) -> None:
    """summary.csv (this model's mean and std per column) and summary.md (the same beside the
    suite's published numbers)."""
    metrics, in_overall = suite.metrics, suite.overall_columns
    overall = "overall" if len({metrics[c] for c in in_overall}) == 1 else None
    means = {c: results[c][m] for c, m in metrics.items() if c in results}
    csv_row = {"row": label, **{f"{m}/{c}": means.get(c) for c, m in metrics.items()},
               **{f"{m}_std/{c}": results[c][f"{m}_std"] for c, m in metrics.items() if c in results}}
    one = len(suite.seeds) == 1 and not suite.folds  # a single number: no spread to show
    cells = {c: (f"{means[c]:.3f}" if one else f"{means[c]:.3f} ± {results[c][f'{metrics[c]}_std']:.3f}")
             if c in means else "" for c in metrics}
    if overall and all(c in means for c in in_overall):
        csv_row[overall] = sum(means[c] for c in in_overall) / len(in_overall)
        cells[overall] = f"{csv_row[overall]:.3f}"
    write_csv([csv_row], out_dir / "summary.csv",
              ["row", *(f"{m}/{c}" for c, m in metrics.items()), *(f"{m}_std/{c}" for c, m in metrics.items()),
               *([overall] if overall else [])])
    caption = ", ".join(sorted(set(metrics.values()))) if overall else "; ".join(f"{c}: {m}" for c, m in metrics.items())
    folds = f", {suite.folds}-fold cross-validation where a task has no test split" if suite.folds else ""
    caps = [f"{what} sets at {n}" for what, n in (("training", suite.max_train), ("test", suite.max_test),
                                                   ("valid", suite.max_valid)) if n]
    capped = (f"; {', '.join(caps)} sequences (a subsample: not comparable with published numbers)" if caps else "")
    species = {c: r["species"] for c, r in results.items() if r.get("species")}
    read_as = f" The model's species embedding read: {', '.join(f'{c} as {s}' for c, s in species.items())}." if species else ""
    table = markdown_table([{"row": label, **cells}], ["row", *metrics, *([overall] if overall else [])])
    spread = "one seed" if one else f"mean ± std over {len(suite.seeds)} seeds"
    text = (f"# {suite.name}\n\n{suite.follows}\n\nThis run: {suite.protocol_name}, {caption}, {spread}{folds}"
            f"{capped}.{read_as} {protocol_line(suite)}\n\n{table}\n\n"
            + reference_table(suite.references, list(metrics), overall))
    write_text(out_dir / "summary.md", text)
