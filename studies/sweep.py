"""Sweeps and studies: pretraining points, each exported and probed on an evaluation suite,
gathered into tables and plots.

    python -m slurm.sweep --sweep configs/sweep/ablation.yaml [key=value ...]
    python -m slurm.sweep --sweep configs/sweep/alpha_depth.yaml cluster=slurm slurm.gpus_per_node=8
    python -m slurm.sweep --sweep configs/sweep/scaling.yaml --report    # tables of what has finished

Points are the cartesian product of `grid` plus any explicit `points`; every key is a
pretraining override (`model.target_ratio`, `model.main_layers`, `optim.lr`, ...), except
`label`, the row's name in the tables. Each point trains in <out_dir>/<point>/ (an MLflow child
run under one parent run), is exported, and, when the sweep names an `evaluation` suite, is probed
into <out_dir>/<point>/eval/. With `control: true` the untrained base model (same seed) is exported
and probed as a row of its own, and each of `baselines` (evaluation.baselines: k-mer logistic
regression, the Genomic Benchmarks CNN) is scored on the same suite as a row. `seeds` trains every
point once per pretraining seed (`seed` and `data.seed`); a point's own `seed` key replaces them.
`budgets` (steps) exports every point at each (export_steps; the largest is max_steps, and all
follow its learning-rate schedule) and probes each export: a token-scaling study. A point whose
tokenization is fitted (bpe) fits it at its start on its own training shards (train.pretrain), and
exports it with its weights.

`cluster=local` runs points as local processes, `parallel` at a time (default: one per GPU, one
on a CPU machine), each with its share of the cores; an evaluation starts when its pretraining
has finished. `cluster=slurm` submits the pretraining as one job array (`parallel` = the array's
limit) and each evaluation as a job that depends on its element (afterok). Re-running the same
command skips finished pretraining and finished evaluations and resumes unfinished ones. When all
is done: results.csv / results.md / study.md (slurm.report, slurm.compare), scaling.md with
budgets (slurm.scaling) and plots in <out_dir>, attached to the parent run.
A failed point is a row with its status, never the end of the sweep.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dnachunker.config import ConfigError, invalid, load_structured, out_of_range, to_yaml
from dnachunker.fileio import write_text

from . import local
from .compare import Columns
from .report import PRETRAIN, write_report

FLOPS = "flops.json"  # beside a point's summary.json: train.flops measured on its final export


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
    cluster: str = "local"                               # local | slurm
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
        problems = out_of_range(self, {"parallel": ">=1", "slurm.time_min": ">=1", "slurm.eval_time_min": ">=1",
                                       "slurm.nodes": ">=1", "slurm.tasks_per_node": ">=1", "slurm.gpus_per_node": ">=0",
                                       "slurm.cpus_per_task": ">=1", "slurm.mem_gb": ">=1"})
        from evaluation.baselines import BASELINES
        problems += [("baselines", f"unknown baseline {b!r} (known: {', '.join(BASELINES)})")
                     for b in self.baselines if b not in BASELINES]
        if not self.seeds:
            problems.append(("seeds", "needs at least one pretraining seed"))
        if any(not isinstance(b, int) or b < 1 for b in self.budgets):
            problems.append(("budgets", f"must be steps >= 1, got {self.budgets}"))
        labels = [p.get("label") for p in self.points]
        if self.match_flops is not None and self.match_flops not in labels:
            problems.append(("match_flops", f"no point is labelled {self.match_flops!r} (labels: {labels})"))
        if self.cluster not in ("local", "slurm"):
            problems.append(("cluster", f"must be local or slurm, got {self.cluster!r}"))
        if problems:
            raise invalid(problems, "sweep config")
        return self


@dataclass
class Point:
    name: str
    label: str                       # the row it adds to (its pretraining seeds are replicates)
    keys: dict
    out: Path
    argv: list[str]                  # train.pretrain arguments
    cfg: object                      # its resolved TrainConfig (None for a baseline)
    kind: str = "pretrain"           # pretrain | control (exported at its initialisation) | baseline
    seed: int | None = None          # pretraining seed (None: a baseline, which is not pretrained)
    baseline: str | None = None      # evaluation.baselines name, for kind=baseline

    @property
    def pretrain(self) -> bool:
        return self.kind == "pretrain"

    @property
    def export(self) -> Path:
        return self.out / "export"

    def evals(self) -> list[tuple[str, Path, Path | None]]:
        """(model argument, eval directory, export directory) of every evaluation: the intermediate
        exports (export_steps), then the final one; a baseline has no export."""
        if self.kind == "baseline":
            return [(f"--baseline={self.baseline}", self.out / "eval", None)]
        steps = [(self.out / "exports" / f"step{s:06d}", self.out / "eval" / f"step{s:06d}")
                 for s in self.cfg.export_steps] if self.pretrain else []
        return [(f"--model={m}", e, m) for m, e in [*steps, (self.export, self.out / "eval")]]

    def recorded(self, tasks: list) -> bool:
        """Weights gone, every evaluation of these tasks (the suite's SuiteTask list) recorded: a point
        of a published study copied back into out_dir (`cp -r results/<name>/points/. <out_dir>/`).
        It is taken as it stands, neither pretrained nor evaluated again. A task recorded before a
        field existed is read with that field's default."""
        def has(d: Path) -> bool:
            return all((d / f"{t.column}.json").is_file()
                       and type(t)(**json.loads((d / f"{t.column}.json").read_text())["task"]) == t for t in tasks)
        return (self.kind != "baseline" and bool(tasks) and not (self.export / "model.safetensors").is_file()
                and (self.out / "summary.json").is_file() and all(has(d) for _, d, _ in self.evals()))

    def finished(self) -> bool:
        summary = self.out / "summary.json"
        return ((self.export / "model.safetensors").is_file() and summary.is_file()
                and json.loads(summary.read_text()).get("step") == self.cfg.max_steps) or not self.pretrain


def expand(cfg: SweepConfig) -> list[dict]:
    keys = list(cfg.grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(cfg.grid[k] for k in keys))] if keys else []
    points += [dict(p) for p in cfg.points]
    if not points:
        raise ValueError("the sweep has no points: give `grid` and/or `points`")
    return points


