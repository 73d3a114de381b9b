"""Published numbers a suite shows beside its own rows, each labelled with model, size, protocol
and source, and never mixed across protocols: a suite only takes references made under its own
(fine-tuned, linear probe or zero-shot).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dnachunker.fileio import markdown_table

MEAN = "mean"  # a published mean over all of a benchmark's tasks, shown in the overall column


@dataclass
class Reference:
    model: str                       # e.g. DNABERT-2
    size: str = ""                   # parameters, e.g. 117M
    protocol: str = "finetune"       # finetune | probe | zero-shot: must be the suite's
    source: str = ""                 # repository and file, or paper and table
    scores: dict[str, float] = field(default_factory=dict)   # column (or `mean`) -> published value
    note: str = ""                   # what was or was not checked against the source

    @property
    def label(self) -> str:
        return f"{self.model} {self.size}".strip()


def reference_rows(refs: list[Reference], columns: list[str], overall: str | None) -> list[dict]:
    """One table row per reference: its value in each of `columns` (empty where it published
    none) and in `overall` (its published mean over all the benchmark's tasks)."""
    rows = []
    for r in refs:
        row = {"row": r.label, **{c: (f"{r.scores[c]:.3f}" if c in r.scores else "") for c in columns}}
        if overall:
            row[overall] = f"{r.scores[MEAN]:.3f}" if MEAN in r.scores else ""
        rows.append({**row, "protocol": r.protocol, "source": r.source + (f" ({r.note})" if r.note else "")})
    return rows


def reference_table(refs: list[Reference], columns: list[str], overall: str | None) -> str:
    if not refs:
        return ""
    return ("**Published numbers** (reference only, not produced here; empty cells: not published for "
            "that task, or not available to this project):\n\n"
            + markdown_table(reference_rows(refs, columns, overall),
                             ["row", *columns, *([overall] if overall else []), "protocol", "source"]) + "\n")
