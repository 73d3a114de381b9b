"""mamba-ssm's real Triton SSD kernels on CPU tensors, under the Triton interpreter.

The kernel tier of the test suite (tests/test_kernels.py) runs the model's own call sites through
`mamba_chunk_scan_combined`, which is Triton code, by setting TRITON_INTERPRET=1 (conftest.py does
that before anything imports triton) and applying five shims, none of which touches the kernels:

1. import `mamba_ssm.ops.triton.ssd_combined` without running `mamba_ssm/__init__.py`, which
   imports the CUDA extension `selective_scan_cuda` (absent from a CPU build): `mamba_ssm` is
   registered as a bare package whose __path__ is the installed one;
2. `torch.cuda.device(i)`, which the launchers enter around every kernel, is a null context;
3. `torch.cuda.get_device_properties(d).multi_processor_count`, read by two backward launchers,
   answers a fixed count;
4. every Triton autotuner keeps one config: benchmarking needs a GPU driver ("0 active drivers");
5. the interpreter's `tl.dot` multiplies bfloat16 operands as the uint16 bit patterns it stores
   them in (triton 3.9: a 16-element bf16 dot of values ~1 gave 2.7e11); they are widened to fp32
   first, as it already widens fp8 to fp16 and as a GPU's tensor cores accumulate bf16 products.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types

import torch

_SM_COUNT = 8


class _Props:
    multi_processor_count = _SM_COUNT


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"{name} is not installed (scripts/install.sh installs it on CPU machines)")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = spec
    sys.modules[name] = module


def _block_volume(config) -> int:
    v = 1
    for k, x in config.kwargs.items():
        v *= x if k.startswith("BLOCK_SIZE") else 1
    return v


def _one_config_per_autotuner(module) -> int:
    from triton.runtime.autotuner import Autotuner
    pruned = 0
    for value in vars(module).values():
        if isinstance(value, Autotuner) and len(value.configs) > 1:
            value.configs = [max(value.configs, key=_block_volume)]
            pruned += 1
    return pruned


def _bf16_dot_in_fp32() -> None:
    from triton.runtime import interpreter
    import triton.language as tl
    builder = interpreter.InterpreterBuilder
    if getattr(builder.create_dot, "widens_bf16", False):
        return
    plain = builder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        a, b = (self.cast_impl(t, tl.float32) if t.dtype.scalar == tl.bfloat16 else t for t in (a, b))
        return plain(self, a, b, d, input_precision, max_num_imprecise_acc)
    create_dot.widens_bf16 = True
    builder.create_dot = create_dot


def load_ssd_kernel():
    """-> mamba_ssm's `mamba_chunk_scan_combined`, runnable on CPU tensors. Call once per process
    (the torch.cuda shims stay installed: nothing on a CPU machine needs the real ones)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("TRITON_INTERPRET=1 must be set before triton is imported (tests/conftest.py sets it)")
    if torch.cuda.is_available():
        raise RuntimeError("a CUDA device is present: run tests/test_cuda.py instead of the interpreter tier")
    torch.cuda.device = lambda index=None: contextlib.nullcontext()
    torch.cuda.get_device_properties = lambda device=None: _Props()
    _bf16_dot_in_fp32()
    _bare_package("mamba_ssm")
    ssd = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    for name in ("ssd_bmm", "ssd_chunk_state", "ssd_state_passing", "ssd_chunk_scan", "ssd_combined"):
        _one_config_per_autotuner(importlib.import_module(f"mamba_ssm.ops.triton.{name}"))
    return ssd.mamba_chunk_scan_combined
