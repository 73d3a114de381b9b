"""A long inference job in N parts (a Slurm array, or one process doing them in turn), then merged.

Part k of n takes the input's records [k M / n, (k + 1) M / n) of M, in order. It is written to
`<out>.parts/part_<k>_of_<n>` beside its final name and renamed when complete, then marked done by
`part_<k>_of_<n>.json`, which records the job's key: the input's SHA-256, the reference, the model's
weights and the options that change the output. A rerun does only the parts not marked done; parts
of another job (another key) in the folder are refused, never mixed in. The merge writes the output
only when every part is done, in the input's order.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .fileio import write_text


def export_id(model: str | Path) -> str:
    """An export's weights by path, size and modification time (hashing a large model per part is slow)."""
    st = (Path(model) / "model.safetensors").stat()
    return f"{Path(model).resolve()}:{st.st_size}:{st.st_mtime_ns}"


@dataclass
class Parts:
    out: Path         # the merged output
    n: int
    key: dict         # what the parts depend on

    @property
    def folder(self) -> Path:
        return self.out.with_name(self.out.name + ".parts")

    def path(self, k: int) -> Path:
        return self.folder / f"part_{k:05d}_of_{self.n:05d}"

    def _marker(self, k: int) -> Path:
        return self.path(k).with_suffix(".json")

    def check_folder(self) -> None:
        """Make the folder; refuse it if it holds another job's parts (another key or n)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for marker in sorted(self.folder.glob("part_*.json")):
            key = json.loads(marker.read_text()).get("key")
            if key != self.key:
                diff = sorted(k for k in set(key or {}) | set(self.key) if (key or {}).get(k) != self.key.get(k))
                raise InputError(f"{self.folder}: holds parts of another job ({marker.name} differs in "
                                 f"{', '.join(diff)}): give another --out, or delete the folder to start over")

    def done(self, k: int) -> bool:
        return self._marker(k).is_file()

    def mark_done(self, k: int, records: int) -> None:
        write_text(self._marker(k), json.dumps({"key": self.key, "records": records}, indent=1))

    def missing(self) -> list[int]:
        return [k for k in range(self.n) if not self.done(k)]

    def run(self, part: int | None, merge: bool, write: Callable[[int], int], unit: str) -> bool:
        """The parts this invocation runs (none with --merge, part K with --part K, else every missing
        one), each by `write(k)` -> its count of `unit`, then marked done. -> whether to merge now
        (not after --part K alone)."""
        for k in [] if merge else [part] if part is not None else self.missing():
            if self.done(k):
                print(f"part {k} of {self.n} is done already ({self.path(k)})", file=sys.stderr)
                continue
            count = write(k)
            self.mark_done(k, count)
            print(f"part {k} of {self.n}: {count} {unit} -> {self.path(k)}", file=sys.stderr)
        return part is None

    def require_all(self) -> list[Path]:
        """The parts in order, or an InputError naming the missing ones (nothing is merged)."""
        if missing := self.missing():
            raise InputError(f"{self.folder}: {len(missing)} of {self.n} parts not done ({', '.join(map(str, missing[:10]))}"
                             f"{'...' if len(missing) > 10 else ''}): run them (--part K), then merge")
        return [self.path(k) for k in range(self.n)]


def part_range(total: int, k: int, n: int) -> range:
    """The record ordinals part k of n takes."""
    if not 0 <= k < n:
        raise InputError(f"--part {k}: not in [0, {n})")
    return range(k * total // n, (k + 1) * total // n)