def point_name(i: int, point: dict) -> str:
    """p01_target_ratio-0.3_0.5__main_layers-4: a directory and run name safe everywhere."""
    def short(v):
        return "_".join(short(x) for x in v) if isinstance(v, list) else re.sub(r"[^A-Za-z0-9.]+", "", str(v))
    return f"p{i:02d}_" + ("__".join(f"{k.split('.')[-1]}-{short(v)}" for k, v in point.items()) or "base")


def point_overrides(point: dict) -> list[str]:
    """{'model.target_ratio': [0.3, 0.5], 'optim.lr': 1e-3} -> pretraining overrides."""
    return [f"{k}={json.dumps(v)}" for k, v in point.items()]


def _points(cfg: SweepConfig, out: Path, uri: str, experiment: str, parent: str) -> list[Point]:
    """Every point resolved (a bad key fails here, before anything is submitted): each pretraining
    point once per pretraining seed (a point's own `seed` key replaces the sweep's `seeds`), the
    control once per seed, and each baseline once."""
    from train.config import load_config
    base = [str(Path(cfg.config).resolve())]
    made = []
    specs = [(i, dict(p)) for i, p in enumerate(expand(cfg))]
    if cfg.evaluation and cfg.control:
        specs.append((len(specs), {"label": "random init (control)"}))
    factors = _flops_factors(cfg, specs, out, base) if cfg.match_flops else {}
    for i, spec in specs:
        label = spec.pop("label", None)
        control = label == "random init (control)" and not spec
        seeds = [spec.pop("seed")] if "seed" in spec else cfg.seeds
        stem = "control" if control else point_name(i, spec)
        scale = lambda steps: max(1, round(steps * factors.get(i, 1.0)))  # noqa: E731
        for seed in seeds:
            name = stem + (f"__seed-{seed}" if seeds != [0] else "")
            run_dir = out / name
            # with budgets: every point on the schedule of the longest, stopped at its own max_steps
            budget = ([f"max_steps={scale(max(cfg.budgets))}"] * ("max_steps" not in spec)
                      + [f"optim.decay_steps={scale(max(cfg.budgets))}"] * ("optim.decay_steps" not in spec)
                      if cfg.budgets else [])
            argv = ["--config", *base, *cfg.overrides, *budget, *point_overrides(spec), f"seed={seed}",
                    f"data.seed={seed}", f"out_dir={run_dir}", f"tracking.tracking_uri={uri}",
                    f"tracking.experiment={experiment}", f"tracking.parent_run_id={parent}",
                    f"tracking.run_name={name}"]
            try:
                resolved = load_config(argv[1], argv[2:])
                if i in factors and not cfg.budgets:  # no budgets: the run's own length, scaled
                    argv += [f"max_steps={scale(resolved.max_steps)}",
                             f"optim.decay_steps={scale(resolved.optim.decay_steps or resolved.max_steps)}"]
                    resolved = load_config(argv[1], argv[2:])
                if cfg.budgets and not control:
                    steps = sorted({scale(b) for b in cfg.budgets})
                    argv.append(f"export_steps={json.dumps([b for b in steps if b < resolved.max_steps])}")
                    resolved = load_config(argv[1], argv[2:])
            except ConfigError as e:
                raise ValueError(f"point {name}: {e}") from None
            made.append(Point(name, label or stem, spec, run_dir, argv, resolved,
                              kind="control" if control else "pretrain", seed=seed))
    if cfg.evaluation:
        from evaluation.baselines import BASELINES
        made += [Point(b, BASELINES[b].label, {}, out / b, [], None, kind="baseline", baseline=b)
                 for b in cfg.baselines]
    return made


