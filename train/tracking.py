"""MLflow tracking from rank 0 (a no-op elsewhere). A resumed run continues the same MLflow run
(its id is stored in every checkpoint); steps it already logged are not logged twice."""
from __future__ import annotations

import time
from pathlib import Path

from omegaconf import OmegaConf


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


class Tracker:
    def __init__(self, enabled: bool, cfg, run_id: str | None = None):
        self.enabled, self.run_id, self.logged_until = enabled, run_id, -1
        if not enabled:
            return
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        t = cfg.tracking
        uri = t.tracking_uri or f"sqlite:///{Path(cfg.out_dir).resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        if run_id is not None:  # resume after preemption: same run, append
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "train/loss")
            self.logged_until = max((m.step for m in history), default=-1)
            return
        exp = self.client.get_experiment_by_name(t.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(t.experiment)
        tags = {"mlflow.parentRunId": t.parent_run_id} if t.parent_run_id else {}
        run = self.client.create_run(exp_id, run_name=t.run_name or Path(cfg.out_dir).name, tags=tags)
        self.run_id = run.info.run_id
        params = _flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled or step <= self.logged_until:
            return
        from mlflow.entities import Metric
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def finish(self, status: str) -> None:
        """status: FINISHED, FAILED or KILLED (preempted; the run is resumed later)."""
        if self.enabled:
            self.client.set_terminated(self.run_id, status=status)
