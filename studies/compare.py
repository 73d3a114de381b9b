"""A study's rows gathered into configurations and compared: the table of study.md, its baselines,
its noise, and which differences exceed that noise (evaluation.stats.compare).

A configuration is a row label at one budget (pretraining step); its pretraining seeds are
replicates. Rows are the sweep's: one per evaluated model, with `probe/<column>` = {probe seed:
score} in the column's metric (the suite's), `eval_dir` where its evaluation JSONs and per-example
predictions are, and its pretraining numbers (validation MLM loss, compression, measured FLOPs).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from dnachunker.fileio import markdown_table
from evaluation.stats import METHOD, MIN_UNITS, Row, compare, mean_std, overall, examples_term

# per-row pretraining numbers the tables show, each a mean ± std over pretraining seeds
PRETRAINING = {"valid/mlm_loss": ("valid MLM loss", "{:.4f}"),
               "main_positions_per_bp": ("main-network positions / bp", "{:.3f}"),
               "flops_per_bp": ("training MFLOP / bp", "{:.2f}")}
MLM_NOTE = ("valid MLM loss: cross-entropy per masked base (nats; soft-masked repeats weighted 0.1) on the same "
            "validation windows and masks for every row; main-network positions / bp: stage-0 × stage-1 "
            "compression on those windows, with mask protection's forced boundaries; training MFLOP / bp: one "
            "forward + backward of the final model on a validation micro-batch (train.flops: matrix products "
            "counted, attention added by hand)")


@dataclass
class Columns:
    """What a study's table reads: each column's metric, the columns its overall mean averages, and
    the protocol choices that move a column (probes, valid split), in words."""
    metrics: dict[str, str]
    overall_of: list[str] | None = None        # None: every column
    protocol: str = ""

    def __post_init__(self):
        if self.overall_of is None:
            self.overall_of = list(self.metrics)

    @property
    def overall(self) -> str | None:
        """'overall_<metric>' when the averaged columns share a metric (their mean is then a number
        worth reading), else None."""
        used = {self.metrics[c] for c in self.overall_of}
        return f"overall_{used.pop()}" if len(used) == 1 else None

    @property
    def shown(self) -> list[str]:
        """The table's columns: the tasks, and "overall" when there is one."""
        return [*self.metrics, *(["overall"] if self.overall else [])]

    def caption(self) -> str:
        """'MCC', or 'histone: MCC, enhancers: accuracy' when the columns differ."""
        names = {m: m.upper() if m in ("mcc", "auroc") else m for m in self.metrics.values()}
        if len(set(self.metrics.values())) == 1:
            return names[next(iter(self.metrics.values()))]
        return ", ".join(f"{c}: {names[m]}" for c, m in self.metrics.items())


@dataclass
class Config:
    label: str
    kind: str                        # pretrain | control | baseline
    step: int                        # pretraining steps (0: untrained or not pretrained)
    samples: dict = field(default_factory=dict)      # column (and "overall") -> {pretraining seed: {probe seed: score}}
    predictions: dict = field(default_factory=dict)  # column -> {pretraining seed: Predictions}
    pretraining: dict = field(default_factory=dict)  # PRETRAINING key -> {pretraining seed: value}
    tokens: list = field(default_factory=list)
    status: list = field(default_factory=list)

    @property
    def seeds(self) -> int:
        return len(next(iter(self.samples.values()))) if self.samples else 0

    def row(self, col: str, metric: str) -> Row:
        return Row(self.samples[col], self.predictions.get(col), metric)


def gather(rows: list[dict], cols: Columns) -> list[Config]:
    """Rows -> configurations (label, step), in the rows' order; scores only from rows with every column."""
    from evaluation.predictions import Predictions
    from evaluation.suite import PREDICTIONS
    out: dict[tuple, Config] = {}
    for r in rows:
        step = r.get("step") or 0 if r.get("kind") != "baseline" else 0
        c = out.setdefault((r["label"], step), Config(r["label"], r.get("kind", "pretrain"), step))
        c.status.append(r["status"])
        if r.get("tokens_seen") is not None:
            c.tokens.append(r["tokens_seen"])
        for key in PRETRAINING:
            if r.get(key) is not None:
                c.pretraining.setdefault(key, {})[r.get("seed")] = r[key]
        if all(f"probe/{col}" in r for col in cols.metrics):
            for col in cols.metrics:
                c.samples.setdefault(col, {})[r.get("seed")] = r[f"probe/{col}"]
                path = Path(r["eval_dir"]) / f"{col}{PREDICTIONS}" if r.get("eval_dir") else None
                if path is not None and path.is_file():
                    c.predictions.setdefault(col, {})[r.get("seed")] = Predictions.load(path)
    for c in out.values():
        c.predictions = {col: p for col, p in c.predictions.items() if set(p) == set(c.samples[col])}
        if c.samples and cols.overall:
            c.samples["overall"] = overall({col: c.samples[col] for col in cols.overall_of})
    return list(out.values())


def final(configs: list[Config]) -> list[Config]:
    """Each label at its largest budget."""
    last = {}
    for c in configs:
        if c.label not in last or c.step > last[c.label].step:
            last[c.label] = c
    return list(last.values())


def pm(values, fmt: str = "{:.3f}") -> str:
    """'mean ± std' of a list of values (the std across them), or the one value."""
    values = list(values)
    if not values:
        return ""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.fmean(values))} ± {fmt.format(statistics.stdev(values))}"


def _pm(c: Config, col: str) -> str:
    if col not in c.samples or not c.samples[col]:
        return ""
    m, s, _ = mean_std(c.samples[col])
    return f"{m:.3f} ± {s:.3f}"


