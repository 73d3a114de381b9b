"""A token-scaling study's table and picture: the score per column against tokens seen, one curve per
pretrained row (its budgets: the sweep's `budgets`), the baselines and the control as horizontal
lines. Nothing is extrapolated past the budgets measured: a line through three budgets says
little about the fourth.

scaling.md   per row and budget: tokens, valid MLM loss and score per column, mean ± std (std across
             pretraining seeds where a budget has two or more, else across probe seeds)
scaling.png  the curves, one panel per column and one for overall
"""
from __future__ import annotations

import statistics
from pathlib import Path

from dnachunker.fileio import atomic_file, markdown_table, write_text
from evaluation.stats import mean_std

from .compare import Columns, Config, pm


def _curves(configs: list[Config]) -> dict[str, list[Config]]:
    """Pretrained label -> its configurations by budget (labels evaluated at two or more budgets)."""
    by: dict[str, list[Config]] = {}
    for c in configs:
        if c.kind == "pretrain" and c.samples and c.tokens:
            by.setdefault(c.label, []).append(c)
    return {k: sorted(v, key=lambda c: c.step) for k, v in by.items() if len(v) > 1}


def write_scaling(configs: list[Config], columns: Columns, out: Path) -> list[Path]:
    curves = _curves(configs)
    if not curves:
        return []
    cols, caption = columns.shown, columns.caption()
    rows = [{"configuration": label, "step": c.step, "tokens": f"{statistics.fmean(c.tokens):.3g}",
             "pretraining seeds": c.seeds, "valid MLM loss": pm(c.pretraining.get("valid/mlm_loss", {}).values(), "{:.4f}"),
             **{col: "{:.3f} ± {:.3f}".format(*mean_std(c.samples[col])[:2]) for col in cols}}
            for label, cs in curves.items() for c in cs]
    text = (f"# Token scaling\n\n{caption}, mean ± std (across pretraining seeds where a budget has two or more, "
            "else across probe seeds), per row and budget:\n\n" + markdown_table(rows) + "\n")
    write_text(out / "scaling.md", text)
    return [out / "scaling.md", _plot(configs, curves, cols, caption, out / "scaling.png")]


def _plot(configs, curves, cols, caption: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(cols)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    flat = [c for c in configs if c.kind in ("baseline", "control") and c.samples]
    styles = ["--", "-.", ":", (0, (1, 1))]
    for ax, col in zip(axes[0], cols):
        for label, cs in curves.items():
            x = [statistics.fmean(c.tokens) for c in cs]
            ms = [mean_std(c.samples[col]) for c in cs]
            ax.errorbar(x, [m for m, _, _ in ms], yerr=[s for _, s, _ in ms], marker="o", capsize=3, label=label)
            for c in cs:  # every pretraining seed as a dot where a budget has several
                if c.seeds > 1:
                    ax.scatter([statistics.fmean(c.tokens)] * c.seeds,
                               [statistics.fmean(v.values()) for v in c.samples[col].values()], s=8, color="grey", zorder=3)
        for c, style in zip(flat, styles):
            m, s, _ = mean_std(c.samples[col])
            ax.axhline(m, ls=style, color="black" if c.kind == "baseline" else "grey", lw=1.2, label=f"{c.label}")
        ax.set_xscale("log")
        ticks = sorted({statistics.fmean(c.tokens) for cs in curves.values() for c in cs})
        ax.set_xticks(ticks, [f"{t / 1e6:.2g} M" if t >= 1e5 else f"{t:.3g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("tokens seen (bp)")
        ax.set_title(col)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(caption)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.suptitle(f"{caption} against pretraining tokens\nhorizontal lines: rows without pretraining; "
                 "grey dots: each pretraining seed", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.92))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path

