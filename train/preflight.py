"""Everything a pretraining job needs, checked in seconds: before it waits in a queue (`dnachunker
pretrain --check`, which `bash slurm/pretrain.sh` runs on the login node before it submits), and
again when it starts, before DeepSpeed is set up.

Each check is a `Finding` (ok | warn | FAIL, what, detail); any FAIL makes --check exit 2 and a
run stop before it starts. The checks: the resolved config and its ranges (by loading it); the
data (manifest, splits, window length against model.max_len); out_dir (writable; on a filesystem
every node of a multi-node job can see); the checkpoint a resume would load (complete, and
loadable without running code); tracking (the sqlite store's directory, or the server answering);
the world size against the batch settings; the GPUs and kernels (where this node has them); tokens
per step and to the budget; a projected step time (labelled: a projection from parameter and
attention counts at an assumed utilisation, not a measurement).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "glusterfs", "wekafs", "panfs", "cifs",
              "smb3", "fuse.sshfs", "fuse.juicefs", "fuse.ceph-fuse", "afs")
H100_BF16, MFU = 989e12, 0.40


def si(x: float, unit: str) -> str:
    """3 significant figures with an SI prefix: 4.1 M tokens, 590 MFLOP, 0.35 s."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


@dataclass
class Finding:
    level: str                       # ok | warn | FAIL
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level:<4}  {self.what:<12}  {self.detail}"


def _fs_type(path: Path) -> tuple[str, str]:
    """(filesystem type, mount point) of the mount holding `path` (from /proc/mounts)."""
    path = path.resolve()
    best = ("unknown", "/")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and (path == Path(parts[1]) or Path(parts[1]) in path.parents):
                if len(parts[1]) >= len(best[1]):
                    best = (parts[2], parts[1])
    except OSError:
        pass
    return best


def check_data(cfg) -> list[Finding]:
    from data_pipeline.corpus import open_split
    from data_pipeline.errors import DataError
    root = cfg.data.root
    try:
        train, valid = open_split(root, "train"), open_split(root, "valid")
    except (DataError, OSError) as e:
        return [Finding("FAIL", "data", f"{e} — data.root={root} must name a shard set made by "
                                         f"`dnachunker data all --config configs/data/<genome>.yaml` (data.root=<its out>)")]
    out = [Finding("ok", "data", f"{root}: {len(train):,} training and {len(valid):,} validation windows of "
                                 f"{train.length:,} bp")]
    if train.length > cfg.model.max_len:
        out.append(Finding("FAIL", "data", f"windows of {train.length} bp are longer than model.max_len="
                                           f"{cfg.model.max_len}"))
    return out


def check_out_dir(cfg, nodes: int) -> list[Finding]:
    out = Path(cfg.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".preflight-{os.getpid()}"
        probe.write_text("x")
        probe.unlink()
    except OSError as e:
        return [Finding("FAIL", "out_dir", f"{out}: {e.strerror or e}")]
    fs, mount = _fs_type(out)
    where = f"{out.resolve()} ({fs} at {mount})"
    if nodes > 1 and (fs == "tmpfs" or fs not in NETWORK_FS):
        return [Finding("FAIL" if fs == "tmpfs" else "warn", "out_dir",
                        f"{where}: {nodes} nodes write checkpoints here; it must be a filesystem every node sees "
                        f"(a shared {', '.join(NETWORK_FS[:4])}, ...), and {fs} usually is not")]
    return [Finding("ok", "out_dir", f"{where}, writable")]


def check_resume(cfg, read: bool = True) -> list[Finding]:
    """read: also read every file of it as resuming would (a run does that itself when it resumes)."""
    from . import checkpoint, safe_load
    try:
        path = checkpoint.find_resume(Path(cfg.out_dir) / "checkpoints", cfg.checkpoint.resume)
    except ValueError as e:
        return [Finding("FAIL", "resume", str(e))]
    if path is None:
        return [Finding("ok", "resume", "nothing to resume: starts at step 0")]
    try:
        safe_load.check(safe_load.pickles(path) if read else [])
    except safe_load.UnsafeCheckpoint as e:
        return [Finding("FAIL", "resume", str(e))]
    return [Finding("ok", "resume", f"{path} (step {checkpoint.read_state(path)['step']}), loadable without "
                                    f"running code")]


def check_tracking(cfg) -> list[Finding]:
    from dnachunker.configlib import redact
    uri = cfg.tracking.tracking_uri or f"sqlite:///{Path(cfg.out_dir).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        d = Path(uri[len("sqlite:///"):]).parent
        ok = d.is_dir() and os.access(d, os.W_OK)
        return [Finding("ok" if ok else "FAIL", "tracking", f"{redact(uri)}" + ("" if ok else f": {d} not writable"))]
    if uri.startswith(("http://", "https://")):
        import urllib.request
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5)
            return [Finding("ok", "tracking", f"{redact(uri)} answers")]
        except Exception as e:  # noqa: BLE001  any failure to reach it is the finding
            return [Finding("warn", "tracking", f"{redact(uri)} does not answer ({type(e).__name__}): the run would "
                                                "log to metrics.jsonl only")]
    return [Finding("ok", "tracking", redact(uri))]


def check_batch(cfg, world: int) -> list[Finding]:
    per_pass = world * cfg.data.micro_batch_size
    if cfg.global_batch_size is not None and cfg.global_batch_size % per_pass:
        return [Finding("FAIL", "batch", f"global_batch_size={cfg.global_batch_size} is not a multiple of ranks x "
                                         f"data.micro_batch_size = {world} x {cfg.data.micro_batch_size}")]
    accum = cfg.global_batch_size // per_pass if cfg.global_batch_size else cfg.grad_accum
    return [Finding("ok", "batch", f"{world} rank(s) x {cfg.data.micro_batch_size} windows x {accum} "
                                   f"accumulation = {per_pass * accum} windows per step")]