def table(configs: list[Config], cols: Columns) -> str:
    """The study's table: every configuration at its final budget, with its pretraining numbers,
    seeds and tokens."""
    rows = []
    for c in configs:
        row = {"configuration": c.label}
        row.update({name: pm(c.pretraining.get(key, {}).values(), fmt) for key, (name, fmt) in PRETRAINING.items()})
        row.update({col: _pm(c, col) for col in cols.shown})
        row["pretraining seeds"] = "–" if c.kind == "baseline" else c.seeds or ""
        row["tokens"] = ("– (no pretraining)" if c.kind == "baseline" else "0 (untrained)" if c.kind == "control"
                         else f"{statistics.fmean(c.tokens):.3g}" if c.tokens else "")
        row["status"] = "; ".join(sorted({s for s in c.status if s != "ok"})) or "ok"
        rows.append(row)
    shown = [k for k in rows[0] if any(r[k] != "" for r in rows)] if rows else None
    return markdown_table(rows, shown)


def difference(a: Config, b: Config, col: str, cols: Columns):
    """evaluation.stats.Comparison of a - b on a column ("overall": the mean of the overall columns,
    its test-set term the columns' terms summed over their count squared), or None."""
    if not (a.samples.get(col) and b.samples.get(col)):
        return None
    if col != "overall":
        return compare(a.row(col, cols.metrics[col]), b.row(col, cols.metrics[col]))
    terms = [examples_term(a.row(c, cols.metrics[c]), b.row(c, cols.metrics[c])) for c in cols.overall_of]
    v_test = None if None in terms else sum(terms) / len(terms) ** 2
    return compare(Row(a.samples["overall"]), Row(b.samples["overall"]), v_test=v_test)


def pretraining_difference(a: Config, b: Config, key: str):
    """A pretraining number (valid MLM loss) of a - b: units are pretraining seeds, no test-set term
    (every row is validated on the same windows and masks)."""
    if not (a.pretraining.get(key) and b.pretraining.get(key)):
        return None
    as_samples = lambda c: {s: {0: v} for s, v in c.pretraining[key].items()}  # noqa: E731
    return compare(Row(as_samples(a)), Row(as_samples(b)), v_test=0.0)


def fmt(d, digits: int = 3) -> str:
    if d is None:
        return ""
    if d.lo is None:
        return f"{d.delta:+.{digits}f} (no interval)"
    mark = " ↑" if d.direction > 0 else " ↓" if d.direction < 0 else ""
    return f"{d.delta:+.{digits}f} [{d.lo:+.{digits}f}, {d.hi:+.{digits}f}]{mark}"


def best_baselines(configs: list[Config], cols: list[str]) -> dict[str, Config]:
    """column -> the baseline with the highest mean there."""
    base = [c for c in configs if c.kind == "baseline" and c.samples]
    return {col: max(base, key=lambda c: mean_std(c.samples[col])[0]) for col in cols} if base else {}


def method_text(configs: list[Config], cols: Columns) -> str:
    """What the intervals are, what is left out, and why some cells carry no arrow."""
    few = sorted({c.label for c in configs if c.kind != "baseline" and c.samples and c.seeds < MIN_UNITS})
    no_preds = sorted({c.label for c in configs if c.samples and len(c.predictions) < len(cols.metrics)})
    text = [f"Differences are row − comparison ({cols.caption()}), with a 95 % interval: {METHOD}. "
            f"↑ / ↓: the interval excludes 0 and both rows have at least {MIN_UNITS} units, which makes it a claim."]
    if few:
        text.append(f"No arrow for {', '.join(few)}: fewer than {MIN_UNITS} pretraining seeds, so the noise between "
                    "pretraining runs is measured from one or two numbers (or not at all), and no difference involving "
                    "them is claimed, whatever its interval.")
    if no_preds:
        text.append(f"Without per-example predictions (their intervals leave the test-set term out): {', '.join(no_preds)}.")
    return " ".join(text)


def comparisons(configs: list[Config], cols: Columns, reference: str) -> str:
    """Markdown: each pretrained row against the best baseline per column, and every row against
    the reference row (with its validation MLM loss); each difference with its 95 % interval."""
    shown, tasks = cols.shown, list(cols.metrics)
    text = [method_text(configs, cols)]
    best = best_baselines(configs, shown)
    pretrained = [c for c in configs if c.kind == "pretrain" and c.samples]
    if best and pretrained:
        text.append("\n**Against the best baseline of each column** (" + ", ".join(
            f"{col}: {b.label}" for col, b in best.items()) + "):\n")
        deltas = {(c.label, col): difference(c, best[col], col, cols) for c in pretrained for col in shown}
        text.append(markdown_table([{"configuration": c.label, **{col: fmt(deltas[c.label, col]) for col in shown}}
                                    for c in pretrained]))
        above = {col: [c.label for c in pretrained if (d := deltas[c.label, col]) and d.direction > 0] for col in tasks}
        won = [col for col in tasks if above[col]]
        text.append(f"\nColumns where a pretrained row is above the best baseline, claimed: {len(won)} of {len(tasks)}"
                    + (f" ({'; '.join(f'{col}: ' + ', '.join(above[col]) for col in won)})" if won else "") + ".")
    ref = next((c for c in configs if c.label == reference and c.samples), None)
    others = [c for c in configs if c is not ref and c.samples]
    if ref and others:
        mlm = "valid/mlm_loss"
        text.append(f"\n**Against {reference}:**\n")
        text.append(markdown_table([{"configuration": c.label,
                                     **({"valid MLM loss": fmt(pretraining_difference(c, ref, mlm), 4)}
                                        if ref.pretraining.get(mlm) else {}),
                                     **{col: fmt(difference(c, ref, col, cols)) for col in shown}} for c in others]))
    return "\n".join(text) + "\n"
