"""A sweep's points resolved into runs: each pretraining point once per seed, the untrained
control once per seed, each baseline once; what each of them evaluates, and where."""
from __future__ import annotations

import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from dnachunker.configlib import ConfigError, to_yaml
from dnachunker.fileio import write_text

from .config import SweepConfig

FLOPS = "flops.json"  # beside a point's summary.json: train.flops measured on its final export
CONTROL_LABEL = "random init (control)"
KINDS = ("pretrain", "control", "baseline")


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

    def eval_kinds(self) -> list[str]:
        """'eval' for the final evaluation, 'eval step000060' for an intermediate one."""
        return ["eval" + (f" {d.name}" if d.parent != self.out else "") for _, d, _ in self.evals()]

    def eval_jobs(self, suite: str) -> list[tuple[str, list[str]]]:
        """(job kind, `evaluation suite` arguments) for each of the point's evaluations."""
        suite = str(Path(suite).resolve())
        return [(kind, [model, "--suite", suite, "--out", str(d)])
                for kind, (model, d, _) in zip(self.eval_kinds(), self.evals())]

    def progress(self) -> str:
        """'step 120/300' from the point's metrics log (rank 0), for progress lines."""
        path = self.out / "metrics.jsonl"
        try:
            last = path.read_bytes()[-4096:].decode(errors="replace").strip().splitlines()[-1]
            return f"step {json.loads(last)['step']}/{self.cfg.max_steps}"
        except (OSError, IndexError, ValueError, KeyError):
            return "starting"

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


def resolve(cfg: SweepConfig, out: Path, tracking: list[str]) -> list[Point]:
    """Every point resolved (a bad key fails here, before anything is submitted): each pretraining
    point once per pretraining seed (a point's own `seed` key replaces the sweep's `seeds`), the
    control once per seed, and each baseline once. tracking: the MLflow overrides every run gets."""
    from train.config import load_config
    base = [str(Path(cfg.config).resolve())]
    made = []
    specs = [(i, dict(p), "pretrain") for i, p in enumerate(expand(cfg))]
    if cfg.evaluation and cfg.control:
        specs.append((len(specs), {}, "control"))
    factors = flops_factors(cfg, specs, out, base) if cfg.match_flops else {}
    for i, spec, kind in specs:
        label = CONTROL_LABEL if kind == "control" else spec.pop("label", None)
        seeds = [spec.pop("seed")] if "seed" in spec else cfg.seeds
        stem = "control" if kind == "control" else point_name(i, spec)
        scale = lambda steps: max(1, round(steps * factors.get(i, 1.0)))  # noqa: E731
        for seed in seeds:
            name = stem + (f"__seed-{seed}" if seeds != [0] else "")
            run_dir = out / name
            # with budgets: every point on the schedule of the longest, stopped at its own max_steps
            budget = ([f"max_steps={scale(max(cfg.budgets))}"] * ("max_steps" not in spec)
                      + [f"optim.decay_steps={scale(max(cfg.budgets))}"] * ("optim.decay_steps" not in spec)
                      if cfg.budgets else [])
            argv = ["--config", *base, *cfg.overrides, *budget, *point_overrides(spec), f"seed={seed}",
                    f"data.seed={seed}", f"out_dir={run_dir}", *tracking, f"tracking.run_name={name}"]
            try:
                resolved = load_config(argv[1], argv[2:])
                if i in factors and not cfg.budgets:  # no budgets: the run's own length, scaled
                    argv += [f"max_steps={scale(resolved.max_steps)}",
                             f"optim.decay_steps={scale(resolved.optim.decay_steps or resolved.max_steps)}"]
                    resolved = load_config(argv[1], argv[2:])
                if cfg.budgets and kind == "pretrain":
                    steps = sorted({scale(b) for b in cfg.budgets})
                    argv.append(f"export_steps={json.dumps([b for b in steps if b < resolved.max_steps])}")
                    resolved = load_config(argv[1], argv[2:])
            except ConfigError as e:
                raise ValueError(f"point {name}: {e}") from None
            made.append(Point(name, label or stem, spec, run_dir, argv, resolved, kind=kind, seed=seed))
    if cfg.evaluation:
        from evaluation.baselines import BASELINES
        made += [Point(b, BASELINES[b].label, {}, out / b, [], None, kind="baseline", baseline=b)
                 for b in cfg.baselines]
    return made


def flops_factors(cfg: SweepConfig, specs: list[tuple[int, dict, str]], out: Path, base: list[str]) -> dict[int, float]:
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
    for i, spec, kind in specs:
        if kind != "pretrain":
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
    ref = next(i for i, spec, _ in specs if spec.get("label") == cfg.match_flops)
    factors = {i: per_step[ref] / v for i, v in per_step.items()}
    print("[sweep] match_flops: steps scaled by " + ", ".join(
        f"{spec.get('label') or i} x{factors[i]:.2f}" for i, spec, _ in specs if i in factors), file=sys.stderr)
    return factors


def export_control(point: Point, uri: str, experiment: str, parent: str) -> None:
    """The untrained base model, exactly as pretraining initialises it (same seed), with an MLflow
    child run of its own for its evaluation."""
    if (point.out / "summary.json").is_file():
        return
    from mlflow.tracking import MlflowClient

    from train.build import init_model
    point.out.mkdir(parents=True, exist_ok=True)
    write_text(point.out / "config.yaml", to_yaml(point.cfg))
    init_model(point.cfg).save_pretrained(point.export)
    client = MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name=point.name,
                            tags={"mlflow.parentRunId": parent, "dnachunker.control": "random init"})
    client.set_terminated(run.info.run_id, "FINISHED")
    write_text(point.out / "summary.json", json.dumps({"step": 0, "tokens_seen": 0, "mlflow_run_id": run.info.run_id}))
