"""Optional CUDA kernels (the `[cuda]` extra), imported only when CUDA is present.

mamba-ssm, causal-conv1d and flash-attn cannot be imported on a machine without CUDA, so nothing
here is imported at module load. `available(name)` answers whether a kernel may be used for a
tensor; every caller has a pure-PyTorch twin that is used otherwise and that the tests compare
against. Set DNACHUNKER_KERNELS=torch to force the PyTorch path on a GPU (for comparisons).
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

_KERNELS = {
    "ssd": ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined"),
    "conv1d": ("causal_conv1d", "causal_conv1d_fn"),
    "flash_varlen": ("flash_attn", "flash_attn_varlen_func"),
}


@functools.cache
def _load(name: str):
    if not torch.cuda.is_available():
        return None
    module, attr = _KERNELS[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception:  # not installed, or built against another torch/CUDA
        return None


def get(name: str, like: torch.Tensor):
    """The CUDA kernel `name` if it can run on `like`'s device, else None."""
    if not like.is_cuda or os.environ.get("DNACHUNKER_KERNELS", "auto") == "torch":
        return None
    return _load(name)


def status() -> dict[str, bool]:
    """Which optional kernels are importable here (for logs and bug reports)."""
    return {name: _load(name) is not None for name in _KERNELS}
