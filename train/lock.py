"""One run per out_dir: an exclusive lock file with its holder and a heartbeat.

<out_dir>/run.lock holds {host, pid, slurm_job, since}; rank 0 creates it with O_EXCL (atomic on
local and network filesystems) and touches it every `heartbeat` seconds. A second run on the
same out_dir fails fast naming the holder. A lock is taken over when it is stale: its holder is
an earlier incarnation of this same Slurm job (requeued), a dead process on this host, or its
heartbeat stopped more than `stale_after` seconds ago (the holder's node died). A lock that is
empty or unreadable (its holder died writing it, e.g. on a full disk) names no holder: it is
judged by its age alone, and taken over once untouched for two heartbeats (a live holder writes
it at once and touches it every heartbeat).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path


class LockError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, out_dir: Path, stale_after: float = 300.0, heartbeat: float = 30.0):
        self.path = Path(out_dir) / "run.lock"
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
                   "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stale(self, holder: dict) -> str | None:
        if self.me["slurm_job"] and holder.get("slurm_job") == self.me["slurm_job"]:
            return f"an earlier run of Slurm job {holder['slurm_job']} (requeued)"
        if holder.get("host") == self.me["host"] and not _alive(int(holder.get("pid", 0))):
            return f"process {holder.get('pid')} on {holder.get('host')} has ended"
        age = time.time() - self.path.stat().st_mtime
        if age > self.stale_after:
            return f"no heartbeat for {age:.0f} s"
        return None

    def acquire(self) -> "RunLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    raw = self.path.read_bytes()
                    age = time.time() - self.path.stat().st_mtime
                except FileNotFoundError:  # released meanwhile: try again
                    continue
                try:
                    holder = json.loads(raw)
                    reason = self._stale(holder)
                except ValueError:  # empty or half-written
                    holder, reason = {}, self._unreadable_stale(age)
                if reason is None:
                    raise LockError(self._in_use(holder, age))
                moved = self.path.with_name(f"run.lock.stale-{os.getpid()}")
                try:  # only one contender wins this rename
                    os.replace(self.path, moved)
                    if moved.read_bytes() != raw:  # lost a race: that was a new holder's
                        os.replace(moved, self.path)
                        continue
                    moved.unlink()
                    print(f"taking over the lock of {self.path.parent}: {reason}", flush=True)
                except FileNotFoundError:
                    pass
                continue
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(self.me, fh)
            except OSError as e:  # e.g. a full disk: leave no lock naming nobody
                self.path.unlink(missing_ok=True)
                raise OSError(e.errno, e.strerror, str(self.path)) from None
            self._thread = threading.Thread(target=self._beat, daemon=True, name="run-lock-heartbeat")
            self._thread.start()
            return self
        raise LockError(f"{self.path}: could not take the lock (it keeps changing hands)")

    def _unreadable_stale(self, age: float) -> str | None:
        return f"an empty or unreadable lock untouched for {age:.0f} s" if age > 2 * self.heartbeat else None

    def _in_use(self, holder: dict, age: float) -> str:
        if not holder:
            return (f"{self.path}: the lock is empty or unreadable and was written {age:.0f} s ago: a run is "
                    f"starting on this out_dir, or one died while writing it (a full disk?). It is taken over "
                    f"once untouched for {2 * self.heartbeat:.0f} s")
        job = f"Slurm job {holder['slurm_job']}, " if holder.get("slurm_job") else ""
        return (f"{self.path.parent}: out_dir is in use by another run ({job}pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('since')}). Two runs must not write one out_dir: wait "
                f"for it to end, cancel it, or choose another out_dir (a lock whose holder died is taken over "
                f"after {self.stale_after:.0f} s)")

    def _beat(self):
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("pid") == self.me["pid"]:
                self.path.unlink()
        except (OSError, ValueError):
            pass
