"""A point's rows: one per evaluated model (each budget's export), with its pretraining numbers,
each column's scores and the status of what ran."""
from __future__ import annotations

import json

from .compare import Columns
from .points import FLOPS, Point
from .report import PRETRAIN


def rows(p: Point, status: dict, cols: Columns) -> list[dict]:
    """One row per evaluated model of the point (each budget), or one for the point without an
    evaluation. `<metric>/<column>` is the mean over probe seeds, `probe/<column>` {probe seed:
    value} and `eval_dir` (its per-example predictions) for the study's statistics."""
    from evaluation.stats import mean_std, overall
    out, metrics = [], cols.metrics
    evals = list(zip(p.eval_kinds(), p.evals())) if metrics else [("eval", p.evals()[-1])]
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
        out.append(row)
    return out
