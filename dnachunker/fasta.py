"""Fast streaming FASTA reader (.fa or .fa.gz, detected by content) with precise errors.

Reads large blocks, strips newlines with bytes.translate and maps bases through a lookup table,
so parsing runs close to decompression speed. Yields one record at a time:
(name, codes uint8 (L,) in dnachunker token ids, soft-masked bool (L,)).
"""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import InputError
from .tokenizer import ENCODE_TABLE

BLOCK = 1 << 23
_CODES = ENCODE_TABLE.tobytes()  # byte -> token id, 255 for anything that is not an IUPAC code
_SOFT = bytes(int(ord("a") <= b <= ord("z")) for b in range(256))  # lowercase -> 1


def open_maybe_gzip(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


class _Record:
    def __init__(self, name: str, line: int):
        self.name, self.line = name, line
        self.codes = bytearray()
        self.soft = bytearray()

    def finish(self, path: Path) -> tuple[str, np.ndarray, np.ndarray]:
        if not self.codes:
            raise InputError(f"{path}:{self.line}: empty record '{self.name}' (header with no sequence)")
        return (self.name, np.frombuffer(self.codes, dtype=np.uint8),
                np.frombuffer(self.soft, dtype=np.bool_))


def read_fasta(path: str | Path, on_bytes: Callable[[int], None] | None = None
               ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Iterate over (name, codes, soft_masked) records. `on_bytes(n)` reports progress."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: FASTA file not found")
    seen: dict[str, int] = {}
    rec: _Record | None = None
    line_no = 1  # line number of the first byte of `buf`
    buf = b""
    first = True
    with open_maybe_gzip(path) as fh:
        while True:
            try:
                data = fh.read(BLOCK)
            except EOFError:
                last = line_no + buf.count(b"\n")
                raise InputError(f"{path}: truncated gzip file (compressed stream ends early, "
                                f"after line {last})") from None
            except (gzip.BadGzipFile, zlib.error, OSError) as e:
                raise InputError(f"{path}: corrupt gzip data near line {line_no}: {e}") from None
            if on_bytes and data:
                on_bytes(len(data))
            if first:  # a UTF-8 byte order mark, as some Windows tools write, is no sequence data
                data, first = data.removeprefix(b"\xef\xbb\xbf"), False
            buf += data
            if data:
                cut = buf.rfind(b"\n") + 1
                if cut == 0:
                    continue
                work, buf = buf[:cut], buf[cut:]
            else:
                work, buf = buf, b""
            finished, rec = _parse_block(path, work, line_no, rec, seen)
            yield from finished
            line_no += work.count(b"\n")
            if not data:
                break
    if rec is None:
        raise InputError(f"{path}: no FASTA records (no line starting with '>')")
    yield rec.finish(path)


def _parse_block(path, work: bytes, line_no: int, rec: _Record | None, seen: dict[str, int]):
    finished = []
    pos, n = 0, len(work)
    while pos < n:
        if work[pos] == 0x3E:  # '>' at a line start: header
            end = work.find(b"\n", pos)
            end = n if end < 0 else end
            line = line_no + work.count(b"\n", 0, pos)
            fields = work[pos + 1:end].strip().split()
            if not fields:
                raise InputError(f"{path}:{line}: header line with no sequence name")
            name = fields[0].decode("ascii", "replace")
            if name in seen:
                raise InputError(f"{path}:{line}: duplicate sequence name '{name}' (first at line {seen[name]})")
            seen[name] = line
            if rec is not None:
                finished.append(rec.finish(path))
            rec = _Record(name, line)
            pos = end + 1
            continue
        nxt = work.find(b"\n>", pos)
        seg_end = n if nxt < 0 else nxt + 1
        seg = work[pos:seg_end]
        if rec is None:
            if seg.strip():
                line = line_no + work.count(b"\n", 0, pos)
                raise InputError(f"{path}:{line}: sequence data before the first '>' header")
        else:
            codes = seg.translate(_CODES, b"\r\n")
            if b"\xff" in codes:
                _raise_bad_char(path, seg, line_no + work.count(b"\n", 0, pos), rec.name)
            rec.codes += codes
            rec.soft += seg.translate(_SOFT, b"\r\n")
        pos = seg_end
    return finished, rec


def _raise_bad_char(path, seg: bytes, first_line: int, name: str):
    for i, line in enumerate(seg.split(b"\n")):
        raw = np.frombuffer(line.rstrip(b"\r"), dtype=np.uint8)
        bad = np.flatnonzero(ENCODE_TABLE[raw] == 255)
        if bad.size:
            ch = chr(raw[bad[0]])
            raise InputError(f"{path}:{first_line + i}: invalid character {ch!r} in record '{name}' "
                            f"(column {bad[0] + 1}); only IUPAC nucleotide codes are allowed")
    raise AssertionError("unreachable: bad character not found again")
