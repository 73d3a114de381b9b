"""Interval annotations: RepeatMasker .out and BED (plain or gzipped), with precise errors.

Both give {chrom: [(start, end, line)]} in 0-based half-open coordinates. RepeatMasker .out
lines look like (the strand column is '+' or 'C'; parenthesised numbers are 'bases left'):

  SW  perc perc perc  query  position in query     matching  repeat   position in repeat
score  div. del. ins.  sequence  begin end (left)  repeat    class    begin  end (left)   ID
  463  1.3  0.6  1.7  chr1  10001 10468 (248945954) +  (CCCTAA)n Simple_repeat  1  463    (0)  1
 1892 11.5  3.1  1.0  chr1  11505 11675 (248944747) C  L1MC5a   LINE/L1     (2713) 5230 5063  2
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from dnachunker.fasta import open_maybe_gzip

from .errors import DataError

Intervals = dict[str, list[tuple[int, int, int]]]
_PAREN = re.compile(r"^\((\d+)\)$")


def _lines(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with open_maybe_gzip(path) as fh:
            for i, raw in enumerate(fh, start=1):
                yield i, raw.decode("utf-8", "replace").rstrip("\r\n")
    except EOFError:
        raise DataError(f"{path}: truncated gzip file") from None


def _int(path, line_no, field, what) -> int:
    try:
        return int(field)
    except ValueError:
        raise DataError(f"{path}:{line_no}: {what} is not an integer: {field!r}") from None


def _paren(path, line_no, field, what) -> int:
    m = _PAREN.match(field)
    if not m:
        raise DataError(f"{path}:{line_no}: {what} should be a parenthesised count like (123), got {field!r}")
    return int(m.group(1))


def read_repeatmasker_out(path: str | Path) -> Intervals:
    path = Path(path)
    out: Intervals = defaultdict(list)
    for line_no, line in _lines(path):
        f = line.split()
        if not f or f[0] in ("SW", "score") or not f[0][0].isdigit():
            continue  # header / blank lines
        if len(f) < 14:
            raise DataError(f"{path}:{line_no}: RepeatMasker line has {len(f)} fields, expected at least 14")
        begin = _int(path, line_no, f[5], "query begin")
        end = _int(path, line_no, f[6], "query end")
        _paren(path, line_no, f[7], "query (left)")
        strand = f[8]
        if strand == "+":
            _int(path, line_no, f[11], "repeat begin")
            _int(path, line_no, f[12], "repeat end")
            _paren(path, line_no, f[13], "repeat (left)")
        elif strand == "C":
            _paren(path, line_no, f[11], "repeat (left)")
            _int(path, line_no, f[12], "repeat end")
            _int(path, line_no, f[13], "repeat begin")
        else:
            raise DataError(f"{path}:{line_no}: strand must be '+' or 'C', got {strand!r}")
        if not 1 <= begin <= end:
            raise DataError(f"{path}:{line_no}: bad query interval {begin}-{end}")
        out[f[4]].append((begin - 1, end, line_no))  # 1-based inclusive -> 0-based half-open
    return dict(out)


def read_bed(path: str | Path, extra_columns: int = 0) -> tuple[Intervals, dict[int, list[str]]]:
    """BED intervals, plus the first `extra_columns` columns after end, by line number."""
    path = Path(path)
    out: Intervals = defaultdict(list)
    extra: dict[int, list[str]] = {}
    for line_no, line in _lines(path):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        f = line.split("\t") if "\t" in line else line.split()
        if len(f) < 3 + extra_columns:
            raise DataError(f"{path}:{line_no}: BED line needs {3 + extra_columns} columns, got {len(f)}")
        start, end = _int(path, line_no, f[1], "start"), _int(path, line_no, f[2], "end")
        if not 0 <= start < end:
            raise DataError(f"{path}:{line_no}: bad interval {start}-{end}")
        out[f[0]].append((start, end, line_no))
        if extra_columns:
            extra[line_no] = f[3:3 + extra_columns]
    return dict(out), extra


def read_repeats(path: str | Path) -> Intervals:
    """RepeatMasker .out (by name: *.out / *.out.gz) or BED."""
    name = Path(path).name
    return read_repeatmasker_out(path) if re.search(r"\.out(\.gz)?$", name) else read_bed(path)[0]


def check_against(path: str | Path, intervals: Intervals, lengths: dict[str, int]):
    """Every chromosome named must exist in the genome and every interval fit inside it."""
    for chrom, ivs in intervals.items():
        if chrom not in lengths:
            known = ", ".join(list(lengths)[:5])
            raise DataError(f"{path}:{ivs[0][2]}: chromosome '{chrom}' is not in the FASTA "
                            f"(FASTA has: {known}{', ...' if len(lengths) > 5 else ''})")
        for start, end, line_no in ivs:
            if end > lengths[chrom]:
                raise DataError(f"{path}:{line_no}: interval {chrom}:{start}-{end} extends past the "
                                f"chromosome end ({lengths[chrom]})")
