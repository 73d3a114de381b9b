"""Optional CUDA kernels (the `[cuda]` extra), imported only when CUDA is present.

mamba-ssm, causal-conv1d and flash-attn cannot be imported on a machine without CUDA, so nothing
here is imported at module load. `get(name, tensor)` returns the kernel a call site may use for
that tensor, or None; every call site has a pure-PyTorch twin that is used otherwise and that the
tests compare against.

A missing kernel is loud: `report()` says which implementation each op runs and, for a kernel
that did not import, the import's error; `require()` (called by training on every rank with a
CUDA device) raises KernelError when CUDA is present and a kernel is not, since the PyTorch paths
are several times slower. DNACHUNKER_KERNELS=torch is the one setting that chooses the PyTorch
paths on purpose (comparisons, debugging, a machine where a kernel cannot be built).

`installed(...)` puts given implementations in place of the CUDA ones, on any device: the CPU
kernel tier of the tests runs the model's CUDA branch with mamba-ssm's real Triton SSD kernel
under the Triton interpreter and with checked stand-ins for causal-conv1d and flash-attn.
"""
from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

_KERNELS = {
    "ssd": ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined"),
    "conv1d": ("causal_conv1d", "causal_conv1d_fn"),
    "flash_varlen": ("flash_attn", "flash_attn_varlen_func"),
}
_installed: dict[str, Callable] = {}
_errors: dict[str, str] = {}  # kernel -> why it did not import


class KernelError(RuntimeError):
    """CUDA is here, a kernel is not, and the PyTorch paths were not chosen."""


@functools.cache
def _load(name: str):
    if not torch.cuda.is_available():
        return None
    module, attr = _KERNELS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as e:  # not installed, or built against another torch/CUDA
        _errors[name] = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
        return None


def get(name: str, like: torch.Tensor):
    """The kernel `name` if it can run on `like`'s device (or was installed), else None."""
    if os.environ.get("DNACHUNKER_KERNELS", "auto") == "torch":
        return None
    if name in _installed:
        return _installed[name]
    return _load(name) if like.is_cuda else None


@contextmanager
def installed(**kernels: Callable) -> Iterator[None]:
    """Use these implementations (keyword = kernel name) on every device inside the block."""
    unknown = set(kernels) - set(_KERNELS)
    if unknown:
        raise ValueError(f"unknown kernels {sorted(unknown)}; known: {sorted(_KERNELS)}")
    saved = dict(_installed)
    _installed.update(kernels)
    try:
        yield
    finally:
        _installed.clear()
        _installed.update(saved)


def current() -> dict[str, Callable]:
    """The implementations installed now: a recomputation in backward re-installs them, so that
    it runs the same kernels as the forward it repeats."""
    return dict(_installed)


def status() -> dict[str, bool]:
    """Which optional kernels are importable here (for logs and bug reports)."""
    return {name: _load(name) is not None for name in _KERNELS}


def chosen_torch() -> bool:
    return os.environ.get("DNACHUNKER_KERNELS", "auto") == "torch"


def report() -> dict[str, str]:
    """kernel -> what CUDA tensors run: 'module.function', or 'PyTorch path (why)'."""
    out = {}
    for name, (module, attr) in _KERNELS.items():
        if name in _installed:
            out[name] = f"installed: {getattr(_installed[name], '__qualname__', _installed[name])}"
        elif chosen_torch():
            out[name] = "PyTorch path (DNACHUNKER_KERNELS=torch)"
        elif not torch.cuda.is_available():
            out[name] = "PyTorch path (no CUDA device)"
        elif _load(name) is not None:
            out[name] = f"{module}.{attr}"
        else:
            out[name] = f"PyTorch path (import failed: {_errors.get(name, 'unknown error')})"
    return out


def require() -> None:
    """Raise KernelError naming every kernel that CUDA training would run without, and why."""
    if chosen_torch() or not torch.cuda.is_available():
        return
    missing = {name: _errors.get(name, "unknown error") for name in _KERNELS if _load(name) is None}
    if missing:
        raise KernelError("CUDA is available but these kernels are not, so training would run the several-times "
                          "slower PyTorch paths: " + "; ".join(f"{n} ({_KERNELS[n][0]}): {e}" for n, e in missing.items())
                          + ". Install them (pip install -e '.[cuda]', docs/kernels.md), or set DNACHUNKER_KERNELS=torch "
                          "to run the PyTorch paths on purpose.")
