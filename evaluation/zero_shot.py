"""Zero-shot variant-effect evaluation (task type variant_effect), as BEND scores its variant tasks:
nothing is trained; each labelled SNV of a VCF is scored by the MLM (dnachunker.variants: log
P(alt) - log P(ref) with the base masked in its context window) and the scores are ranked against
the labels (AUROC), the larger effect -(log P(alt) - log P(ref)) counting as the positive class.

The labels are the user's: INFO key LABEL=1 (e.g. pathogenic, or an expression effect) or
LABEL=0. Records that cannot be scored (dnachunker.variants statuses) are counted and left out;
a record without a LABEL is an error naming its line.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dnachunker.fasta import open_maybe_gzip

from .metrics import all_metrics
from .predictions import Predictions
from .tasks import EvalDataError


def read_labels(path: str | Path) -> dict[int, int]:
    """VCF line number -> its INFO LABEL (0 or 1)."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: VCF file not found")
    labels = {}
    with io.TextIOWrapper(open_maybe_gzip(path)) as fh:
        for line_no, line in enumerate(fh, 1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            info = dict(kv.split("=", 1) for kv in (fields[7].split(";") if len(fields) > 7 else []) if "=" in kv)
            if info.get("LABEL") not in ("0", "1"):
                raise EvalDataError(f"{path}:{line_no}: INFO needs LABEL=0 or LABEL=1, got "
                                    f"{info.get('LABEL', 'no LABEL')!r}")
            labels[line_no] = int(info["LABEL"])
    if not labels:
        raise EvalDataError(f"{path}: no variant records")
    return labels


def evaluate_variants(model_dir: str | Path, vcf: str, fasta: str, metric: str = "auroc",
                      context: int | None = None, device: str = "cpu",
                      species: str | None = None) -> tuple[list[dict], dict, Predictions]:
    """-> (one row: the metrics and how many records were scored / left out, summary, the score of
    each scored record) in the shape of evaluation.finetune.evaluate's (one deterministic 'seed')."""
    from dnachunker.errors import InputError
    from dnachunker.variants import score_variants

    from .finetune import load_backbone
    from .predictions import Predictions
    from .task_types import task_type
    labels = read_labels(vcf)
    model = load_backbone(model_dir, species, device)
    try:
        variants = list(score_variants(model, vcf, fasta, context=context))
    except InputError as e:
        raise EvalDataError(str(e)) from None
    ok = [v for v in variants if v.status == "ok"]
    y = np.array([labels[v.line] for v in ok])
    if len(set(y.tolist())) < 2:
        raise EvalDataError(f"{vcf}: the scorable records ({len(ok)} of {len(variants)}) need both labels, "
                            f"got only {sorted(set(y.tolist()))}")
    metrics = task_type("variant_effect").metrics
    row = {"task": Path(vcf).name, "mode": "zero-shot", "seed": 0,
           **all_metrics(y, -np.array([v.score for v in ok]), metrics),
           "scored": len(ok), "left_out": len(variants) - len(ok), "positives": int(y.sum())}
    summary = {"task": row["task"], "mode": "zero-shot", "type": "variant_effect", "metric": metric, "seeds": 1,
               "folds": None, "scored": len(ok), "left_out": row["left_out"],
               **{k: row[k] for k in metrics}, **{f"{k}_std": 0.0 for k in metrics}}
    scores = np.array([-v.score for v in ok])
    return [row], summary, Predictions.collect(y, [0], [scores], [f"{v.chrom}:{v.pos}:{v.ref}>{v.alt}" for v in ok])