def check_devices(gpus_per_node: int | None, tasks_per_node: int | None) -> list[Finding]:
    import torch

    from dnachunker.ops import kernels
    out = []
    if gpus_per_node is not None and tasks_per_node is not None and gpus_per_node and gpus_per_node != tasks_per_node:
        out.append(Finding("FAIL", "devices", f"{tasks_per_node} tasks per node for {gpus_per_node} GPUs: run one "
                                              f"task per GPU"))
    if torch.cuda.is_available():
        missing = {k: v for k, v in kernels.report().items() if v.startswith("PyTorch path")}
        out.append(Finding("FAIL" if missing and not kernels.chosen_torch() else "ok", "kernels",
                           "; ".join(f"{k}: {v}" for k, v in kernels.report().items())))
    else:
        out.append(Finding("ok" if not gpus_per_node else "warn", "kernels",
                           "no GPU on this node" + (f": checked again by every rank when the job starts on its "
                                                     f"{gpus_per_node} GPU(s) per node" if gpus_per_node else "")))
    return out


COUNT_BP = 512  # the projection counts FLOPs on this many bases: seconds, even for the paper's model


def projected_flops_per_bp(cfg, length: int) -> tuple[float, float]:
    """Training FLOPs per bp at `length`, a projection -> (FLOPs per bp, main-network positions per
    bp). train.flops counts one forward + backward of the model at initialisation on the first
    COUNT_BP bases of a validation window, masked as in training; that count, less its attention,
    is linear in the length (gathers, scans chunked at a fixed size, per-position layers), so it is
    taken per bp; attention is added at `length` by hand with the counted positions per bp. The
    router's ratio at initialisation is not the trained one: a trained model's, with mask
    protection, runs near α plus the masked positions."""
    import torch

    from data_pipeline.loader import PretrainLoader
    from dnachunker.masking import bert_mask

    from .flops import training_flops
    from .build import fitted_tokenization, init_model
    model = init_model(cfg)
    model.tokenization = fitted_tokenization(cfg)
    sample = next(iter(PretrainLoader(cfg.data.root, "valid", 1, train=False)))
    ids, valid = sample["input_ids"][:, :COUNT_BP], sample["valid"][:, :COUNT_BP]
    masked, labels = bert_mask(ids, valid, torch.Generator().manual_seed(0))
    f = training_flops(model, {"input_ids": masked, "valid": valid, "labels": labels,
                               "weight": sample["weight"][:, :COUNT_BP]})
    linear = f["flops_per_bp"] * (1 - f["attention_share"])
    chunks = length * f["main_positions_per_bp"]
    attention = 12 * chunks ** 2 * cfg.model.d_model[-1] * cfg.model.main_layers / length
    return linear + attention, f["main_positions_per_bp"]


def check_budget(cfg, world: int, length: int | None, peak: float | None, gpus: bool) -> list[Finding]:
    if length is None:
        return []
    accum = cfg.global_batch_size // (world * cfg.data.micro_batch_size) if cfg.global_batch_size else cfg.grad_accum
    tokens = world * cfg.data.micro_batch_size * accum * length
    out = [Finding("ok", "budget", f"{si(tokens, ' tokens')} per step; {cfg.max_steps:,} steps = "
                                   f"{si(tokens * cfg.max_steps, ' tokens')}")]
    if gpus:
        try:
            per_bp, ratio = projected_flops_per_bp(cfg, length)
        except (FileNotFoundError, ValueError) as e:  # a tokenization not fitted yet (bpe fits at the start)
            return out + [Finding("warn", "step time", f"not projected: {e}")]
        flops, peak = per_bp * tokens, peak or H100_BF16
        seconds = flops / (world * peak * MFU)
        out.append(Finding("ok", "step time", f"projection, not a measurement: {si(per_bp, 'FLOP')} per bp "
                                              f"(counted on {COUNT_BP} bp at initialisation, {ratio:.2f} main-network "
                                              f"positions per bp; attention at {length} bp added by hand), "
                                              f"{si(flops, 'FLOP')} per step -> {si(seconds, 's')} on {world} GPU(s) "
                                              f"at {MFU:.0%} of {peak / 1e12:.0f} TFLOP/s; "
                                              f"{si(cfg.max_steps * seconds / 3600, 'h')} to max_steps "
                                              f"(python -m bench.gpu_step measures it)"))
    return out


def run(cfg, world: int = 1, nodes: int = 1, gpus_per_node: int | None = None, tasks_per_node: int | None = None,
        peak: float | None = None) -> list[Finding]:
    """Every check (see the module docstring): what --check prints."""
    findings = check_data(cfg)
    length = None
    if not any(f.level == "FAIL" for f in findings):
        from data_pipeline.corpus import open_split
        length = open_split(cfg.data.root, "train").length
    findings += check_out_dir(cfg, nodes) + check_resume(cfg) + check_tracking(cfg) + check_batch(cfg, world)
    if tasks_per_node and world != nodes * tasks_per_node:
        findings.append(Finding("FAIL", "batch", f"{world} ranks but {nodes} node(s) x {tasks_per_node} tasks"))
    findings += check_devices(gpus_per_node, tasks_per_node)
    findings += check_budget(cfg, world, length, peak, bool(gpus_per_node))
    return findings


def at_start(cfg, world: int, nodes: int) -> list[Finding]:
    """What every rank checks when a run starts, before DeepSpeed: the data, out_dir, the checkpoint
    to resume (found; it is read when it is loaded) and the batch."""
    return check_data(cfg) + check_out_dir(cfg, nodes) + check_resume(cfg, read=False) + check_batch(cfg, world)
