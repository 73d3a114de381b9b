"""A study's tables and plots, from its rows (one per pretraining point, plus the control).

results.csv / results.md  every number of every row: the point's keys, pretraining (valid MLM loss
                          and accuracy, achieved compression, tokens, throughput), downstream MCC
                          per task (mean and std over seeds), overall MCC, status
study.md                  the paper-shaped table: rows = configurations, columns = tasks + overall
                          MCC, "mean ± std" over seeds; and the paper's own numbers for the same
                          rows and columns, labelled as such, where the spec gives them
<metric>_vs_<key>.png     overall MCC, valid MLM loss and total compression against each swept key
                          (α, depth), one line per value of the other keys; a bar chart per task
                          for studies without a numeric key (the ablation)
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from dnachunker.fileio import atomic_file, markdown_table, write_csv, write_text

PRETRAIN = ["valid/mlm_loss", "valid/mlm_accuracy", "valid/compression_0", "valid/compression_1",
            "valid/router_compression_0", "valid/router_compression_1", "tokens_seen", "train/bp_per_s", "step"]


def overall(task_rows: dict[str, list[dict]]) -> tuple[float, float] | None:
    """Mean over tasks of the MCC, per seed -> (mean, std) over the seeds every task has."""
    if not task_rows:
        return None
    seeds = set.intersection(*({r["seed"] for r in rows} for rows in task_rows.values()))
    per_seed = [statistics.fmean(next(r["mcc"] for r in rows if r["seed"] == s) for rows in task_rows.values())
                for s in sorted(seeds)]
    if not per_seed:
        return None
    return statistics.fmean(per_seed), statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0


def _pm(mean, std) -> str:
    return "" if mean is None else f"{mean:.3f} ± {std:.3f}"


def write_report(rows: list[dict], keys: list[str], columns: list[str], paper: dict, out: Path,
                 title: str) -> list[Path]:
    """rows: {point, label, <keys>, <PRETRAIN>, mcc/<column>, mcc_std/<column>, overall_mcc,
    overall_mcc_std, status}. Returns the files written."""
    header = ["point", "label", *keys, *PRETRAIN, *(f"mcc/{c}" for c in columns), *(f"mcc_std/{c}" for c in columns),
              "overall_mcc", "overall_mcc_std", "status"]
    write_csv(rows, out / "results.csv", header)
    write_text(out / "results.md", markdown_table(rows, header) + "\n")
    written = [out / "results.csv", out / "results.md"]
    if columns:
        table = [{"configuration": r["label"], **{c: _pm(r.get(f"mcc/{c}"), r.get(f"mcc_std/{c}")) for c in columns},
                  "overall": _pm(r.get("overall_mcc"), r.get("overall_mcc_std")),
                  "tokens": f"{r['tokens_seen']:.3g}" if r.get("tokens_seen") else "0 (untrained)",
                  "status": r["status"]} for r in rows]
        text = f"# {title}\n\nMCC, mean ± std over seeds (linear probe).\n\n" + markdown_table(table) + "\n"
        if paper:
            ref = [{"configuration": label, **{c: (f"{v[c]:.3f}" if c in v else "") for c in [*columns, "overall"]}}
                   for label, v in paper.items()]
            text += ("\n**The paper's numbers** (its ablation table, at a 2 B-token budget on hg38; reference only, "
                     "not produced here; empty cells: not available to this project):\n\n" + markdown_table(ref) + "\n")
        write_text(out / "study.md", text)
        written.append(out / "study.md")
    written += plot(rows, keys, columns, out)
    print(markdown_table(rows, ["label", *(f"mcc/{c}" for c in columns), "overall_mcc", "valid/mlm_loss", "status"]))
    return written


def _x(v) -> list:
    """A swept value as a sortable list of numbers: 2 -> [2], [0.3, 0.5] -> [0.3, 0.5]."""
    v = json.loads(v) if isinstance(v, str) else v
    return v if isinstance(v, list) else [v]


def plot(rows: list[dict], keys: list[str], columns: list[str], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r.get("valid/mlm_loss") is not None]
    metrics = ([("overall_mcc", "overall MCC (probe)")] if columns else []) + [
        ("valid/mlm_loss", "final valid MLM loss"), ("compression", "achieved compression (stage 0 x 1)")]
    for r in ok:
        r["compression"] = r["valid/compression_0"] * r.get("valid/compression_1", 1.0)
    # keys swept over every pretrained row with numbers as values (α, depth): line plots
    numeric = [k for k in keys if ok and all(k in r and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                             for x in _x(r[k])) for r in ok)
               and len({json.dumps(_x(r[k])) for r in ok}) > 1]
    written = []
    for key in numeric:
        others = [k for k in keys if k != key]
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
        xs = sorted({json.dumps(_x(r[key])) for r in ok}, key=json.loads)  # [0.3, 0.5] < [0.5, 0.5] < [0.7, 0.5]
        for ax, (metric, name) in zip(axes[0], metrics):
            for series in sorted({tuple(str(r.get(k, "")) for k in others) for r in ok}):
                pts = sorted((xs.index(json.dumps(_x(r[key]))), r[metric]) for r in ok
                             if key in r and r.get(metric) is not None
                             and tuple(str(r.get(k, "")) for k in others) == series)
                label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, series)) or None
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            ax.set_xticks(range(len(xs)), [", ".join(f"{x:g}" for x in json.loads(v)) for v in xs])
            ax.set_xlabel(key.split(".")[-1] + (" (α per stage)" if "target_ratio" in key else ""))
            ax.set_ylabel(name)
        if others:
            axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"metrics_vs_{key.split('.')[-1]}.png"
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(path)
    if columns and not numeric:  # an ablation: one bar per configuration, per task and overall
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) * (len(columns) + 1) / 3), 3.8))
        width = 0.8 / max(len(rows), 1)
        for i, r in enumerate(rows):
            ys = [r.get(f"mcc/{c}") or 0.0 for c in columns] + [r.get("overall_mcc") or 0.0]
            es = [r.get(f"mcc_std/{c}") or 0.0 for c in columns] + [r.get("overall_mcc_std") or 0.0]
            ax.bar([j + i * width for j in range(len(ys))], ys, width, yerr=es, label=r["label"], capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns) + 1)], [*columns, "overall"])
        ax.set_ylabel("MCC (linear probe)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / "mcc_by_configuration.png"
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(path)
    return written
