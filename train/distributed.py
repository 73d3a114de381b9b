"""Process-group setup for torchrun, srun (one task per device) and plain single-process runs,
and the start-up checks that every rank agrees on where the run lives."""
from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


class SetupError(RuntimeError):
    """The ranks cannot run together as configured (the message says why and what to change)."""


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expand_hostlist(nodelist: str) -> list[str]:
    """Slurm's compressed host list -> host names: 'gpu[01-03,07],login1' -> gpu01 gpu02 gpu03
    gpu07 login1 (what `scontrol show hostnames` prints)."""
    hosts = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            hosts += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1)]
    return hosts


def slurm_rendezvous(env) -> dict[str, str] | None:
    """Ranks and the rendezvous of an `srun` job step, from Slurm's own variables.

    Only inside a step (SLURM_STEP_ID set): a batch script running python directly is one
    process even though SLURM_NTASKS counts the whole allocation. The master is the step's first
    node; the port is derived from the job and step ids, so every task computes the same one
    without the batch script exporting anything."""
    if "SLURM_STEP_ID" not in env or "SLURM_PROCID" not in env:
        return None
    job, step = int(env.get("SLURM_JOB_ID", "0")), int(env["SLURM_STEP_ID"]) % 1000
    return {"RANK": env["SLURM_PROCID"],
            "WORLD_SIZE": env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")),
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or expand_hostlist(
                env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "localhost")))[0],
            "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + (job * 7 + step) % 40000)}


def device_index(local_rank: int, visible: int) -> int:
    """CUDA device of a task. One visible device (srun --gpus-per-task, or a site that binds each
    task to its GPU) is that task's own, whatever its local rank; otherwise the local rank picks."""
    if visible == 1:
        return 0
    if local_rank >= visible:
        raise SetupError(f"local rank {local_rank} but only {visible} CUDA devices are visible to this task: "
                         "run one task per GPU (--ntasks-per-node = --gpus-per-node)")
    return local_rank


def bind(env, visible: int) -> int:
    """The CUDA device index of this task (device_index), written back to LOCAL_RANK: DeepSpeed
    calls set_device(LOCAL_RANK), which must name the device this task uses. With one visible
    device per task (--gpus-per-task=1, GPU binding, a site's CUDA_VISIBLE_DEVICES) that is 0,
    whatever the task's local rank on its node."""
    index = device_index(int(env["LOCAL_RANK"]), visible)
    env["LOCAL_RANK"] = str(index)
    return index


def setup() -> Dist:
    """Ranks from torchrun (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*), else from an srun step (see
    `slurm_rendezvous`), else a single process."""
    env = os.environ
    if "RANK" not in env:
        env.update(slurm_rendezvous(env) or {})
    env.setdefault("RANK", "0")
    env.setdefault("WORLD_SIZE", "1")
    env.setdefault("LOCAL_RANK", "0")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("MASTER_PORT", str(_free_port()))
    rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if torch.cuda.is_available():
        index = bind(env, torch.cuda.device_count())
        torch.cuda.set_device(index)
        device, backend = torch.device("cuda", index), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    import deepspeed
    deepspeed.init_distributed(dist_backend=backend, rank=rank, world_size=world, auto_mpi_discovery=False)
    if rank == 0:
        print(f"rendezvous {env['MASTER_ADDR']}:{env['MASTER_PORT']}: {world} rank(s), {backend}", file=sys.stderr,
              flush=True)
    return Dist(rank, world, local, device)


def broadcast(obj, src: int = 0):
    """`obj` of rank `src`, on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def raise_if_any(error: str | None) -> None:
    """Collective: raise SetupError on every rank if any rank has an error message."""
    errors = [e for e in gather(error) if e]
    if errors:
        raise SetupError(errors[0])


def check_shared_dir(path: Path) -> None:
    """Collective: every rank must see the same directory at `path`.

    Checkpoints are written into it by all ranks and judged complete by rank 0, so a node-local
    directory (/scratch, /tmp) would silently split every checkpoint across nodes."""
    path.mkdir(parents=True, exist_ok=True)
    token = broadcast(uuid.uuid4().hex if dist.get_rank() == 0 else None)
    probe = path / f".shared-check-{token}"
    if dist.get_rank() == 0:
        probe.write_text(token)
    dist.barrier()
    for _ in range(10):  # a network filesystem may show a new file on other nodes a moment late
        seen = probe.is_file() and probe.read_text() == token
        if seen:
            break
        time.sleep(0.5)
    views = gather((seen, socket.gethostname()))
    dist.barrier()
    if dist.get_rank() == 0:
        probe.unlink()
    blind = [f"rank {r} on {host}" for r, (ok, host) in enumerate(views) if not ok]
    if blind:
        raise SetupError(f"{path}: out_dir is not one directory shared by all ranks: {', '.join(blind)} cannot "
                         f"see the file that rank 0 on {views[0][1]} wrote there. Every rank writes its part "
                         "of each checkpoint into out_dir: put it on a filesystem that all nodes share, not on "
                         "node-local storage such as /scratch or /tmp")


def any_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any rank (one host sync with several ranks; none alone)."""
    if dist.get_world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def any_on_device(flag: torch.Tensor) -> torch.Tensor:
    """A 0/1 device tensor, 1 on every rank if it is 1 on any; queued, not read (no host sync)."""
    if dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


def means(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the ranks: one all-reduce, one host sync."""
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist()))


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
