"""The generated parts of results/scaling/README.md, from the files beside this script.

    python results/scaling/tables.py            # rewrite them
    python results/scaling/tables.py --check    # exit 1 if the README differs from the files

Files: the published study (results.csv, points/), and the protocol measurements made on its
exports (protocol/: each a suite's per-task JSONs and per-example predictions).
"""
import json
import statistics
import sys
from pathlib import Path

from evaluation.stats import MIN_UNITS, Row, compare, mean_std
from studies.compare import Columns, comparisons, difference, fmt, gather, final, pretraining_difference, table
from studies.readme import main, published_rows

HERE = Path(__file__).resolve().parent
TASKS = ("histone", "enhancers", "promoters", "splice")
COLS = Columns({c: "mcc" for c in (*TASKS, "splice_site")}, list(TASKS))
ROWS = ("DNAChunker", "BPE", "6-mer")
KMER, CNN, ONE_HOT, CONTROL = "k-mer LR (baseline)", "CNN (baseline)", "one-hot bases (baseline)", "random init (control)"


def study():
    """(every configuration by budget, each label at its final budget)."""
    configs = gather(published_rows(HERE, COLS.metrics), COLS)
    return configs, {c.label: c for c in final(configs)}


def measured(dirs: dict, column: str) -> Row | None:
    """A protocol measurement's Row on one column from {pretraining seed or None: suite directory},
    or None where a directory lacks the column."""
    from evaluation.predictions import Predictions
    from evaluation.suite import PREDICTIONS
    if not all((d / f"{column}.json").is_file() for d in dirs.values()):
        return None
    scores = {s: {r["seed"]: r["mcc"] for r in json.loads((d / f"{column}.json").read_text())["rows"]}
              for s, d in dirs.items()}
    preds = {s: Predictions.load(d / f"{column}{PREDICTIONS}") for s, d in dirs.items()
             if (d / f"{column}{PREDICTIONS}").is_file()}
    return Row(scores, preds if len(preds) == len(scores) else None)


def protocol_dirs(name: str) -> dict:
    """{pretraining seed or None: directory} of one protocol measurement (protocol/<name>/[seed-N])."""
    root = HERE / "protocol" / name
    seeds = sorted(root.glob("seed-*"), key=lambda p: int(p.name.split("-")[1]))
    return {int(p.name.split("-")[1]): p for p in seeds} if seeds else ({None: root} if root.is_dir() else {})


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


def mean(row) -> str:
    return f"{mean_std(row.scores if isinstance(row, Row) else row)[0]:.3f}"


def position(last: dict) -> str:
    """The splice task read at the site (centre ± 10 bp) against read by a mean: what the
    pretrained states add beyond the bases there, beyond random states, and against the CNN."""
    dc = last["DNAChunker"]
    lines = ["| row | splice, mean-pooled | splice_site, centre ± 10 bp |", "|---|---|---|"]
    for label in (*ROWS, CONTROL, ONE_HOT, CNN, KMER):
        c = last[label]
        lines.append(f"| {label} | {mean(c.samples['splice'])} | {mean(c.samples['splice_site'])} |")
    pairs = [(ONE_HOT, "the one-hot bases at the same positions, read by the same probe: what pretraining adds "
                       "beyond the bases"),
             (CONTROL, "the same architecture untrained (random states at the same positions)"),
             (CNN, "the Genomic Benchmarks CNN, trained on the task from scratch")]
    lines.append("\nDNAChunker on `splice_site` against:\n")
    lines += [f"* {what}: {verdict(difference(dc, last[b], 'splice_site', COLS))}" for b, what in pairs]
    lines.append(f"* itself read by the mean (`splice`): "
                 f"{verdict(compare(dc.row('splice_site', 'mcc'), dc.row('splice', 'mcc')))}")
    return "\n".join(lines)


