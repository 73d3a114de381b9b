"""Sweeps and studies: pretraining points, each exported and probed on an evaluation suite,
gathered into tables and plots.

    python -m studies.sweep --sweep configs/sweep/ablation.yaml [key=value ...]
    python -m studies.sweep --sweep configs/sweep/alpha_depth.yaml cluster=slurm slurm.gpus_per_node=8
    python -m studies.sweep --sweep configs/sweep/scaling.yaml --report    # tables of what has finished

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

Where jobs run is a runner (studies.runners): `cluster=local` runs points as local processes, `parallel` at a time (default: one per GPU, one
on a CPU machine), each with its share of the cores; an evaluation starts when its pretraining
has finished. `cluster=slurm` submits the pretraining as one job array (`parallel` = the array's
limit) and each evaluation as a job that depends on its element (afterok). Re-running the same
command skips finished pretraining and finished evaluations and resumes unfinished ones. When all
is done: results.csv / results.md / study.md (studies.report, studies.compare), scaling.md with
budgets (studies.scaling) and plots in <out_dir>, attached to the parent run.
A failed point is a row with its status, never the end of the sweep.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dnachunker.configlib import ConfigError, to_yaml
from dnachunker.fileio import write_text

from .compare import Columns
from .config import SweepConfig, load_sweep
from .points import FLOPS, Point, export_control, resolve
from .report import write_report
from .rows import rows as point_rows
from .runners import RUNNERS


def parent_run(cfg: SweepConfig, out: Path, uri: str, experiment: str) -> str:
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
    parent = parent_run(cfg, out, uri, experiment)
    tracking = [f"tracking.tracking_uri={uri}", f"tracking.experiment={experiment}",
                f"tracking.parent_run_id={parent}"]
    points = resolve(cfg, out, tracking)
    statuses = {}
    if not report_only:
        for p in points:
            if p.kind == "control":
                export_control(p, uri, experiment, parent)
        recorded = [p for p in points if p.recorded(tasks)]
        if recorded:
            print(f"[sweep] taken as recorded (no weights, every evaluation present): "
                  f"{', '.join(p.name for p in recorded)}", file=sys.stderr)
        done = [p.name for p in points if p.pretrain and p.finished() and p not in recorded]
        if done:
            print(f"[sweep] pretraining already finished, not run again: {', '.join(done)}", file=sys.stderr)
        statuses = RUNNERS[cfg.cluster]()(cfg, [p for p in points if p not in recorded], out)
        for p in points:
            if p.pretrain and p.finished() and not (p.out / FLOPS).is_file():
                _measure_flops(p)
    rows = [r for p in points for r in point_rows(p, statuses.get(p.name, {}), cols)]
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


def main(argv: list[str] | None = None, prog: str = "python -m studies.sweep") -> int:
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
