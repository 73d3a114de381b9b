"""Kernel tier: the model's CUDA branch, run on a CPU.

* mamba-ssm's real Triton SSD kernel (`mamba_chunk_scan_combined`) under the Triton interpreter
  (tests/triton_interpreter.py) for the BiMamba mixer and the dechunk gated scan;
* checked stand-ins for causal-conv1d and flash-attn (tests/kernel_contracts.py), which enforce
  the preconditions of the libraries' source and then compute the reference result.

Tolerances (fp32): the Triton kernel accumulates in another order and with chunk 128 instead of
64, so values agree to ~1e-5 relative to their scale and gradients to ~1e-5 of theirs (a weight's
gradient sums thousands of positions: its scale reaches ~300 in the tiny model); we assert
atol = rtol = 2e-4 on values, rtol = 1e-3 and atol = 1e-3 + 1e-4 x the tensor's largest |value|
on gradients. bf16 runs are compared by argmax agreement.
On a machine with CUDA this tier is skipped: tests/test_cuda.py runs the real kernels there.
"""
import pytest
import torch

from dnachunker import DNAChunker, DNAChunkerConfig, MambaConfig
from dnachunker.masking import bert_mask
from dnachunker.modules.bimamba import BiMamba
from dnachunker.modules.transformer import attention
from dnachunker.ops import gated_scan, gated_scan_ref, kernels
from dnachunker.ops.ragged import reverse_index
from dnachunker.tokenizer import batch_encode

from .kernel_contracts import ContractError, causal_conv1d_fn, flash_attn_varlen_func
from .test_model import CONFIGS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: tests/test_cuda.py runs the real kernels")]
VALUES = dict(rtol=2e-4, atol=2e-4)


@pytest.fixture(scope="module")
def ssd():
    from .triton_interpreter import load_ssd_kernel
    return load_ssd_kernel()


def _run(fn, inputs, params, autocast=False, **kernel_impls):
    """fn() and its backward with the given kernels installed (none: the PyTorch path), as on a GPU
    where both passes find the CUDA kernels -> (output, input and param grads)."""
    for t in [*inputs, *params]:
        t.grad = None
    with kernels.installed(**kernel_impls), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = fn()
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [t.grad.clone() for t in [*inputs, *params]]


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], **VALUES)
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-3 + 1e-4 * gb.abs().max().item())


@pytest.mark.parametrize("d_model,headdim,d_state", [(32, 16, 16), (48, 16, 16), (64, 32, 32)])
def test_bimamba_mixer_on_triton_ssd_and_conv_contract_matches_torch_path(ssd, d_model, headdim, d_state):
    torch.manual_seed(0)
    mixer = BiMamba(d_model, MambaConfig(d_state=d_state, headdim=headdim))
    x = torch.randn(2, 200, d_model, requires_grad=True)
    valid = torch.arange(200)[None, :] < torch.tensor([[200], [137]])
    params = list(mixer.parameters())
    order = reverse_index(valid)
    fast = _run(lambda: mixer(x, order), [x], params, ssd=ssd, conv1d=causal_conv1d_fn)
    ref = _run(lambda: mixer(x, order), [x], params)
    _assert_same(fast, ref)


@pytest.mark.parametrize("d,headdim", [(32, 32), (48, 48), (256, 64)])
def test_dechunk_gated_scan_on_triton_kernel_matches_reference(ssd, d, headdim):
    calls = []

    def spy(x, *args, **kw):
        calls.append(x.shape)
        return ssd(x, *args, **kw)
    g = torch.Generator().manual_seed(d)
    u = torch.randn(2, 300, d, generator=g, requires_grad=True)
    p = torch.rand(2, 300, generator=g)
    p[:, 0], p[:, 50:60], p[:, 100] = 1.0, 0.0, 1.0  # hard reset, pure carry, hard boundary
    p.requires_grad_(True)
    fast = _run(lambda: gated_scan(u, p), [u, p], [], ssd=spy)
    ref = _run(lambda: gated_scan_ref(u, p), [u, p], [])
    _assert_same(fast, ref)
    # forward scan and the backward's reverse (adjoint) scan both on the kernel, in the layout
    # H-Net uses: heads of headdim >= 32 sharing one gate, not one head per channel
    assert len(calls) == 2 and all(s[2:] == (d // headdim, headdim) for s in calls)


@pytest.mark.parametrize("on", ["forward", "autocast"])
def test_dechunk_backward_runs_the_kernel_its_forward_ran_in_fp32_and_bf16(ssd, on):
    """The hand-written backward's reverse scan uses the forward's implementation even when the
    backward runs outside the block that installed it (as DeepSpeed's does), in fp32 and under
    bf16 autocast (bf16 chunk outputs, fp32 scan)."""
    calls = []

    def spy(*args, **kw):
        calls.append(1)
        return ssd(*args, **kw)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 257, 64, generator=g)
    u = (u.bfloat16() if on == "autocast" else u).requires_grad_(True)
    p = torch.rand(2, 257, generator=g)
    p[:, 0], p[:, 40:45] = 1.0, 0.0
    p.requires_grad_(True)
    weights = torch.linspace(-1, 1, u.numel()).view(u.shape)
    grads = []
    for impl in ({"ssd": spy}, {}):
        u.grad = p.grad = None
        with kernels.installed(**impl):
            out = gated_scan(u, p)
        (out.float() * weights).sum().backward()  # outside the block
        grads.append((out.detach().float(), u.grad.float(), p.grad.float()))
    assert len(calls) == 2
    tol = dict(rtol=1e-3, atol=1e-3) if on == "forward" else dict(rtol=2e-2, atol=2e-2)
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, **tol)