def _flops_factors(cfg: SweepConfig, specs: list[tuple[int, dict]], out: Path, base: list[str]) -> dict[int, float]:
    """match_flops: {spec index: reference FLOPs per step / its FLOPs per step}, measured at
    initialisation (train.flops.at_init, pretraining seed 0, a fitted tokenization fitted as its
    pretraining would) and recorded in <out_dir>/flops_match.json (read back on a re-run). A learned
    router's ratio moves during training, so the match is as good as its ratio at step 0 is to its
    ratio later: the study's table shows the FLOPs measured on the final models."""
    from train.config import load_config
    from train.flops import at_init
    out.mkdir(parents=True, exist_ok=True)
    record = out / "flops_match.json"
    known = json.loads(record.read_text()) if record.is_file() else {}
    per_step = {}
    for i, spec in specs:
        if spec.get("label") == "random init (control)":
            continue
        keys = {k: v for k, v in spec.items() if k not in ("label", "seed")}
        name = point_name(i, keys)
        if name not in known:
            run = load_config(base[0], [*cfg.overrides, *point_overrides(keys), "seed=0", "data.seed=0",
                                        f"out_dir={out / (name + ('__seed-0' if cfg.seeds != [0] else ''))}"])
            f = at_init(run)
            # per step: per bp x windows per step (the rows share their windows' length)
            known[name] = {"label": spec.get("label"), **f,
                           "flops_per_step_per_window_bp": f["flops_per_bp"] * run.data.micro_batch_size}
            write_text(record, json.dumps(known, indent=1))
        per_step[i] = known[name]["flops_per_step_per_window_bp"]
    ref = next(i for i, spec in specs if spec.get("label") == cfg.match_flops)
    factors = {i: per_step[ref] / v for i, v in per_step.items()}
    print("[sweep] match_flops: steps scaled by " + ", ".join(
        f"{spec.get('label') or i} x{factors[i]:.2f}" for i, spec in specs if i in factors), file=sys.stderr)
    return factors


def _export_control(point: Point, uri: str, experiment: str, parent: str) -> None:
    """The untrained base model, exactly as pretraining initialises it (same seed), with an MLflow
    child run of its own for its evaluation."""
    if (point.out / "summary.json").is_file():
        return
    from mlflow.tracking import MlflowClient

    from train.pretrain import init_model
    point.out.mkdir(parents=True, exist_ok=True)
    write_text(point.out / "config.yaml", to_yaml(point.cfg))
    init_model(point.cfg).save_pretrained(point.export)
    client = MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name=point.name,
                            tags={"mlflow.parentRunId": parent, "dnachunker.control": "random init"})
    client.set_terminated(run.info.run_id, "FINISHED")
    write_text(point.out / "summary.json", json.dumps({"step": 0, "tokens_seen": 0, "mlflow_run_id": run.info.run_id}))


def _eval_jobs(point: Point, cfg: SweepConfig) -> list[tuple[str, list[str]]]:
    """(job kind, `evaluation suite` arguments) for each of the point's evaluations."""
    suite = str(Path(cfg.evaluation).resolve())
    return [(kind, [model, "--suite", suite, "--out", str(d)])
            for kind, (model, d, _) in zip(_eval_kinds(point), point.evals())]


def _step(point: Point) -> str:
    """'step 120/300' from the point's metrics log (rank 0), for progress lines."""
    path = point.out / "metrics.jsonl"
    try:
        last = path.read_bytes()[-4096:].decode(errors="replace").strip().splitlines()[-1]
        return f"step {json.loads(last)['step']}/{point.cfg.max_steps}"
    except (OSError, IndexError, ValueError, KeyError):
        return "starting"


