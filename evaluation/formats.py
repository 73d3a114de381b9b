"""The benchmark formats we read tasks from: a registry (FORMATS; adding one is one loader and one
entry) and `load_task`.

Every loader returns a `Task` with train/test (and, where the benchmark has one, valid) lists of
(sequence, label): integer classes, or real values for a regression task (evaluation.task_types;
the table formats read either). Malformed input is an `EvalDataError` naming the file and line.

  gue      GUE (DNABERT-2): <dir>/{train,dev,test}.csv[.gz], header `sequence,label` (without a
           train file, dev is the training data and a valid split is held out from it)
  csv      a user's CSV/TSV: header with `sequence` (or `seq`) and `label` (+ optional `task`);
           one file with a `split` column, or <dir>/{train,test}[,dev].{csv,tsv}[.gz]
  nt       Nucleotide Transformer: TSV `sequence,name,label,task`; pick one task by name
  gb       Genomic Benchmarks coordinates: <dir>/{train,test}/<class>.csv.gz rows
           `id,region,start,end,strand` cut from a reference FASTA you supply (GRCh38)
  janggu   janggu's Oct4 vs Mafk peaks: sample.fa (0) vs sample2.fa (1), *_test.fa for test
"""
from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dnachunker.tokenizer import IUPAC

from .task_types import task_type
from .tasks import EvalDataError, Task


_VALID = set(IUPAC + IUPAC.lower())


def _open_text(path: Path):
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as e:
            raise EvalDataError(f"{path}: corrupt or truncated gzip ({e})") from None
    return io.StringIO(raw.decode("utf-8-sig", "replace"))  # -sig: a byte order mark is not a column name


def _check_seq(path, line, seq: str) -> str:
    seq = seq.strip()
    if not seq:
        raise EvalDataError(f"{path}:{line}: empty sequence")
    bad = next((c for c in seq if c not in _VALID), None)
    if bad is not None:
        raise EvalDataError(f"{path}:{line}: invalid character {bad!r} in sequence")
    return seq


def read_table(path: Path, task: str | None = None, type: str = "classification"
               ) -> tuple[list[tuple[str, int]], list[str] | None]:
    """Rows of a CSV/TSV with `sequence`|`seq` and `label` columns (+ `task` to filter on,
    + `split` returned as the second value when present); labels parsed for the task `type`."""
    parse = task_type(type).parse
    fh = _open_text(path)
    first = fh.readline()
    delim = "\t" if "\t" in first else ","
    header = [h.strip().lower() for h in next(csv.reader([first], delimiter=delim))]
    seq_col = "sequence" if "sequence" in header else "seq" if "seq" in header else None
    if seq_col is None or "label" not in header:
        raise EvalDataError(f"{path}:1: header needs a 'sequence' (or 'seq') and a 'label' column, got {header}")
    if task is not None and "task" not in header:
        raise EvalDataError(f"{path}:1: no 'task' column to select task {task!r}")
    rows, splits = [], [] if "split" in header else None
    tasks = set()
    for line, rec in enumerate(csv.reader(fh, delimiter=delim), start=2):
        if not rec or not "".join(rec).strip():
            continue
        if len(rec) != len(header):
            raise EvalDataError(f"{path}:{line}: {len(rec)} fields, the header has {len(header)}")
        row = dict(zip(header, rec))
        if task is not None and row["task"] != task:
            tasks.add(row["task"])
            continue
        try:
            label = parse(row["label"])
        except ValueError as e:
            what = "an integer" if type == "classification" else "a number"
            raise EvalDataError(f"{path}:{line}: label {row['label']!r} is not {what}"
                                + (f" ({e})" if "negative" in str(e) or "finite" in str(e) else "")) from None
        rows.append((_check_seq(path, line, row[seq_col]), label))
        if splits is not None:
            splits.append(row["split"].strip().lower())
    if not rows:
        raise EvalDataError(f"{path}: no rows" + (f" for task {task!r}; the tasks in it: {', '.join(sorted(tasks))}"
                                                  if task else ""))
    return rows, splits


def _find(d: Path, stem: str) -> Path | None:
    for ext in (".csv", ".csv.gz", ".tsv", ".tsv.gz"):
        if (d / f"{stem}{ext}").is_file():
            return d / f"{stem}{ext}"
    return None


def load_gue(path: str | Path, type: str = "classification") -> Task:
    """A GUE task directory (train.csv, dev.csv, test.csv; .gz accepted)."""
    return _load_split_dir(Path(path), "gue", type)


