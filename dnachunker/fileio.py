"""Outputs written so that an interrupted run never leaves one that looks complete, with the
permissions the user's umask gives (colleagues on a shared filesystem can read them), and the
tables every command prints and saves."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _reraise(e: BaseException, path: Path):
    """Raise e again; an OSError without a file name (a failed write: a full disk) gets the
    output's name, so the command's error names it."""
    if isinstance(e, OSError) and e.errno and not e.filename:
        raise OSError(e.errno, e.strerror, str(path)) from e
    raise e


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _by_umask(path: Path) -> None:
    """Give what a private temporary location made the permissions a plain create would have."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask())


def _temporary_directory(final: Path) -> Path:
    """A new hidden temporary directory beside `final`; those a killed save of `final` left behind
    (whole weights, for an export) are removed first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; when the block succeeds it replaces `final`
    (rename), when it fails it is removed. For outputs that are one thing (a zarr store)."""
    final = Path(final)
    tmp = _temporary_directory(final)
    try:
        yield tmp
        _by_umask(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(e, final)


@contextmanager
def replace_files(final: str | Path, last: str) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; when the block succeeds, each file written there
    replaces its namesake in `final` (created if needed), every other file of `final` stays, as
    Hugging Face's save_pretrained does. `last` (the weights) is removed first and moved in last,
    so an interruption leaves either the old set, or a set without `last` that no loader takes
    for complete, or the new set."""
    final = Path(final)
    tmp = _temporary_directory(final)
    try:
        yield tmp
        _by_umask(tmp)
        final.mkdir(parents=True, exist_ok=True)
        (final / last).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == last):
            os.replace(f, final / f.name)
    except BaseException as e:
        _reraise(e, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final` (hidden, ending in `suffix`: give writers an explicit
    format); renamed to `final` when the block succeeds, removed when it fails."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        _by_umask(tmp)
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _reraise(e, final)


def output_file(path: str | Path) -> Path:
    """Where a command will write one file (or a zarr store), checked before it computes anything:
    its folder exists and is writable, else InputError naming the folder."""
    from .errors import InputError
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder, for the output {path} (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: not writable, for the output {path}")
    return path


def output_dir(path: str | Path) -> Path:
    """A command's output folder, made now (parents included), so that a folder it cannot make or
    write stops it before it computes anything (InputError naming it)."""
    from .errors import InputError
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{e.filename or path}: {e.strerror or e}, for the output folder {path}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{path}: not writable, for the output folder")
    return path


def file_sha256(path: str | Path, block: int = 1 << 24) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None, delimiter: str = ",") -> None:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
