"""The generated parts of results/scaling/README.md, from the files beside this script.

    python results/scaling/tables.py            # rewrite them
    python results/scaling/tables.py --check    # exit 1 if the README differs from the files

Files: the published study (results.csv, points/), and the protocol measurements made on its
exports (protocol/: each a suite's per-task JSONs and per-example predictions).
"""
import statistics
import sys
from pathlib import Path

from evaluation.stats import MIN_UNITS, Row, compare, mean_std
from slurm.compare import Columns, comparisons, difference, fmt, gather, final, pretraining_difference, table
from slurm.readme import main, published_rows

HERE = Path(__file__).resolve().parent
TASKS = ("histone", "enhancers", "promoters", "splice")
COLS = Columns({c: "mcc" for c in (*TASKS, "splice_site")}, list(TASKS))
ROWS = ("DNAChunker", "BPE", "6-mer")


def study():
    """(every configuration by budget, each label at its final budget)."""
    configs = gather(published_rows(HERE, COLS.metrics), COLS)
    return configs, {c.label: c for c in final(configs)}


def _samples(eval_dirs: dict, column: str):
    """{pretraining seed: {probe seed: MCC}} and {seed: Predictions} from per-seed eval directories."""
    import json

    from evaluation.predictions import Predictions
    scores = {s: {r["seed"]: r["mcc"] for r in json.loads((d / f"{column}.json").read_text())["rows"]}
              for s, d in eval_dirs.items()}
    preds = {s: Predictions.load(d / f"{column}.preds.npz") for s, d in eval_dirs.items()
             if (d / f"{column}.preds.npz").is_file()}
    return Row(scores, preds if len(preds) == len(scores) else None)


def verdict(d, noun: str = "") -> str:
    """'+0.012 [−0.010, +0.034]: not separated' / 'claimed higher' from a Comparison."""
    if d is None:
        return "not measured"
    what = ("claimed higher" if d.direction > 0 else "claimed lower" if d.direction < 0
            else "not separated" if d.lo is not None else "no interval")
    return f"{fmt(d, 4 if noun == 'loss' else 3)}: {what}"


def ordering(last: dict) -> str:
    """The paper's ordering, DNAChunker > BPE > 6-mer, pair by pair on every measure."""
    pairs = [("DNAChunker", "BPE"), ("BPE", "6-mer"), ("DNAChunker", "6-mer")]
    head = "| measure | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |\n|---|" + "---|" * len(pairs)
    lines = [head, "| valid MLM loss (lower is better) | " + " | ".join(
        verdict(pretraining_difference(last[a], last[b], "valid/mlm_loss"), "loss") for a, b in pairs) + " |"]
    for col in COLS.shown:
        lines.append(f"| {col} MCC | " + " | ".join(verdict(difference(last[a], last[b], col, COLS)) for a, b in pairs)
                     + " |")
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    configs, last = study()
    pre = [last[r] for r in ROWS]
    tokens = statistics.fmean(t for c in pre for t in c.tokens)
    seeds = sorted({c.seeds for c in pre})
    budgets = sorted({c.step for c in configs if c.kind == "pretrain"})
    setting = (f"* Budgets: {', '.join(str(b) for b in budgets)} steps = " + ", ".join(
        f"{statistics.fmean(t for c in configs if c.step == b and c.kind == 'pretrain' for t in c.tokens) / 1e6:.2f} M"
        for b in budgets) + f" tokens; {'/'.join(str(s) for s in seeds)} pretraining seeds per row at the largest "
        f"({tokens / 1e6:.1f} M tokens).")
    blocks = {"setting": setting,
              "table": table(list(last.values()), COLS),
              "comparisons": comparisons(list(last.values()), COLS, "DNAChunker"),
              "ordering": ordering(last),
              "scaling": (HERE / "scaling.md").read_text().split("\n\n", 2)[2].strip()}
    return blocks


if __name__ == "__main__":
    sys.exit(main(HERE / "README.md", blocks(), sys.argv[1:]))
