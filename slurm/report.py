"""A study's tables and plots, from its rows (one per pretraining point, plus the control).

results.csv / results.md  every number of every row: the point's keys, pretraining (valid MLM loss
                          and accuracy, achieved compression, tokens, throughput), downstream MCC
                          per task (mean and std over seeds), overall MCC, status
study.md                  the paper-shaped table: rows = configurations (pretraining seeds gathered,
                          each at its largest budget, baselines included), columns = tasks + overall
                          MCC, "mean ± std"; each pretrained row against the best baseline per column
                          and every row against the reference row, with 95 % bootstrap intervals
                          (slurm.compare); and the paper's own numbers, labelled as such
scaling.md / scaling.png  with budgets: MCC against tokens seen (slurm.scaling)
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
                 title: str, reference: str = "DNAChunker") -> list[Path]:
    """rows: {point, label, kind, seed, <keys>, <PRETRAIN>, mcc/<column>, mcc_std/<column>,
    probe/<column>, overall_mcc, overall_mcc_std, status}, one per evaluated model. Returns the
    files written."""
    from .compare import comparisons, final, gather, table
    from .scaling import write_scaling
    header = ["point", "label", "kind", "seed", *keys, *PRETRAIN, *(f"mcc/{c}" for c in columns),
              *(f"mcc_std/{c}" for c in columns), "overall_mcc", "overall_mcc_std", "status"]
    write_csv(rows, out / "results.csv", header)
    write_text(out / "results.md", markdown_table(rows, header) + "\n")
    written = [out / "results.csv", out / "results.md"]
    if columns:
        configs = gather(rows, columns)
        last = final(configs)
        text = (f"# {title}\n\nMCC (linear probe), mean ± std: the std is across pretraining seeds where a row has "
                f"two or more, else across probe seeds (which leaves out what another pretraining run would "
                f"change). Every row at its largest budget; baselines are computed by the study on the same "
                f"subsamples, valid splits and seeds.\n\n" + table(last, columns) + "\n\n"
                + comparisons(last, columns, reference))
        if paper:
            ref = [{"configuration": label, **{c: (f"{v[c]:.3f}" if c in v else "") for c in [*columns, "overall"]}}
                   for label, v in paper.items()]
            text += ("\n**The paper's numbers** (its ablation table, at a 2 B-token budget on hg38; reference only, "
                     "not produced here; empty cells: not available to this project):\n\n" + markdown_table(ref) + "\n")
        write_text(out / "study.md", text)
        written.append(out / "study.md")
        written += write_scaling(configs, columns, out)
    written += plot([r for r in rows if r.get("final") and r.get("kind") != "baseline"], keys, columns, out,
                    last if columns else [])
    print(markdown_table(rows, ["label", "seed", "step", *(f"mcc/{c}" for c in columns), "overall_mcc",
                                "valid/mlm_loss", "status"]))
    return written


def _x(v) -> list:
    """A swept value as a sortable list of numbers: 2 -> [2], [0.3, 0.5] -> [0.3, 0.5]."""
    v = json.loads(v) if isinstance(v, str) else v
    return v if isinstance(v, list) else [v]


def plot(rows: list[dict], keys: list[str], columns: list[str], out: Path, configs: list) -> list[Path]:
    """rows: the pretrained rows at their final budget (seeds averaged in the line plots); configs:
    the study's configurations (slurm.compare), baselines included, for the ablation's bars."""
    from evaluation.stats import mean_std
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
                at: dict[int, list] = {}  # x -> the values of its pretraining seeds
                for r in ok:
                    if key in r and r.get(metric) is not None and tuple(str(r.get(k, "")) for k in others) == series:
                        at.setdefault(xs.index(json.dumps(_x(r[key]))), []).append(r[metric])
                pts = sorted((x, sum(v) / len(v)) for x, v in at.items())
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
    if columns and not numeric and configs:  # an ablation: one bar per configuration, per task and overall
        cols = [*columns, "overall"]
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(configs) * len(cols) / 3), 3.8))
        width = 0.8 / len(configs)
        for i, c in enumerate(configs):
            ms = [mean_std(c.samples[col]) if c.samples.get(col) else (0.0, 0.0, "") for col in cols]
            ax.bar([j + i * width for j in range(len(cols))], [m for m, _, _ in ms], width, yerr=[s for _, s, _ in ms],
                   label=c.label, capsize=2, hatch="//" if c.kind == "baseline" else None,
                   edgecolor="white" if c.kind == "baseline" else None)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], cols)
        ax.set_ylabel("MCC (linear probe; baselines hatched)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / "mcc_by_configuration.png"
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(path)
    return written