def _load_split_dir(d: Path, kind: str, type: str) -> Task:
    if not d.is_dir():
        raise EvalDataError(f"{d}: not a {kind} task directory")
    train, test, dev = _find(d, "train"), _find(d, "test"), _find(d, "dev")
    if train is None and dev is not None:  # e.g. the shared GUE copy, which lacks train files >= 4 MiB
        print(f"note: {d} has no train file: training on its dev split (valid is held out from it)", file=sys.stderr)
        train, dev = dev, None
    if train is None or test is None:
        missing = [s for s, f in (("train", train), ("test", test)) if f is None]
        raise EvalDataError(f"{d}: missing {' and '.join(missing)} file (.csv/.tsv, optionally .gz)")
    return Task(name=f"{d.parent.name}/{d.name}", train=read_table(train, type=type)[0],
                test=read_table(test, type=type)[0], valid=read_table(dev, type=type)[0] if dev else [], type=type)


def load_csv(path: str | Path, type: str = "classification") -> Task:
    """A user's own data: one table with a `split` column (train/valid|dev/test), or a directory."""
    path = Path(path)
    if path.is_dir():
        return _load_split_dir(path, "csv", type)
    rows, splits = read_table(path, type=type)
    if splits is None:
        raise EvalDataError(f"{path}: a single table needs a 'split' column (train / valid / test)")
    parts = {"train": [], "valid": [], "test": []}
    for line, (row, split) in enumerate(zip(rows, splits), start=2):
        split = "valid" if split == "dev" else split
        if split not in parts:
            raise EvalDataError(f"{path}:{line}: split {split!r} is not train, valid/dev or test")
        parts[split].append(row)
    if not parts["train"] or not parts["test"]:
        raise EvalDataError(f"{path}: needs rows in both the train and the test split")
    return Task(name=path.stem.split(".")[0], **parts, type=type)


def held_out(task: Task, fraction: float = 0.2) -> Task:
    """A task whose source has no test split: test held out from all its rows (seed 0, stratified
    for classification); `split_here` says so, and k-fold evaluation pools the two again."""
    train, test = task.split_valid(seed=0, fraction=fraction)
    return Task(name=task.name, train=train, test=test, labels=task.labels, type=task.type, split_here=True)


def load_nt(path: str | Path, task: str, type: str = "classification") -> Task:
    """One task of a Nucleotide Transformer TSV. A file with a `split` column (train / test) keeps
    it; one without (as the subset we ship) is split here (held_out)."""
    rows, splits = read_table(Path(path), task=task, type=type)
    if splits:
        return Task(name=f"nt/{task}", train=[r for r, s in zip(rows, splits) if s != "test"],
                    test=[r for r, s in zip(rows, splits) if s == "test"], type=type)
    return held_out(Task(name=f"nt/{task}", train=rows, test=[], type=type))


def load_gb_sequences(path: str | Path, type: str = "classification") -> Task:
    """Genomic Benchmarks exported with full sequences: <dir>/{train,test}.tsv[.gz] (`seq,label`).
    With one split only, test is held out from it here (held_out)."""
    d = Path(path)
    train, test = _find(d, "train"), _find(d, "test")
    if train and test:
        return _load_split_dir(d, "gb", type)
    only = train or test
    if only is None:
        raise EvalDataError(f"{d}: no train/test .tsv[.gz] file")
    return held_out(Task(name=f"gb/{d.name}", train=read_table(only, type=type)[0], test=[], type=type))


def load_genomic_benchmark(path: str | Path, fasta: str | Path) -> Task:
    """Genomic Benchmarks coordinates (<dir>/{train,test}/<class>.csv.gz) cut from `fasta`."""
    from omegaconf import OmegaConf

    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import decode_interval

    d = Path(path)
    meta = d / "metadata.yaml"
    if not meta.is_file():
        raise EvalDataError(f"{d}: no metadata.yaml (not a Genomic Benchmarks task directory)")
    classes = list(OmegaConf.load(meta)["classes"])
    wanted: dict[str, list] = {}
    coords = {}
    for split in ("train", "test"):
        for label, cls in enumerate(classes):
            f = d / split / f"{cls}.csv.gz"
            rows = []
            fh = _open_text(f)
            header = fh.readline().strip().split(",")
            if header[:5] != ["id", "region", "start", "end", "strand"]:
                raise EvalDataError(f"{f}:1: expected header id,region,start,end,strand, got {header}")
            for line, rec in enumerate(csv.reader(fh), start=2):
                if len(rec) < 5:
                    raise EvalDataError(f"{f}:{line}: {len(rec)} fields, expected 5")
                try:
                    start, end = int(rec[2]), int(rec[3])
                except ValueError:
                    raise EvalDataError(f"{f}:{line}: start/end are not integers: {rec[2:4]}") from None
                if rec[4] not in "+-" or not 0 <= start < end:
                    raise EvalDataError(f"{f}:{line}: bad interval or strand: {rec[1:5]}")
                chrom = rec[1] if rec[1].startswith("chr") else f"chr{rec[1]}"
                rows.append((chrom, start, end, rec[4], label, f, line))
                wanted.setdefault(chrom, [])
            coords[split] = coords.get(split, []) + rows
    seqs = {}
    for name, codes, soft in read_fasta(fasta):
        key = name if name.startswith("chr") else f"chr{name}"
        if key in wanted:
            seqs[key] = (codes, soft)
    out = {}
    for split, rows in coords.items():
        out[split] = []
        for chrom, start, end, strand, label, f, line in rows:
            if chrom not in seqs:
                raise EvalDataError(f"{f}:{line}: chromosome {chrom} is not in {fasta}")
            codes, soft = seqs[chrom]
            if end > len(codes):
                raise EvalDataError(f"{f}:{line}: {chrom}:{start}-{end} runs past the chromosome end in {fasta}")
            out[split].append((decode_interval(codes, soft, start, end, strand), label))
    return Task(name=f"gb/{d.name}", train=out["train"], test=out["test"], labels=classes)