def _run_local(cfg: SweepConfig, points: list[Point], out: Path) -> dict[str, dict[str, str]]:
    """-> {point: {"pretrain": status, "eval": status}}; records every job in jobs.json. Rows
    without pretraining (baselines, control) go first: minutes each, and a partial study shows them."""
    parallel = cfg.parallel or local.default_parallel()
    env = local.thread_env(parallel)
    share = int(env["OMP_NUM_THREADS"])
    jobs, by_point = [], {}
    for p in sorted(points, key=lambda p: p.pretrain):
        names = {}
        if p.pretrain and not p.finished():
            workers = min(p.cfg.data.num_workers, share - 1)  # the rest of the share feeds the model
            jobs.append(local.LocalJob(f"{p.name}/pretrain", [sys.executable, "-m", "train.pretrain", *p.argv,
                                       f"data.num_workers={max(workers, 0)}"], p.out / "pretrain.log", env=env))
            names["pretrain"] = jobs[-1]
        for kind, argv in _eval_jobs(p, cfg) if cfg.evaluation else []:
            jobs.append(local.LocalJob(f"{p.name}/{kind}", [sys.executable, "-m", "evaluation", "suite", *argv],
                                       p.out / f"{kind.replace(' ', '_')}.log",
                                       after=names["pretrain"].name if "pretrain" in names else None, env=env))
            names[kind] = jobs[-1]
        by_point[p.name] = names
    points_by_job = {j.name: p for p in points for j in by_point[p.name].values()}
    print(f"[sweep] {cfg.name}: {len(jobs)} local jobs, {parallel} at a time, {share} thread(s) each", file=sys.stderr)
    local.run(jobs, parallel, describe=lambda j: _step(points_by_job[j.name]) if j.name.endswith("pretrain") else "")
    write_text(out / "jobs.json", json.dumps([j.record() for j in jobs], indent=1))
    return {p: {k: j.status for k, j in names.items()} for p, names in by_point.items()}


class PretrainJob:
    """What each Slurm array task runs: a full pretraining run (ranks from Slurm's variables)."""

    def __call__(self, argv: list[str]) -> int:
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        from train.pretrain import main
        return main(argv)


class EvalJob:
    """What each dependent Slurm evaluation job runs."""

    def __call__(self, argv: list[str]) -> int:
        from evaluation.__main__ import main
        return main(["suite", *argv])


def _run_slurm(cfg: SweepConfig, points: list[Point], out: Path) -> dict[str, dict[str, str]]:
    import submitit
    s = cfg.slurm
    folder = out / "submitit"
    common = dict(cpus_per_task=s.cpus_per_task, additional_parameters=dict(s.additional))
    if s.partition:
        common["partition"] = s.partition
    if s.mem_gb:
        common["mem"] = f"{s.mem_gb}G"
    train = [p for p in points if p.pretrain and not p.finished()]
    statuses = {p.name: {} for p in points}
    jobs = {}
    if train:
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(time=s.time_min, nodes=s.nodes, ntasks_per_node=s.tasks_per_node,
                             array_parallelism=cfg.parallel or len(train), job_name=f"dnachunker-{cfg.name}",
                             **({"gpus_per_node": s.gpus_per_node} if s.gpus_per_node else {}), **common)
        for p, job in zip(train, ex.map_array(PretrainJob(), [p.argv for p in train])):
            jobs[(p.name, "pretrain")] = job
    if cfg.evaluation:
        for p in points:
            ex = submitit.SlurmExecutor(folder=folder)
            after = jobs.get((p.name, "pretrain"))
            extra = {**common["additional_parameters"],
                     **({"dependency": f"afterok:{after.job_id}", "kill_on_invalid_dep": "yes"} if after else {})}
            ex.update_parameters(time=s.eval_time_min, nodes=1, ntasks_per_node=1, job_name=f"dnachunker-{cfg.name}-eval",
                                 **({"gpus_per_node": 1} if s.gpus_per_node else {}),
                                 **{**common, "additional_parameters": extra})
            for kind, argv in _eval_jobs(p, cfg):
                jobs[(p.name, kind)] = ex.submit(EvalJob(), argv)
    print(f"[sweep] {cfg.name}: submitted " + ", ".join(f"{n}/{k} {j.job_id}" for (n, k), j in jobs.items()),
          file=sys.stderr)
    by_name = {p.name: p for p in points}
    last = 0.0
    while not all(j.done() for j in jobs.values()):
        if time.time() - last > 15:
            last = time.time()
            running = [f"{n}/{k} {_step(by_name[n]) if k == 'pretrain' else ''}".strip()
                       for (n, k), j in jobs.items() if j.state == "RUNNING"]
            print(f"[sweep] {sum(j.done() for j in jobs.values())}/{len(jobs)} done; running: {'; '.join(running)}",
                  file=sys.stderr, flush=True)
        time.sleep(2)
    for (name, kind), job in jobs.items():
        try:
            rc = job.result()
            statuses[name][kind] = "ok" if rc == 0 else f"failed (exit {rc}" + (", preempted: re-run" if rc == 75 else "") + ")"
        except Exception as e:  # a failed or cancelled job is a row status, not a crash of the sweep
            statuses[name][kind] = f"failed ({job.state}: {str(e).strip().splitlines()[-1][:160]})"
    return statuses


