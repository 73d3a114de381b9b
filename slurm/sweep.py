"""Scaling sweeps with submitit: one job array, one full pretraining run per point.

    python -m slurm.sweep --sweep configs/sweep/alpha_depth.yaml [key=value ...]
    python -m slurm.sweep --sweep configs/sweep/alpha_depth.yaml cluster=slurm slurm.gpus_per_node=8

Points are the cartesian product of `grid` plus any explicit `points`; every key is a
pretraining override (`model.target_ratio`, `model.main_layers`, `optim.lr`, ...).
Each point trains in <out_dir>/<point>/ and logs an MLflow child run under one parent run
(<out_dir>/mlflow.db by default). When all jobs are done the results are gathered into
<out_dir>/results.csv and results.md (final valid loss, achieved compression per stage,
throughput) and plotted to <out_dir>/loss_vs_alpha_depth.png. Re-running the same command
resumes: every run continues from its newest checkpoint (finished runs just report again).
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dnachunker.config import ConfigError, load_structured, to_yaml
from dnachunker.fileio import atomic_file, markdown_table, write_csv, write_text


@dataclass
class SlurmConfig:
    partition: str | None = None
    time_min: int = 24 * 60
    nodes: int = 1
    tasks_per_node: int = 1          # one per GPU
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: int | None = None
    array_parallelism: int = 64
    additional: dict = field(default_factory=dict)  # any other sbatch option, e.g. {account: x}


@dataclass
class SweepConfig:
    name: str = "sweep"
    config: str = "configs/pretrain/tiny_chr20.yaml"   # base pretraining config
    overrides: list[str] = field(default_factory=list)  # applied to every point
    grid: dict = field(default_factory=dict)             # key -> list of values
    points: list = field(default_factory=list)           # explicit list of {key: value}
    cluster: str = "local"                               # local | slurm | debug (in-process)
    out_dir: str = "runs/sweeps/sweep"
    tracking_uri: str | None = None                      # default sqlite:///<out_dir>/mlflow.db
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


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
    return f"p{i:02d}_" + "__".join(f"{k.split('.')[-1]}-{short(v)}" for k, v in point.items())


def point_overrides(point: dict) -> list[str]:
    """{'model.target_ratio': [0.3, 0.5], 'optim.lr': 1e-3} -> pretraining overrides."""
    return [f"{k}={json.dumps(v)}" for k, v in point.items()]


class PretrainJob:
    """The function each array task runs: a full pretraining run, then its summary."""

    def __call__(self, argv: list[str], out_dir: str) -> dict:
        try:
            import submitit
            if submitit.JobEnvironment().cluster == "slurm":  # ranks and master from the allocation
                submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        except RuntimeError:  # not inside a submitit job (debug executor)
            pass
        from train.pretrain import main
        rc = main(argv)
        summary = Path(out_dir) / "summary.json"
        if rc != 0 or not summary.is_file():
            return {"status": f"exit code {rc}" + (" (preempted: re-run the sweep to resume)" if rc == 75 else "")}
        return {"status": "ok", **json.loads(summary.read_text())}


def _executor(cfg: SweepConfig, folder: Path):
    import submitit
    if cfg.cluster == "debug":
        return submitit.DebugExecutor(folder=folder)
    if cfg.cluster == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=cfg.slurm.time_min)
        return ex
    if cfg.cluster != "slurm":
        raise ValueError(f"cluster must be local, slurm or debug, got {cfg.cluster!r}")
    s = cfg.slurm
    ex = submitit.SlurmExecutor(folder=folder)
    params = dict(time=s.time_min, nodes=s.nodes, ntasks_per_node=s.tasks_per_node,
                  cpus_per_task=s.cpus_per_task, array_parallelism=s.array_parallelism,
                  job_name=f"dnachunker-{cfg.name}", additional_parameters=dict(s.additional))
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    if s.partition:
        params["partition"] = s.partition
    if s.mem_gb:
        params["mem"] = f"{s.mem_gb}G"
    ex.update_parameters(**params)
    return ex


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
    state.write_text(json.dumps({"parent_run_id": run.info.run_id}))
    return run.info.run_id


def run_sweep(cfg: SweepConfig) -> list[dict]:
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sweep.yaml", to_yaml(cfg))
    uri = cfg.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    experiment = f"dnachunker-sweep-{cfg.name}"
    parent = _parent_run(cfg, out, uri, experiment)
    points = expand(cfg)
    names = [point_name(i, p) for i, p in enumerate(points)]
    args = []
    for name, point in zip(names, points):
        run_dir = out / name
        argv = ["--config", str(Path(cfg.config).resolve()), *cfg.overrides, *point_overrides(point),
                f"out_dir={run_dir}", f"tracking.tracking_uri={uri}", f"tracking.experiment={experiment}",
                f"tracking.parent_run_id={parent}", f"tracking.run_name={name}"]
        args.append((argv, str(run_dir)))
    executor = _executor(cfg, out / "submitit")
    jobs = executor.map_array(PretrainJob(), [a for a, _ in args], [d for _, d in args])
    print(f"sweep {cfg.name}: {len(jobs)} jobs submitted ({cfg.cluster}): "
          f"{', '.join(str(j.job_id) for j in jobs)}", file=sys.stderr)
    rows = []
    for name, point, job in zip(names, points, jobs):
        try:
            result = job.result()
        except Exception as e:  # a failed job is a row in the table, not a crash of the sweep
            result = {"status": f"failed: {str(e).strip().splitlines()[-1][:200]}"}
        rows.append({"point": name, **{k: json.dumps(v) for k, v in point.items()}, **result})
    write_results(rows, out, points)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    for f in ("results.csv", "results.md", "loss_vs_alpha_depth.png"):
        if (out / f).is_file():
            client.log_artifact(parent, str(out / f))
    client.set_terminated(parent, "FINISHED" if all(r["status"] == "ok" for r in rows) else "FAILED")
    return rows


COLUMNS = ["valid/mlm_loss", "valid/mlm_accuracy", "valid/compression_0", "valid/compression_1",
           "train/bp_per_s", "step", "status"]


def write_results(rows: list[dict], out: Path, points: list[dict]) -> None:
    keys = list(dict.fromkeys(k for p in points for k in p))
    header = ["point", *keys, *COLUMNS]
    write_csv(rows, out / "results.csv", header)
    md = markdown_table(rows, header)
    write_text(out / "results.md", md + "\n")
    print(md)
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        plot(ok, keys, out / "loss_vs_alpha_depth.png")


def plot(rows: list[dict], keys: list[str], path: Path) -> None:
    """Final valid loss against the first α-like key, one line per value of the other keys."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xkey = next((k for k in keys if "target_ratio" in k), keys[0])
    others = [k for k in keys if k != xkey]
    xs = sorted({r[xkey] for r in rows}, key=lambda v: json.loads(v) if v[0] != '"' else v)
    fig, ax = plt.subplots(figsize=(6, 4))
    for series in sorted({tuple(r.get(k, "") for k in others) for r in rows}):
        pts = [(xs.index(r[xkey]), r["valid/mlm_loss"]) for r in rows
               if tuple(r.get(k, "") for k in others) == series]
        pts.sort()
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, series)) or "loss"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(xkey.split(".")[-1] + (" (α per stage)" if "target_ratio" in xkey else ""))
    ax.set_ylabel("final valid MLM loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slurm.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", help="sweep YAML (configs/sweep/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the sweep config")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_structured(SweepConfig, args.sweep, args.overrides, what="sweep config")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        rows = run_sweep(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
