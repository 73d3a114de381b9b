"""Metrics from rank 0: MLflow, and a local JSONL copy of everything logged.

A resumed run continues the same MLflow run (its id is stored in every checkpoint); steps it had
already logged are not logged twice. Tracking never stops training: every MLflow call is
tried `tracking.retries` times (backoff doubling from `tracking.retry_backoff_s`), and when it
still fails the run goes on with MLflow switched off and a warning. <out_dir>/metrics.jsonl gets
every logged metric either way ({"step", "time", metrics...} per line, appended; after a resume a
step may appear again with the same values: take the last).

sqlite (the default, <out_dir>/mlflow.db) is for one run on a local disk. On a shared filesystem,
or for sweeps whose points write at once, use a tracking server: tracking.tracking_uri=http://host:5000.
A server that stops answering costs a few seconds, not minutes: MLflow's own HTTP retries are off
and its request timeout is 10 s unless MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT say otherwise;
this module's retries decide. A sqlite store deleted or moved mid-run (sqlite would go on writing
to the unlinked file, or into a new empty one) is noticed at the next log: one warning, then
metrics.jsonl is the record. Parameters are logged with secrets redacted (URL user info, tokens).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from dnachunker.configlib import flatten, redact, to_dict


class Tracker:
    def __init__(self, enabled: bool, cfg, run_id: str | None = None, tags: dict | None = None):
        self.enabled, self.run_id, self.logged_until = enabled, run_id, -1
        t = cfg.tracking
        self.retries, self.backoff, self.degraded = t.retries, t.retry_backoff_s, False
        if not enabled:
            return
        self.uri = t.tracking_uri or f"sqlite:///{Path(cfg.out_dir).resolve() / 'mlflow.db'}"
        self.jsonl = open(Path(cfg.out_dir) / "metrics.jsonl", "a")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self._call("connect", self._start, cfg, run_id, tags or {})
        self.store = Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None
        self.inode = self._inode()

    def _inode(self) -> int | None:
        try:
            return self.store.stat().st_ino if self.store else None
        except OSError:
            return None

    def _store_gone(self, step: int) -> bool:
        """The sqlite store deleted or replaced since the run started: warn once, stop using it."""
        if self.store is None or self.degraded or self._inode() == self.inode:
            return False
        self.degraded = True
        print(f"warning: the MLflow store {self.store} was deleted or moved (noticed at step {step}); training "
              f"continues without MLflow, every metric is in {self.jsonl.name}", file=sys.stderr, flush=True)
        return True

    def _start(self, cfg, run_id, tags):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        t = cfg.tracking
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is not None and not self._known(run_id):  # a checkpoint written beside another store
            print(f"note: the checkpoint's MLflow run {run_id} is not in {redact(self.uri)} (the checkpoint comes "
                  f"from another out_dir or store): logging to a new run that names it", file=sys.stderr, flush=True)
            tags, run_id = {**tags, "dnachunker.continues_run": run_id}, None
        if run_id is not None:  # resume after preemption: same run, append
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "train/loss")
            self.logged_until = max((m.step for m in history), default=-1)
            return
        exp = self.client.get_experiment_by_name(t.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(t.experiment)
        if t.parent_run_id:
            tags = {**tags, "mlflow.parentRunId": t.parent_run_id}
        run = self.client.create_run(exp_id, run_name=redact(t.run_name or Path(cfg.out_dir).name), tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:500]) for k, v in flatten(to_dict(cfg)).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _known(self, run_id: str) -> bool:
        """Whether this store has the run (a store that cannot be reached raises, and is retried)."""
        from mlflow.exceptions import MlflowException
        try:
            self.client.get_run(run_id)
            return True
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise

    def _call(self, what: str, fn, *args):
        """fn(*args), retried; after the last failure MLflow is switched off for this run."""
        if self.degraded:
            return None
        for attempt in range(self.retries):
            try:
                return fn(*args)
            except Exception as e:  # any store error (locked sqlite, server down) must not stop training
                error = e
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff * 2 ** attempt)
        self.degraded = True
        print(f"warning: MLflow tracking at {redact(self.uri)} failed {self.retries} times ({what}: "
              f"{type(error).__name__}: {redact(str(error).strip()[:300])}); training continues without MLflow, "
              f"metrics still go to {self.jsonl.name}", file=sys.stderr, flush=True)
        return None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self.jsonl.flush()
        if step <= self.logged_until or self._store_gone(step):
            return
        from mlflow.entities import Metric
        ts = int(time.time() * 1000)
        self._call("log", lambda: self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()]))

    def tag(self, key: str, value: str) -> None:
        """A tag on the run (e.g. what checkpoint.allow_changes let change on a resume, step by step)."""
        if self.enabled and self.run_id:
            self._call("tag", lambda: self.client.set_tag(self.run_id, key, redact(value)[:5000]))

    def finish(self, status: str) -> None:
        """status: FINISHED, FAILED or KILLED (stopped by a signal; resumed later)."""
        if self.enabled:
            self._call("finish", lambda: self.client.set_terminated(self.run_id, status=status))
            self.jsonl.close()
