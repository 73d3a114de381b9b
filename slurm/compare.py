"""A study's rows gathered into configurations and compared: the table of study.md, its baselines,
its noise, and which differences exceed that noise (evaluation.stats).

A configuration is a row label at one budget (pretraining step); its pretraining seeds are
replicates. Rows are the sweep's: one per evaluated model, with `probe/<column>` = {probe seed:
score} in the column's metric (the suite's); "overall", their mean, exists when all columns share
one metric.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from dnachunker.fileio import markdown_table
from evaluation.stats import mean_std, overall, paired_bootstrap

BOOTSTRAP = ("paired hierarchical bootstrap (evaluation.stats: resample pretraining seeds, then probe seeds, "
             "paired across rows; 10 000 resamples; 95 % percentile interval)")


def overall_name(metrics: dict[str, str]) -> str | None:
    """'overall_<metric>' when every column reports the same metric (their mean is then a number
    worth reading), else None."""
    return f"overall_{next(iter(metrics.values()))}" if metrics and len(set(metrics.values())) == 1 else None


def metric_caption(metrics: dict[str, str]) -> str:
    """'MCC', or 'histone: MCC, enhancers: accuracy' when the columns differ."""
    names = {m: m.upper() if m in ("mcc", "auroc") else m for m in metrics.values()}
    if len(set(metrics.values())) == 1:
        return names[next(iter(metrics.values()))]
    return ", ".join(f"{c}: {names[m]}" for c, m in metrics.items())


def columns(metrics: dict[str, str]) -> list[str]:
    """The table's columns: the tasks, and "overall" when they share a metric."""
    return [*metrics, *(["overall"] if overall_name(metrics) else [])]


@dataclass
class Config:
    label: str
    kind: str                        # pretrain | control | baseline
    step: int                        # pretraining steps (0: untrained or not pretrained)
    samples: dict = field(default_factory=dict)  # column (and "overall") -> {pretraining seed: {probe seed: score}}
    tokens: list = field(default_factory=list)
    status: list = field(default_factory=list)

    @property
    def seeds(self) -> int:
        return len(next(iter(self.samples.values()))) if self.samples else 0


def gather(rows: list[dict], metrics: dict[str, str]) -> list[Config]:
    """Rows -> configurations (label, step), in the rows' order; only rows with every column."""
    cols = list(metrics)
    out: dict[tuple, Config] = {}
    for r in rows:
        step = r.get("step") or 0 if r.get("kind") != "baseline" else 0
        c = out.setdefault((r["label"], step), Config(r["label"], r.get("kind", "pretrain"), step))
        c.status.append(r["status"])
        if r.get("tokens_seen") is not None:
            c.tokens.append(r["tokens_seen"])
        if all(f"probe/{col}" in r for col in cols):
            for col in cols:
                c.samples.setdefault(col, {})[r.get("seed")] = r[f"probe/{col}"]
    for c in out.values():
        if c.samples and overall_name(metrics):
            c.samples["overall"] = overall({col: c.samples[col] for col in cols})
    return list(out.values())


def final(configs: list[Config]) -> list[Config]:
    """Each label at its largest budget."""
    last = {}
    for c in configs:
        if c.label not in last or c.step > last[c.label].step:
            last[c.label] = c
    return list(last.values())


def _pm(c: Config, col: str) -> str:
    if col not in c.samples or not c.samples[col]:
        return ""
    m, s, _ = mean_std(c.samples[col])
    return f"{m:.3f} ± {s:.3f}"


def _delta(a: Config, b: Config, col: str) -> tuple[float, float, float] | None:
    if col not in a.samples or col not in b.samples or not a.samples[col] or not b.samples[col]:
        return None
    return paired_bootstrap(a.samples[col], b.samples[col])


def _fmt(d) -> str:
    if d is None:
        return ""
    delta, lo, hi = d
    mark = " ↑" if lo > 0 else " ↓" if hi < 0 else ""
    return f"{delta:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"


def table(configs: list[Config], metrics: dict[str, str]) -> str:
    """The study's table: every configuration at its final budget, with its seeds and tokens."""
    rows = [{"configuration": c.label, **{col: _pm(c, col) for col in columns(metrics)},
             "pretraining seeds": "–" if c.kind == "baseline" else c.seeds or "",
             "tokens": ("– (no pretraining)" if c.kind == "baseline" else "0 (untrained)" if c.kind == "control"
                        else f"{statistics.fmean(c.tokens):.3g}" if c.tokens else ""),
             "status": "; ".join(sorted({s for s in c.status if s != "ok"})) or "ok"} for c in configs]
    return markdown_table(rows)


def best_baselines(configs: list[Config], cols: list[str]) -> dict[str, Config]:
    """column -> the baseline with the highest mean there."""
    base = [c for c in configs if c.kind == "baseline" and c.samples]
    return {col: max(base, key=lambda c: mean_std(c.samples[col])[0]) for col in cols} if base else {}


def comparisons(configs: list[Config], metrics: dict[str, str], reference: str) -> str:
    """Markdown: each pretrained row against the best baseline per column, and every row against
    the reference row; each difference with its 95 % interval, ↑ / ↓ where it excludes 0."""
    cols, tasks = columns(metrics), list(metrics)
    text = [f"Differences are row − comparison ({metric_caption(metrics)}), with a 95 % interval from a {BOOTSTRAP}; ↑ / ↓: the "
            "interval excludes 0 (the difference exceeds the noise that these seeds measure)."]
    best = best_baselines(configs, cols)
    pretrained = [c for c in configs if c.kind == "pretrain" and c.samples]
    if best and pretrained:
        text.append("\n**Against the best baseline of each column** (" + ", ".join(
            f"{col}: {b.label}" for col, b in best.items()) + "):\n")
        deltas = {(c.label, col): _delta(c, best[col], col) for c in pretrained for col in cols}
        text.append(markdown_table([{"configuration": c.label, **{col: _fmt(deltas[c.label, col]) for col in cols}}
                                    for c in pretrained]))
        above = {col: [c.label for c in pretrained if (d := deltas[c.label, col]) and d[1] > 0] for col in tasks}
        won = [col for col in tasks if above[col]]
        text.append(f"\nColumns where a pretrained row is above the best baseline beyond the noise: "
                    f"{len(won)} of {len(tasks)}" + (f" ({'; '.join(f'{col}: ' + ', '.join(above[col]) for col in won)})"
                                                      if won else "") + ".")
    ref = next((c for c in configs if c.label == reference and c.samples), None)
    others = [c for c in configs if c is not ref and c.samples]
    if ref and others:
        text.append(f"\n**Against {reference}:**\n")
        text.append(markdown_table([{"configuration": c.label, **{col: _fmt(_delta(c, ref, col)) for col in cols}}
                                    for c in others]))
    return "\n".join(text) + "\n"