def _rows(p: Point, status: dict, cols: Columns) -> list[dict]:
    """One row per evaluated model of the point (each budget), or one for the point without an
    evaluation. `<metric>/<column>` is the mean over probe seeds, `probe/<column>` {probe seed:
    value} and `eval_dir` (its per-example predictions) for the study's statistics."""
    from evaluation.stats import mean_std, overall
    rows, metrics = [], cols.metrics
    evals = list(zip(_eval_kinds(p), p.evals())) if metrics else [("eval", p.evals()[-1])]
    for kind, (_, eval_dir, export) in evals:
        row = {"point": p.name, "label": p.label, "kind": p.kind, "seed": p.seed, "final": eval_dir == p.out / "eval",
               "eval_dir": str(eval_dir), **{k: json.dumps(v) for k, v in p.keys.items()}}
        summary = (export.parent if export == p.export else export) / "summary.json" if export else None
        if summary and summary.is_file():
            row.update({k: v for k, v in json.loads(summary.read_text()).items() if k in PRETRAIN or k == "mlflow_run_id"})
            if p.pretrain and row.get("valid/compression_0") is not None:
                row["main_positions_per_bp"] = row["valid/compression_0"] * row.get("valid/compression_1", 1.0)
        if row["final"] and (p.out / FLOPS).is_file():
            row["flops_per_bp"] = json.loads((p.out / FLOPS).read_text())["flops_per_bp"] / 1e6
        done = 0
        for c, m in metrics.items():
            path = eval_dir / f"{c}.json"
            if path.is_file():
                result = json.loads(path.read_text())
                row[f"{m}/{c}"], row[f"{m}_std/{c}"] = result["summary"][m], result["summary"][f"{m}_std"]
                row[f"probe/{c}"] = {r["seed"]: r[m] for r in result["rows"]}
                done += 1
        name = cols.overall
        if name and done == len(metrics) and (o := overall({c: {None: row[f"probe/{c}"]} for c in cols.overall_of})):
            row[name], row[f"{name}_std"] = mean_std(o)[:2]
        problems = [f"{k} {v}" for k, v in status.items() if v != "ok" and k in ("pretrain", kind)]
        if p.pretrain and not (p.out / "summary.json").is_file() and "pretrain" not in status:
            problems.append("pretrain not finished")
        elif done < len(metrics) and kind not in status:
            problems.append(f"{kind} not finished")
        row["status"] = "; ".join(problems) or "ok"
        rows.append(row)
    return rows


def _eval_kinds(p: Point) -> list[str]:
    return ["eval" + (f" {d.name}" if d.parent != p.out else "") for _, d, _ in p.evals()]


def _parent_run(cfg: SweepConfig, out: Path, uri: str, experiment: str) -> str:
    from mlflow.tracking import MlflowClient
    state = out / "sweep_state.json"
    if state.is_file():
        return json.loads(state.read_text())["parent_run_id"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=(out / "mlartifacts").resolve().as_uri())
    run = client.create_run(exp_id, run_name=cfg.name, tags={"dnachunker.sweep": cfg.name})
    client.log_param(run.info.run_id, "grid", json.dumps(cfg.grid)[:500])
    write_text(state, json.dumps({"parent_run_id": run.info.run_id}))
    return run.info.run_id