def protocol(last: dict) -> str:
    """How far the protocol's choices move a column, beside the noise between pretraining runs."""
    dc, bpe, kmer = last["DNAChunker"], last["BPE"], last[KMER]
    cols = list(COLS.metrics)
    seed_std = {col: mean_std(dc.samples[col])[1] for col in cols}
    head = "| measurement | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols)
    lines = [head, "| DNAChunker: std across its 3 pretraining seeds | "
             + " | ".join(f"{seed_std[c]:.3f}" for c in cols) + " |"]
    cases = [("k-mer LR: random − stratified valid split", "valid_random", kmer),
             ("DNAChunker: random − stratified valid split", "valid_random/DNAChunker", dc),
             ("BPE: training-time − inference cuts", "bpe_training_cuts", bpe)]
    for what, name, ref in cases:
        dirs = protocol_dirs(name if name != "valid_random" else "valid_random/kmer_lr")
        cells = []
        for col in cols:
            row = measured(dirs, col) if dirs else None
            cells.append(verdict(compare(row, ref.row(col, "mcc"))) if row else "not measured")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finetune(last: dict) -> str:
    """DNAChunker fine-tuned end to end (learning rate and epochs chosen on valid) against its
    probe and the baselines, on the fine-tuning suite's columns."""
    dirs = protocol_dirs("finetune/DNAChunker")
    dc = last["DNAChunker"]
    lines = ["| column | fine-tuned | probe | fine-tuned − probe | fine-tuned − k-mer LR | fine-tuned − CNN | "
             "fine-tuned − one-hot |", "|---|---|---|---|---|---|---|"]
    for col in ("promoters", "splice_site"):
        ft = measured(dirs, col) if dirs else None
        if ft is None:
            lines.append(f"| {col} | not measured | | | | | |")
            continue
        lines.append(f"| {col} | {mean(ft)} | {mean(dc.samples[col])} | "
                     + " | ".join(verdict(compare(ft, c.row(col, "mcc")))
                                  for c in (dc, last[KMER], last[CNN], last[ONE_HOT])) + " |")
    return "\n".join(lines)


def _sides(a, b, cols) -> dict[str, list[str]]:
    """The columns where a is claimed above b, claimed below, and not separated."""
    out = {"above": [], "below": [], "level": []}
    for col in cols:
        d = difference(a, b, col, COLS)
        if d is not None:
            out["above" if d.direction > 0 else "below" if d.direction < 0 else "level"].append(col)
    return out


def _listed(cols: list[str]) -> str:
    return ", ".join(cols) if cols else "none"


def null_claim_rate() -> float:
    """The comparison rule's claim rate between two equal pretrained rows, 3 x 3 (nullsim.md)."""
    for line in (HERE / "nullsim.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == ["3 x 3", "0.0"]:
            return float(cells[4])
    raise ValueError(f"{HERE / 'nullsim.md'}: no 3 x 3 row at shift 0")


def reading(last: dict) -> str:
    """What the tables say, in sentences: each claim and each absence of one, from the comparisons."""
    dc = last["DNAChunker"]
    cols = [*COLS.shown]
    lines = []
    for label in (KMER, CNN, ONE_HOT, CONTROL):
        s = _sides(dc, last[label], cols)
        lines.append(f"* DNAChunker against {label}: claimed higher on {_listed(s['above'])}; claimed lower on "
                     f"{_listed(s['below'])}; not separated on {_listed(s['level'])}.")
    pairs = [("DNAChunker", "BPE"), ("BPE", "6-mer"), ("DNAChunker", "6-mer")]
    for a, b in pairs:
        s = _sides(last[a], last[b], cols)
        loss = pretraining_difference(last[a], last[b], "valid/mlm_loss")
        lines.append(f"* {a} against {b}: claimed higher on {_listed(s['above'])}; claimed lower on "
                     f"{_listed(s['below'])}; not separated on {_listed(s['level'])}; validation MLM loss "
                     f"{verdict(loss, 'loss')}.")
    tests = [difference(last[a], last[b], col, COLS) for a, b in pairs for col in cols]
    tests = [d for d in tests if d is not None]
    claims = sum(d.direction != 0 for d in tests)
    fpr = null_claim_rate()
    lines.append(f"* Between the three tokenizations, {claims} of {len(tests)} MCC comparisons are claims. The rule's "
                 f"simulated false-positive rate in this design is {fpr:.3f} per comparison (`nullsim.md`), so "
                 f"about {fpr * len(tests):.1f} claims would be expected if the three rows were the same: "
                 + ("no more than chance gives." if claims <= round(fpr * len(tests) + 2 * (fpr * len(tests)) ** 0.5)
                    else "more than chance alone gives."))
    held = all(_sides(last[a], last[b], ["overall"])["above"] == ["overall"] for a, b in pairs[:2])
    lines.append("* The paper's ordering DNAChunker > BPE > 6-mer on the overall MCC: "
                 + ("each step claimed." if held else "not claimed at this scale: at least one step is within "
                                                       "the noise or reversed."))
    site = _sides(dc, last[ONE_HOT], ["splice_site"])
    lines.append("* Read at the splice site, DNAChunker's states against one-hot bases at the same positions: "
                 + ("claimed higher, so pretraining adds something beyond the bases there." if site["above"] else
                    "claimed lower: the probe does better on the bases themselves than on the pretrained states."
                    if site["below"] else "not separated: no evidence that pretraining adds beyond the bases there."))
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
              "reading": reading(last),
              "position": position(last),
              "protocol": protocol(last),
              "finetune": finetune(last),
              "nullsim": (HERE / "nullsim.md").read_text().strip()}
    return blocks


if __name__ == "__main__":
    sys.exit(main(HERE / "README.md", blocks(), sys.argv[1:]))