def _read_fa(path: Path) -> list[str]:
    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import decode
    return [decode(codes, soft) for _, codes, soft in read_fasta(path)]


def load_janggu(path: str | Path) -> Task:
    """Oct4 (label 0) vs Mafk (label 1) ChIP-seq peaks from janggu's sample data."""
    from data_pipeline.errors import DataError
    d = Path(path)
    try:
        train = [(s, 0) for s in _read_fa(d / "sample.fa")] + [(s, 1) for s in _read_fa(d / "sample2.fa")]
        test = [(s, 0) for s in _read_fa(d / "sample_test.fa")] + [(s, 1) for s in _read_fa(d / "sample2_test.fa")]
    except DataError as e:
        raise EvalDataError(str(e)) from None
    return Task(name="janggu/oct4_vs_mafk", train=train, test=test, labels=["Oct4", "Mafk"])


@dataclass
class Format:
    """One task format: its loader, what it expects to find, a check that `path` has that, and what
    else it needs from the user. load(path, type=..., **needs) -> Task."""
    load: Callable
    expects: str
    found: Callable[[Path], bool]
    needs: dict[str, str] = field(default_factory=dict)  # load's argument -> how the user gives it
    classes_only: bool = False  # one file per class: classification tasks only


def _split_dir(d: Path) -> bool:
    return d.is_dir() and _find(d, "test") is not None and (_find(d, "train") or _find(d, "dev")) is not None


FORMATS = {
    "gue": Format(load_gue, "a directory with train.csv, dev.csv and test.csv (.gz accepted), columns sequence,label",
                  _split_dir),
    "csv": Format(load_csv, "a CSV/TSV with sequence, label and split columns, or a directory laid out like gue",
                  lambda p: p.is_file() or _split_dir(p)),
    "nt": Format(load_nt, "a TSV (.gz accepted) with sequence, name, label and task columns (choose --nt-task)",
                 lambda p: p.is_file(), needs={"task": "--nt-task"}),
    "gb": Format(lambda path, type, fasta: load_genomic_benchmark(path, fasta),
                 "a Genomic Benchmarks directory with metadata.yaml and {train,test}/<class>.csv.gz coordinates "
                 "(and --fasta, GRCh38)", lambda p: (p / "metadata.yaml").is_file(),
                 needs={"fasta": "--fasta (the GRCh38 reference)"}, classes_only=True),
    "gbseq": Format(load_gb_sequences, "a directory with train.tsv and/or test.tsv (.gz accepted), columns seq,label",
                    lambda p: p.is_dir() and (_find(p, "train") or _find(p, "test")) is not None
                    and not (p / "metadata.yaml").is_file()),
    "janggu": Format(lambda path, type: load_janggu(path),
                     "janggu's sample data: sample.fa, sample2.fa and their *_test.fa",
                     lambda p: (p / "sample.fa").is_file(), classes_only=True),
}


def load_task(kind: str, path: str, task: str | None = None, fasta: str | None = None,
              type: str = "classification") -> Task:
    """A task in one of FORMATS, its labels read for the task `type` (evaluation.task_types); the
    path must hold what the format expects, and the format gets what it needs."""
    if kind not in FORMATS:
        raise EvalDataError(f"unknown task format {kind!r} ({', '.join(FORMATS)})")
    f, p = FORMATS[kind], Path(path)
    if type != "classification" and f.classes_only:
        raise EvalDataError(f"{path}: the {kind} format holds classes (one file per class), not {type} labels")
    if not f.found(p):
        fits = [k for k, other in FORMATS.items() if k != kind and other.found(p)]
        raise EvalDataError(f"{path}: --format {kind} expects {f.expects}; "
                            + (f"it looks like --format {' or '.join(fits)}" if fits else "nothing like it is there"))
    given = {"task": task, "fasta": fasta}
    if missing := [how for arg, how in f.needs.items() if not given[arg]]:
        raise EvalDataError(f"{path}: the {kind} format needs {' and '.join(missing)}")
    return f.load(path, type=type, **{arg: given[arg] for arg in f.needs})
