"""Run a sweep on Slurm through submitit (`cluster=slurm`): the pretraining as one job array
(`parallel` caps how many run at once) and each evaluation as a job that depends on its element
(afterok); the sweep waits, printing what runs, and turns every job's end into a status."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


class PretrainJob:
    """What each Slurm array task runs: a full pretraining run (ranks from Slurm's variables)."""

    def __call__(self, argv: list[str]) -> int:
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        from train.pretrain import main
        return main(argv)


class EvalJob:
    """What each dependent Slurm evaluation job runs."""

    def __call__(self, argv: list[str]) -> int:
        from evaluation.__main__ import main
        return main(["suite", *argv])


class SlurmRunner:
    def __call__(self, cfg, points: list, out: Path) -> dict[str, dict[str, str]]:
        import submitit
        s = cfg.slurm
        folder = out / "submitit"
        common = dict(cpus_per_task=s.cpus_per_task, additional_parameters=dict(s.additional))
        if s.partition:
            common["partition"] = s.partition
        if s.mem_gb:
            common["mem"] = f"{s.mem_gb}G"
        train = [p for p in points if p.pretrain and not p.finished()]
        statuses = {p.name: {} for p in points}
        jobs = {}
        if train:
            ex = submitit.SlurmExecutor(folder=folder)
            ex.update_parameters(time=s.time_min, nodes=s.nodes, ntasks_per_node=s.tasks_per_node,
                                 array_parallelism=cfg.parallel or len(train), job_name=f"dnachunker-{cfg.name}",
                                 **({"gpus_per_node": s.gpus_per_node} if s.gpus_per_node else {}), **common)
            for p, job in zip(train, ex.map_array(PretrainJob(), [p.argv for p in train])):
                jobs[(p.name, "pretrain")] = job
        if cfg.evaluation:
            for p in points:
                ex = submitit.SlurmExecutor(folder=folder)
                after = jobs.get((p.name, "pretrain"))
                extra = {**common["additional_parameters"],
                         **({"dependency": f"afterok:{after.job_id}", "kill_on_invalid_dep": "yes"} if after else {})}
                ex.update_parameters(time=s.eval_time_min, nodes=1, ntasks_per_node=1,
                                     job_name=f"dnachunker-{cfg.name}-eval",
                                     **({"gpus_per_node": 1} if s.gpus_per_node else {}),
                                     **{**common, "additional_parameters": extra})
                for kind, argv in p.eval_jobs(cfg.evaluation):
                    jobs[(p.name, kind)] = ex.submit(EvalJob(), argv)
        print(f"[sweep] {cfg.name}: submitted " + ", ".join(f"{n}/{k} {j.job_id}" for (n, k), j in jobs.items()),
              file=sys.stderr)
        by_name = {p.name: p for p in points}
        last = 0.0
        while not all(j.done() for j in jobs.values()):
            if time.time() - last > 15:
                last = time.time()
                running = [f"{n}/{k} {by_name[n].progress() if k == 'pretrain' else ''}".strip()
                           for (n, k), j in jobs.items() if j.state == "RUNNING"]
                print(f"[sweep] {sum(j.done() for j in jobs.values())}/{len(jobs)} done; running: "
                      f"{'; '.join(running)}", file=sys.stderr, flush=True)
            time.sleep(2)
        for (name, kind), job in jobs.items():
            try:
                rc = job.result()
                statuses[name][kind] = ("ok" if rc == 0 else f"failed (exit {rc}"
                                        + (", preempted: re-run" if rc == 75 else "") + ")")
            except Exception as e:  # a failed or cancelled job is a row status, not a crash of the sweep
                statuses[name][kind] = f"failed ({job.state}: {str(e).strip().splitlines()[-1][:160]})"
        return statuses
