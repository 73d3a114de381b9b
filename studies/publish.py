"""Copy what describes a finished study from its run directory into a published one (results/):
its tables, plots, resolved sweep and job record, and per point the resolved training config, the
summaries (final and per budget), the measured training FLOPs, every evaluation JSON and its
per-example predictions. Weights, checkpoints, logs and the
MLflow store stay behind.

    python -m studies.publish runs/sweeps/scaling results/scaling
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

TOP = ["study.md", "results.csv", "results.md", "scaling.md", "sweep.yaml", "jobs.json", "flops_match.json", "*.png"]
PER_POINT = ["config.yaml", "summary.json", "flops.json", "exports/*/summary.json", "eval/**/*.json",
             "eval/**/*.preds.npz"]


def publish(run: Path, dest: Path) -> list[Path]:
    if not (run / "sweep.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a study's run directory (no sweep.yaml)")
    dest.mkdir(parents=True, exist_ok=True)
    copied = [shutil.copy2(f, dest / f.name) for pattern in TOP for f in sorted(run.glob(pattern))]
    for point in sorted(p for p in run.iterdir() if p.is_dir() and (p / "eval").is_dir()):
        for pattern in PER_POINT:
            for f in sorted(point.glob(pattern)):
                target = dest / "points" / f.relative_to(run)
                target.parent.mkdir(parents=True, exist_ok=True)
                copied.append(shutil.copy2(f, target))
    return [Path(c) for c in copied]


def main(argv: list[str] | None = None, prog: str = "python -m studies.publish") -> int:
    from dnachunker.cli import parser
    ap = parser(prog, __doc__)
    ap.add_argument("run", help="the study's out_dir (runs/sweeps/<name>)")
    ap.add_argument("dest", help="where to publish it (results/<name>)")
    a = ap.parse_args(argv)
    try:
        files = publish(Path(a.run), Path(a.dest))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(files)} files -> {a.dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