def test_tiny_model_forward_and_backward_on_kernel_path(ssd, chr20_windows):
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml"))
    batch = batch_encode([chr20_windows(256, 1)[0], chr20_windows(180, 2)[1]])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    params = list(model.parameters())
    calls = []

    def counted(*args, **kw):
        calls.append(1)
        return ssd(*args, **kw)

    def loss():
        out = model(ids, batch.valid, labels, batch.weight())
        return torch.cat([out.logits.flatten(), out.loss.view(1)])
    fast = _run(loss, [], params, ssd=counted, conv1d=causal_conv1d_fn, flash_varlen=flash_attn_varlen_func)
    ref = _run(loss, [], params)
    _assert_same(fast, ref)
    # through the Triton kernel: 4 BiMamba layers x 2 directions (each again when recomputed in
    # backward) + 2 dechunks x 2 scans, each with the reverse scan of its backward
    assert len(calls) == 4 * 2 * 2 + 2 * 2 * 2


def test_tiny_model_backward_on_kernel_path_under_bf16_autocast(ssd, chr20_windows):
    """Forward and backward of the whole model under bf16 autocast, scans and dechunk backward on
    the Triton kernel. bf16 rounding (and the router decisions it flips) moves the gradients by
    6-13 % on the PyTorch path already, so the kernel path is held to that: its gradient's
    distance to the fp32 gradient at most twice the PyTorch path's (measured 1.0-1.3x), its loss
    within 1 %. Before the interpreter's bf16 dot was mended the kernel's gradients were ~1e22."""
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml"))
    batch = batch_encode([chr20_windows(256, 1)[0], chr20_windows(180, 2)[1]])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    params = list(model.parameters())
    loss = lambda: model(ids, batch.valid, labels, batch.weight()).loss.view(1)  # noqa: E731
    fast = _run(loss, [], params, autocast=True, ssd=ssd, conv1d=causal_conv1d_fn)
    half = _run(loss, [], params, autocast=True)
    full = _run(loss, [], params)
    torch.testing.assert_close(fast[0], half[0], rtol=1e-2, atol=0)
    flat = [torch.cat([g.flatten() for g in run[1]]) for run in (fast, half, full)]
    error = [((g - flat[2]).norm() / flat[2].norm()).item() for g in flat[:2]]
    assert error[0] < 2 * error[1], error


def test_attention_through_flash_varlen_contract_in_bf16_matches_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 50, 16, generator=g).bfloat16().requires_grad_(True) for _ in range(3))
    valid = torch.arange(50)[None, :] < torch.tensor([[50], [31]])
    fast = _run(lambda: attention(q, k, v, valid) * valid[:, None, :, None], [q, k, v], [],
                flash_varlen=flash_attn_varlen_func)
    ref = _run(lambda: attention(q, k, v, valid) * valid[:, None, :, None], [q, k, v], [])
    torch.testing.assert_close(fast[0].float(), ref[0].float(), rtol=2e-2, atol=2e-2)
    for a, b in zip(fast[1], ref[1]):
        torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-2)


def test_tiny_model_under_bf16_autocast_takes_the_flash_branch(chr20_windows):
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml")).eval()
    batch = batch_encode([chr20_windows(256, 1)[0], chr20_windows(180, 2)[1]])
    calls = []

    def counted(*args, **kw):
        calls.append(args[3])  # cu_seqlens
        return flash_attn_varlen_func(*args, **kw)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(batch.input_ids, batch.valid).logits  # SDPA in bf16
        with kernels.installed(flash_varlen=counted, conv1d=causal_conv1d_fn):
            half = model(batch.input_ids, batch.valid).logits
    assert len(calls) == model.cfg.main_layers
    assert all(c is calls[0] for c in calls)  # the packing (a host sync) is computed once, not per layer
    torch.testing.assert_close(half[batch.valid].float(), ref[batch.valid].float(), rtol=0, atol=3e-2)


