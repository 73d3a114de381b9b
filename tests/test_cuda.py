"""CUDA kernels (the [cuda] extra) against the PyTorch path, on a GPU. Skipped without CUDA (the
CPU kernel tier, tests/test_kernels.py, runs the same call sites through the Triton interpreter
and checked stand-ins). `bash scripts/gpu_check.sh` runs this file and the GPU benchmarks."""
import pytest
import torch

from dnachunker import DNAChunker, DNAChunkerConfig
from dnachunker.masking import bert_mask
from dnachunker.ops import gated_scan, kernels, selective_scan
from dnachunker.tokenizer import batch_encode

from .test_model import CONFIGS

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _both_paths(fn, monkeypatch):
    monkeypatch.setenv("DNACHUNKER_KERNELS", "torch")
    ref = fn()
    monkeypatch.setenv("DNACHUNKER_KERNELS", "auto")
    return fn(), ref


def test_kernels_are_installed():
    missing = [k for k, ok in kernels.status().items() if not ok]
    if missing:
        pytest.skip(f"[cuda] extra not importable: {missing}")


def test_selective_scan_kernel_matches_torch(monkeypatch):
    if not kernels.status()["ssd"]:
        pytest.skip("mamba-ssm not installed")
    g = torch.Generator(device="cuda").manual_seed(0)
    b, l, h, p, n = 2, 1000, 8, 64, 64
    x = torch.randn(b, l, h, p, device="cuda", generator=g)
    dt = torch.randn(b, l, h, device="cuda", generator=g)
    A = -torch.rand(h, device="cuda", generator=g) * 4 - 0.5
    B, C = (torch.randn(b, l, 1, n, device="cuda", generator=g) for _ in range(2))
    D, bias = torch.randn(h, device="cuda", generator=g), torch.zeros(h, device="cuda")
    fast, ref = _both_paths(lambda: selective_scan(x, dt, A, B, C, D, bias), monkeypatch)
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=2e-3)


def test_gated_scan_kernel_matches_torch(monkeypatch):
    if not kernels.status()["ssd"]:
        pytest.skip("mamba-ssm not installed")
    u = torch.randn(2, 3000, 64, device="cuda", requires_grad=True)
    p = torch.rand(2, 3000, device="cuda")
    p[:, 0], p[:, 100:110] = 1.0, 0.0
    p.requires_grad_(True)
    w = torch.randn(2, 3000, 64, device="cuda")

    def run():
        u.grad = p.grad = None
        y = gated_scan(u, p)
        (y * w).sum().backward()
        return torch.cat([y.flatten(), u.grad.flatten(), p.grad.flatten()])
    fast, ref = _both_paths(run, monkeypatch)
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=2e-3)


def test_model_cuda_kernels_match_torch_path(monkeypatch, chr20_windows):
    if not all(kernels.status().values()):
        pytest.skip("[cuda] extra not fully installed")
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml")).cuda()
    batch = batch_encode([chr20_windows(1000, 1)[0], chr20_windows(700, 1)[0]])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    args = (ids.cuda(), batch.valid.cuda(), labels.cuda(), batch.weight().cuda())
    fast, ref = _both_paths(lambda: model(*args), monkeypatch)
    torch.testing.assert_close(fast.logits, ref.logits, rtol=1e-3, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # flash-attn varlen only runs in half precision
        half, _ = _both_paths(lambda: model(*args), monkeypatch)
    assert (half.logits.float().argmax(-1) == ref.logits.argmax(-1)).float().mean() > 0.95