def run_sweep(cfg: SweepConfig, report_only: bool = False) -> list[dict]:
    """Run what is not finished, then write the tables; `report_only`: tables of what has finished
    so far (a study still running, or stopped part-way), running nothing."""
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sweep.yaml", to_yaml(cfg))
    uri = cfg.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    experiment = f"dnachunker-sweep-{cfg.name}"
    cols, tasks, published = Columns({}), [], []
    if cfg.evaluation:
        from evaluation.suite import SuiteConfig, protocol_line
        suite = SuiteConfig.load(cfg.evaluation)
        cols = Columns(suite.metrics, suite.overall_columns, protocol_line(suite))
        tasks, published = suite.tasks, suite.references
    parent = _parent_run(cfg, out, uri, experiment)
    points = _points(cfg, out, uri, experiment, parent)
    statuses = {}
    if not report_only:
        for p in points:
            if p.kind == "control":
                _export_control(p, uri, experiment, parent)
        recorded = [p for p in points if p.recorded(tasks)]
        if recorded:
            print(f"[sweep] taken as recorded (no weights, every evaluation present): "
                  f"{', '.join(p.name for p in recorded)}", file=sys.stderr)
        done = [p.name for p in points if p.pretrain and p.finished() and p not in recorded]
        if done:
            print(f"[sweep] pretraining already finished, not run again: {', '.join(done)}", file=sys.stderr)
        statuses = (_run_local if cfg.cluster == "local" else _run_slurm)(
            cfg, [p for p in points if p not in recorded], out)
        for p in points:
            if p.pretrain and p.finished() and not (p.out / FLOPS).is_file():
                _measure_flops(p)
    rows = [r for p in points for r in _rows(p, statuses.get(p.name, {}), cols)]
    keys = list(dict.fromkeys(k for p in points for k in p.keys))
    finished = sum(r["status"] == "ok" for r in rows)
    title = f"{cfg.name}: {len(rows)} evaluated models" + (f" ({finished} finished so far)" if report_only else "")
    files = write_report(rows, keys, cols, cfg.paper, out, title, cfg.reference, published)
    if not report_only:
        _track(uri, parent, rows, cols, files)
    print(f"[sweep] {cfg.name}: results in {out} ({', '.join(f.name for f in files)})", file=sys.stderr)
    return rows


def _measure_flops(p: Point) -> None:
    """train.flops on the point's final export and a validation micro-batch -> <point>/flops.json."""
    from dnachunker import DNAChunker
    from train.flops import measure
    flops = measure(DNAChunker.from_pretrained(p.export), p.cfg.data.root, p.cfg.data.micro_batch_size, seed=p.seed)
    write_text(p.out / FLOPS, json.dumps(flops))
    print(f"[sweep] {p.name}: {flops['flops_per_bp'] / 1e6:.2f} MFLOP per bp in training, "
          f"{flops['main_positions_per_bp']:.3f} main-network positions per bp", file=sys.stderr)


def _track(uri: str, parent: str, rows: list[dict], cols: Columns, files: list[Path]) -> None:
    """Downstream scores onto each point's MLflow run; the tables and plots onto the parent run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    for r in rows:
        values = {f"eval/{c}/{m}": r[f"{m}/{c}"] for c, m in cols.metrics.items() if r.get(f"{m}/{c}") is not None}
        if (name := cols.overall) and r.get(name) is not None:
            values[f"eval/{name}"] = r[name]
        try:
            for k, v in values.items():
                if r.get("mlflow_run_id"):
                    client.log_metric(r["mlflow_run_id"], k, v, step=r.get("step") or 0)
        except MlflowException:  # a recorded point's run lives in the tracking store it was made with
            print(f"[sweep] {r['point']}: its MLflow run {r['mlflow_run_id']} is not in {uri}; scores not "
                  f"logged there", file=sys.stderr)
    for f in files:
        client.log_artifact(parent, str(f))
    client.set_terminated(parent, "FINISHED" if all(r["status"] == "ok" for r in rows) else "FAILED")


def load_sweep(path: str | None, overrides: list[str]) -> SweepConfig:
    """The sweep file <- overrides; `grid=...` on the command line replaces the file's grid."""
    return load_structured(SweepConfig, path, overrides, what="sweep config", whole=("grid",))


def main(argv: list[str] | None = None, prog: str = "python -m slurm.sweep") -> int:
    from dnachunker.cli import parser as make_parser
    parser = make_parser(prog, __doc__)
    parser.add_argument("--sweep", help="sweep YAML (configs/sweep/)")
    parser.add_argument("--report", action="store_true",
                        help="only write the tables of what has finished so far; run nothing")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the sweep config")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_sweep(args.sweep, args.overrides)
        rows = run_sweep(cfg, report_only=args.report)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
