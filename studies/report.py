"""A study's tables and plots, from its rows (one per pretraining point, plus the control).

results.csv / results.md  every number of every row: the point's keys, pretraining (valid MLM loss
                          and accuracy, achieved compression, tokens, throughput), each task's
                          metric (the suite's; mean and std over seeds), their mean when the tasks
                          share a metric, status
study.md                  the paper-shaped table: rows = configurations (pretraining seeds gathered,
                          each at its largest budget, baselines included), columns = tasks (+ overall),
                          "mean ± std"; each pretrained row against the best baseline per column
                          and every row against the reference row, with 95 % bootstrap intervals
                          (studies.compare); and the paper's own numbers, labelled as such
scaling.md / scaling.png  with budgets: scores against tokens seen (studies.scaling)
<metric>_vs_<key>.png     overall score, valid MLM loss and total compression against each swept key
                          (α, depth), one line per value of the other keys; a bar chart per task
                          for studies without a numeric key (the ablation): <metric>_by_configuration.png
"""
from __future__ import annotations

import json
from pathlib import Path

from dnachunker.fileio import atomic_file, markdown_table, write_csv, write_text

from .compare import MLM_NOTE, Columns

PRETRAIN = ["valid/mlm_loss", "valid/mlm_accuracy", "valid/compression_0", "valid/compression_1",
            "valid/router_compression_0", "valid/router_compression_1", "main_positions_per_bp", "flops_per_bp",
            "tokens_seen", "train/bp_per_s", "step"]


def write_report(rows: list[dict], keys: list[str], cols: Columns, paper: dict, out: Path,
                 title: str, reference: str = "DNAChunker", published: list | None = None) -> list[Path]:
    """rows: {point, label, kind, seed, <keys>, <PRETRAIN>, <metric>/<column>, <metric>_std/<column>,
    probe/<column>, eval_dir, overall_<metric>(_std) when there is an overall, status}, one per
    evaluated model; cols: the columns, their metrics and protocol (studies.compare.Columns);
    published: the suite's references (evaluation.references), shown as its own table does.
    Returns the files written."""
    from evaluation.references import reference_table
    from .compare import comparisons, final, gather, table
    from .scaling import write_scaling
    metrics = cols.metrics
    columns, total = list(metrics), cols.overall
    header = ["point", "label", "kind", "seed", *keys, *PRETRAIN, *(f"{m}/{c}" for c, m in metrics.items()),
              *(f"{m}_std/{c}" for c, m in metrics.items()), *([total, f"{total}_std"] if total else []), "status"]
    write_csv(rows, out / "results.csv", header)
    write_text(out / "results.md", markdown_table(rows, header) + "\n")
    written = [out / "results.csv", out / "results.md"]
    if columns:
        configs = gather(rows, cols)
        last = final(configs)
        text = (f"# {title}\n\n{cols.caption()}, mean ± std: the std is across pretraining seeds where a row has "
                f"two or more, else across probe seeds (which leaves out what another pretraining run would "
                f"change); baselines: across their seeds. Every row at its largest budget; baselines are computed "
                f"by the study on the same subsamples, valid splits and seeds. {cols.protocol} {MLM_NOTE}.\n\n"
                + table(last, cols) + "\n\n" + comparisons(last, cols, reference))
        if paper:
            ref = [{"configuration": label, **{c: (f"{v[c]:.3f}" if c in v else "") for c in cols.shown}}
                   for label, v in paper.items()]
            text += ("\n**The paper's numbers** (its ablation table, at a 2 B-token budget on hg38; reference only, "
                     "not produced here; empty cells: not available to this project):\n\n" + markdown_table(ref) + "\n")
        text += "\n" + reference_table(published or [], list(metrics), "overall" if total else None)
        write_text(out / "study.md", text)
        written.append(out / "study.md")
        written += write_scaling(configs, cols, out)
    written += plot([r for r in rows if r.get("final") and r.get("kind") != "baseline"], keys, cols, out,
                    last if columns else [])
    print(markdown_table(rows, ["label", "seed", "step", *(f"{m}/{c}" for c, m in metrics.items()),
                                *([total] if total else []), "valid/mlm_loss", "status"]))
    return written


def _x(v) -> list:
    """A swept value as a sortable list of numbers: 2 -> [2], [0.3, 0.5] -> [0.3, 0.5]."""
    v = json.loads(v) if isinstance(v, str) else v
    return v if isinstance(v, list) else [v]


def plot(rows: list[dict], keys: list[str], cols: Columns, out: Path, configs: list) -> list[Path]:
    """rows: the pretrained rows at their final budget (seeds averaged in the line plots); configs:
    the study's configurations (studies.compare), baselines included, for the ablation's bars."""
    from evaluation.stats import mean_std
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r.get("valid/mlm_loss") is not None]
    columns, total = list(cols.metrics), cols.overall
    panels = ([(total, f"overall {cols.caption()}")] if total else []) + [
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
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
        xs = sorted({json.dumps(_x(r[key])) for r in ok}, key=json.loads)  # [0.3, 0.5] < [0.5, 0.5] < [0.7, 0.5]
        for ax, (metric, name) in zip(axes[0], panels):
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
        written.append(_save(fig, path))
    configs = [c for c in configs if c.samples]  # an unfinished row has no bar, rather than a bar at 0
    if columns and not numeric and configs:  # an ablation: one bar per configuration, per task and overall
        shown = cols.shown
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(configs) * len(shown) / 3), 3.8))
        width = 0.8 / len(configs)
        for i, c in enumerate(configs):
            ms = [mean_std(c.samples[col]) if c.samples.get(col) else (0.0, 0.0, "") for col in shown]
            ax.bar([j + i * width for j in range(len(shown))], [m for m, _, _ in ms], width, yerr=[s for _, s, _ in ms],
                   label=c.label, capsize=2, hatch="//" if c.kind == "baseline" else None,
                   edgecolor="white" if c.kind == "baseline" else None)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shown))], shown)
        ax.set_ylabel(f"{cols.caption()} (baselines hatched)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"{total.removeprefix('overall_') if total else 'score'}_by_configuration.png"
        written.append(_save(fig, path))
    return written


def _save(fig, path: Path) -> Path:
    """The figure as a PNG, written whole or not at all; closed."""
    import matplotlib.pyplot as plt
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
