"""Published studies whose text cannot drift from their data.

A study's README.md marks the parts made from its files:

    <!-- begin: table -->
    ...
    <!-- end: table -->

and the study's `tables.py` builds each block's text from its CSVs and JSONs (`blocks()`), with
`published_rows` reading a published study back into the rows the study tables are made of.
`python results/<study>/tables.py` rewrites the blocks; `--check` exits 1 naming each block whose
text differs from what the files give. Outside the blocks and code, a README holds no decimal
number (tests/test_results.py): every number read from data is generated.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

from dnachunker.fileio import write_text

BLOCK = re.compile(r"<!-- begin: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- end: (?P=name) -->", re.S)


def render(text: str, blocks: dict[str, str]) -> str:
    """The README text with every marked block replaced by blocks[name] (a block the README marks
    but `blocks` lacks is an error, and so is one `blocks` has but the README does not mark)."""
    marked = [m["name"] for m in BLOCK.finditer(text)]
    if set(marked) != set(blocks):
        raise ValueError(f"README blocks {sorted(marked)} and generated blocks {sorted(blocks)} differ")
    return BLOCK.sub(lambda m: f"<!-- begin: {m['name']} -->\n{blocks[m['name']].strip()}\n<!-- end: {m['name']} -->",
                     text)


def stale(text: str, blocks: dict[str, str]) -> list[str]:
    """Names of the blocks whose text differs from what `blocks` gives."""
    new = {m["name"]: m["body"] for m in BLOCK.finditer(render(text, blocks))}
    return [m["name"] for m in BLOCK.finditer(text) if m["body"] != new[m["name"]]]


def prose(text: str) -> str:
    """The README without its generated blocks and code (fenced or inline): the hand-written words."""
    text = BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def main(readme: Path, blocks: dict[str, str], argv: list[str]) -> int:
    text = readme.read_text()
    if "--check" in argv:
        if names := stale(text, blocks):
            print(f"{readme}: blocks {', '.join(names)} differ from the study's files: run {sys.argv[0]}",
                  file=sys.stderr)
            return 1
        return 0
    write_text(readme, render(text, blocks))
    print(f"{readme}: {len(blocks)} blocks written", file=sys.stderr)
    return 0


def published_rows(study: Path, metrics: dict[str, str]) -> list[dict]:
    """A published study (studies.publish) read back into the sweep's rows: results.csv for each
    evaluated model, its per-seed scores and predictions from points/<point>/eval[/step<N>]/."""
    rows = []
    with open(study / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    last = {}
    for r in table:
        if r.get("step"):
            last[r["point"]] = max(last.get(r["point"], 0), int(float(r["step"])))
    for r in table:
        point = study / "points" / r["point"]
        kind = r.get("kind") or ("control" if r["point"].startswith("control") else "pretrain")
        step = int(float(r["step"])) if r.get("step") else None
        row = {"point": r["point"], "label": r["label"], "kind": kind, "status": r["status"],
               "seed": int(float(r["seed"])) if r.get("seed") else (None if kind == "baseline" else 0),
               "step": step, **{k: float(v) for k, v in r.items() if "/" in k and v and k.startswith("valid/")}}
        if r.get("tokens_seen"):
            row["tokens_seen"] = float(r["tokens_seen"])
        final = step is None or step == last.get(r["point"])
        eval_dir = point / "eval" if final else point / "eval" / f"step{step:06d}"
        row["eval_dir"] = str(eval_dir)
        if kind == "pretrain" and row.get("valid/compression_0") is not None:
            row["main_positions_per_bp"] = row["valid/compression_0"] * row.get("valid/compression_1", 1.0)
        if final and (point / "flops.json").is_file():
            row["flops_per_bp"] = json.loads((point / "flops.json").read_text())["flops_per_bp"] / 1e6
        for col, m in metrics.items():
            if (eval_dir / f"{col}.json").is_file():
                row[f"probe/{col}"] = {e["seed"]: e[m] for e in json.loads((eval_dir / f"{col}.json").read_text())["rows"]}
        rows.append(row)
    return rows
