"""The generated parts of results/ablation/README.md, and study.md, from the files beside this
script (and the baselines of results/scaling/, measured on the same probes).

    python results/ablation/tables.py            # rewrite them
    python results/ablation/tables.py --check    # exit 1 if the README differs from the files
"""
import statistics
import sys
from pathlib import Path

import yaml

from dnachunker.fileio import write_text
from evaluation.stats import MIN_UNITS, mean_std
from studies.compare import Columns, comparisons, final, gather, table
from studies.readme import main, published_rows

HERE = Path(__file__).resolve().parent
SCALING = HERE.parent / "scaling"
COLUMNS = {c: "mcc" for c in ("histone", "enhancers", "promoters", "splice")}


def configs(study: Path):
    return final(gather(published_rows(study, COLUMNS), Columns(COLUMNS)))


def overall(c) -> float:
    return mean_std(c.samples["overall"])[0]


def blocks() -> dict[str, str]:
    cols = Columns(COLUMNS)
    rows = configs(HERE)
    pretrained = [c for c in rows if c.kind == "pretrain"]
    control = next(c for c in rows if c.kind == "control")
    paper = yaml.safe_load((HERE / "sweep.yaml").read_text())["paper"]
    tokens = statistics.fmean(t for c in pretrained for t in c.tokens)
    probe_std = [mean_std(c.samples["overall"])[1] for c in pretrained]
    lo, hi = min(pretrained, key=overall), max(pretrained, key=overall)
    base = {c.label: c for c in configs(SCALING) if c.kind == "baseline"}
    per_col = lambda c: " / ".join(f"{mean_std(c.samples[k])[0]:.3f}" for k in COLUMNS)  # noqa: E731
    mlm = {c.label: c.pretraining["valid/mlm_loss"][0] for c in pretrained}
    dc = next(c for c in pretrained if c.label == "DNAChunker")
    reading = f"""* **Budget.** {tokens / 1e6:.1f} M tokens per row, one pretraining seed per row (seed 0).
* **Pretraining helps against the untrained control:** every pretrained row is above it overall
  ({overall(lo):.3f}–{overall(hi):.3f} against {overall(control):.3f}).
* **The rows cannot be ranked here.** The six pretrained rows span {overall(lo):.3f} ({lo.label}) to
  {overall(hi):.3f} ({hi.label}) overall, against probe-seed standard deviations of
  {min(probe_std):.3f}–{max(probe_std):.3f}; with one pretraining seed per row the noise between
  pretraining runs is not measured, and the comparisons below make no claim
  ({MIN_UNITS} pretraining seeds per row are needed). At the scaling study's largest budget,
  three pretraining seeds per row measure that noise ([results/scaling/](../scaling/README.md)).
* **The paper's overall MCC** (its ablation table, 2 B tokens, not produced here): """ + ", ".join(
        f"{label} {v['overall']:.3f}" for label, v in paper.items()) + f""".
* **Validation MLM loss** (nats per masked base): """ + ", ".join(f"{k} {v:.4f}" for k, v in mlm.items()) + f""".
  The full model hands its main network {dc.pretraining['main_positions_per_bp'][0]:.3f} positions per bp in
  validation (with mask protection's forced boundaries).
* **The classical bar**, measured on the same probes by the scaling study (histone / enhancers /
  promoters / splice): k-mer logistic regression {per_col(base['k-mer LR (baseline)'])} (overall
  {overall(base['k-mer LR (baseline)']):.3f}), the Genomic Benchmarks CNN {per_col(base['CNN (baseline)'])}
  (overall {overall(base['CNN (baseline)']):.3f})."""
    return {"result": table(rows, cols) + "\n\n" + comparisons(rows, cols, "DNAChunker"), "reading": reading}


if __name__ == "__main__":
    b = blocks()
    if "--check" not in sys.argv:
        write_text(HERE / "study.md", "# ablation: the study table, recomputed from the published files\n\n"
                   + b["result"] + "\n")
    sys.exit(main(HERE / "README.md", b, sys.argv[1:]))