# ---- the contracts themselves: what the real kernels reject, the stand-ins reject ------------

def test_conv_contract_rejects_the_channel_last_slice_that_crashes_causal_conv1d():
    zxbcdt = torch.randn(2, 100, 164)  # the tiny stage-0 in_proj output: 164 wide
    xBC = zxbcdt[..., 64:160]          # conv channels: a slice, stride(1) = 164
    w, b = torch.randn(96, 4), torch.zeros(96)
    with pytest.raises(ContractError, match=r"csrc/causal_conv1d.cpp: .*multiples of 8"):
        causal_conv1d_fn(xBC.transpose(1, 2), w, b, activation="silu")
    out = causal_conv1d_fn(xBC.contiguous().transpose(1, 2), w, b, activation="silu")
    assert out.stride(1) == 1  # the kernel keeps the channel-last layout of its input
    with pytest.raises(ContractError, match="width between 2 and 4"):
        causal_conv1d_fn(xBC.contiguous().transpose(1, 2), torch.randn(96, 5), b)
    with pytest.raises(ContractError, match="bias.scalar_type"):
        causal_conv1d_fn(xBC.contiguous().transpose(1, 2), w, b.double())
    with pytest.raises(ContractError, match="divisible by 8"):
        causal_conv1d_fn(torch.randn(2, 100, 20).transpose(1, 2), torch.randn(20, 4))


@pytest.mark.parametrize("config", ["tiny", "paper"])
def test_every_bimamba_conv_call_of_a_config_satisfies_the_causal_conv1d_contract(config):
    cfg = DNAChunkerConfig.load(CONFIGS / f"{config}.yaml")
    for width in cfg.d_model[:-1]:
        mixer = BiMamba(width, cfg.mamba)
        x = torch.randn(1, 24, width)
        with torch.no_grad(), kernels.installed(conv1d=causal_conv1d_fn):
            mixer(x, None)


def test_flash_contract_rejects_what_flash_attn_rejects():
    q = torch.randn(10, 2, 16).bfloat16()
    cu = torch.tensor([0, 6, 10], dtype=torch.int32)
    assert flash_attn_varlen_func(q, q, q, cu, cu, 6, 6).shape == q.shape
    cases = [((q, q, q, cu.long(), cu, 6, 6), "cu_seqlens_q must have dtype int32"),
             ((q, q, q, cu, cu, torch.tensor(6), 6), "are `int`"),
             ((q.float(), q.float(), q.float(), cu, cu, 6, 6), "only support fp16 and bf16"),
             ((q, q.half(), q, cu, cu, 6, 6), "same dtype"),
             ((torch.randn(10, 1, 264).bfloat16(),) * 3 + (cu, cu, 6, 6), "at most 256"),
             ((q, q, q, torch.tensor([0, 6, 9], dtype=torch.int32), cu, 6, 6), "end at the packed length"),
             ((q, q, q, cu, cu, 4, 6), "below the longest sequence")]
    for args, message in cases:
        with pytest.raises(ContractError, match=message):
            flash_attn_varlen_func(*args)


def test_a_kernel_that_fails_to_import_is_named_and_stops_cuda_training(monkeypatch):
    """CUDA present (simulated), causal-conv1d broken the way a wheel built against another torch
    is (its import raises): the report names the PyTorch path and the import error, training on a
    CUDA device refuses to start with both, and DNACHUNKER_KERNELS=torch chooses the PyTorch paths."""
    import sys
    import types

    from train import distributed
    from train.pretrain import check_kernels
    broken = types.ModuleType("causal_conv1d")
    def fail(name):
        raise ImportError("causal_conv1d_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")
    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "causal_conv1d", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "_errors", {})
    kernels._load.cache_clear()
    monkeypatch.setenv("DNACHUNKER_KERNELS", "auto")
    try:
        report = kernels.report()
        assert report["conv1d"].startswith("PyTorch path (import failed: ImportError: causal_conv1d_cuda.so")
        cuda = distributed.Dist(3, 8, 3, torch.device("cuda", 3))
        with pytest.raises(distributed.SetupError, match=r"rank 3: .*conv1d \(causal_conv1d\): ImportError.*"
                                                         r"DNACHUNKER_KERNELS=torch"):
            check_kernels(cuda)
        check_kernels(distributed.Dist(0, 1, 0, torch.device("cpu")))  # a CPU run: said, not refused
        monkeypatch.setenv("DNACHUNKER_KERNELS", "torch")
        check_kernels(cuda)
        assert set(kernels.report().values()) == {"PyTorch path (DNACHUNKER_KERNELS=torch)"}
    finally:
        kernels._load.cache_clear()
