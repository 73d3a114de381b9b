"""Checked stand-ins for the two CUDA-only kernels of the `[cuda]` extra.

causal-conv1d and flash-attn cannot run without CUDA in any form. To run the model's CUDA branch
on CPU anyway, each stand-in below takes the library function's exact signature, enforces the
preconditions that the library's own source imposes (each check names the file it comes from),
normalises its inputs the way the library's Python wrapper does, and then computes the reference
result, returning it in the memory layout the kernel would. A call that the real kernel would
reject raises `ContractError` here instead of on a user's first GPU run.

Sources (read at Dao-AILab/causal-conv1d and Dao-AILab/flash-attention, main, 2026):
  CONV_PY   causal_conv1d/causal_conv1d_interface.py   CausalConv1dFn.forward / causal_conv1d_fn
  CONV_CPP  csrc/causal_conv1d.cpp                     causal_conv1d_fwd / causal_conv1d_bwd
  FLASH_PY  flash_attn/flash_attn_interface.py         flash_attn_varlen_func, maybe_contiguous,
                                                       the custom op's `max_seqlen_q: int`
  FLASH_CPP csrc/flash_attn/flash_api.cpp              mha_varlen_fwd / mha_varlen_bwd
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CONV_PY = "causal_conv1d/causal_conv1d_interface.py"
CONV_CPP = "csrc/causal_conv1d.cpp"
FLASH_PY = "flash_attn/flash_attn_interface.py"
FLASH_CPP = "csrc/flash_attn/flash_api.cpp"
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_HALF = (torch.float16, torch.bfloat16)


class ContractError(RuntimeError):
    pass


def _check(ok: bool, source: str, message: str) -> None:
    if not ok:
        raise ContractError(f"{source}: {message}")


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                     final_states_out=None, activation=None):
    """x: (batch, dim, seqlen), weight: (dim, width), bias: (dim,) -> (batch, dim, seqlen)."""
    _check(activation in (None, "silu", "swish"), CONV_PY, "activation must be None, silu, or swish")
    _check(seq_idx is None and initial_states is None and not return_final_states, CONV_PY,
           "stand-in covers the plain call only (no seq_idx / initial_states / final states)")
    if x.stride(2) != 1 and x.stride(1) != 1:  # CONV_PY normalises any other layout
        x = x.contiguous()
    _check(x.dtype in _FLOATS, CONV_CPP, f"input type {x.dtype} not implemented")
    _check(weight.dtype in _FLOATS, CONV_CPP, f"weight type {weight.dtype} not implemented")
    _check(x.dim() == 3, CONV_CPP, f"x must have shape (batch, dim, seqlen), got {tuple(x.shape)}")
    batch, dim, seqlen = x.shape
    width = weight.size(-1)
    _check(tuple(weight.shape) == (dim, width), CONV_CPP, f"weight must have shape ({dim}, {width}), got "
           f"{tuple(weight.shape)}")
    _check(x.stride(2) == 1 or x.stride(1) == 1, CONV_CPP, "x.stride(2) == 1 || x.stride(1) == 1")
    channel_last = x.stride(1) == 1 and x.stride(2) > 1
    if channel_last:
        _check(dim % 8 == 0, CONV_CPP, "causal_conv1d only supports channel dimension divisible by 8 for now")
        _check(x.stride(2) % 8 == 0 and x.stride(0) % 8 == 0, CONV_CPP,
               "causal_conv1d with channel last layout requires strides (x.stride(0) and x.stride(2)) to be "
               f"multiples of 8 (got strides {tuple(x.stride())})")
    _check(2 <= width <= 4, CONV_CPP, "causal_conv1d only supports width between 2 and 4")
    if bias is not None:
        bias = bias.contiguous()  # CONV_PY
        _check(bias.dtype == weight.dtype, CONV_CPP, "bias.scalar_type() == weight_type")
        _check(tuple(bias.shape) == (dim,), CONV_CPP, f"bias must have shape ({dim},)")
    y = F.conv1d(x.to(weight.dtype), weight.unsqueeze(1), bias, padding=width - 1, groups=dim)[..., :seqlen]
    y = (F.silu(y) if activation else y).to(x.dtype)
    return torch.empty_like(x).copy_(y)  # the kernel's output is torch::empty_like(x): same layout as x


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False):
    """q: (total_q, nheads, headdim), k/v: (total_k, nheads_k, headdim), cu_seqlens_*: (batch+1,)
    int32 -> (total_q, nheads, headdim). Non-causal, no dropout (the model's use)."""
    _check(isinstance(max_seqlen_q, int) and isinstance(max_seqlen_k, int), FLASH_PY,
           "max_seqlen_q / max_seqlen_k are `int` in the custom op's signature, got "
           f"{type(max_seqlen_q).__name__} / {type(max_seqlen_k).__name__}")
    _check(dropout_p == 0.0 and not causal, FLASH_PY, "stand-in covers non-causal attention without dropout")
    q, k, v = (t.contiguous() if t.stride(-1) != 1 else t for t in (q, k, v))  # maybe_contiguous
    _check(q.dtype in _HALF, FLASH_CPP, f"FlashAttention only support fp16 and bf16 data type (got {q.dtype})")
    _check(k.dtype == q.dtype and v.dtype == q.dtype, FLASH_CPP, "query, key and value must have the same dtype")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        _check(cu.dtype == torch.int32, FLASH_CPP, f"{name} must have dtype int32 (got {cu.dtype})")
        _check(cu.is_contiguous(), FLASH_CPP, f"{name} must be contiguous")
    _check(q.dim() == 3 and k.dim() == 3 and v.dim() == 3, FLASH_CPP,
           "q, k, v must be (total, num_heads, head_size)")
    total_q, heads, hd = q.shape
    batch = cu_seqlens_q.numel() - 1
    _check(batch > 0, FLASH_CPP, "batch size must be positive")
    _check(hd <= 256 and v.size(2) <= 256, FLASH_CPP, "FlashAttention forward only supports head dimension at most 256")
    _check(heads % k.size(1) == 0, FLASH_CPP, "Number of heads in key/value must divide number of heads in query")
    _check(tuple(cu_seqlens_k.shape) == (batch + 1,), FLASH_CPP, f"cu_seqlens_k must have shape ({batch + 1},)")
    # FLASH_PY documents cu_seqlens as the cumulative lengths, indexing into the packed tensors;
    # the kernel reads them unchecked, so a wrong value gives silent garbage: check it here
    for cu, total, mx, name in ((cu_seqlens_q, total_q, max_seqlen_q, "q"), (cu_seqlens_k, k.size(0), max_seqlen_k, "k")):
        lengths = cu.diff()
        _check(int(cu[0]) == 0 and int(cu[-1]) == total and bool((lengths >= 0).all()), FLASH_PY,
               f"cu_seqlens_{name} must start at 0, not decrease and end at the packed length {total} (got {cu.tolist()})")
        _check(mx >= int(lengths.max()), FLASH_PY, f"max_seqlen_{name}={mx} is below the longest sequence")
    scale = softmax_scale if softmax_scale is not None else hd ** -0.5
    rep = heads // k.size(1)
    out = []
    for i in range(batch):
        qs = q[int(cu_seqlens_q[i]):int(cu_seqlens_q[i + 1])].transpose(0, 1).float()
        ks = k[int(cu_seqlens_k[i]):int(cu_seqlens_k[i + 1])].transpose(0, 1).float().repeat_interleave(rep, 0)
        vs = v[int(cu_seqlens_k[i]):int(cu_seqlens_k[i + 1])].transpose(0, 1).float().repeat_interleave(rep, 0)
        out.append(F.scaled_dot_product_attention(qs, ks, vs, scale=scale).transpose(0, 1))
    return torch.cat(out).to(q.dtype)
