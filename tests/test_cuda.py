"""CUDA kernels (the [cuda] extra) against the PyTorch path, on a GPU. Skipped without CUDA (the
CPU kernel tier, tests/test_kernels.py, runs the same call sites through the Triton interpreter
and checked stand-ins); with CUDA, a kernel that does not import fails, it does not skip.
`bash scripts/gpu_check.sh` runs this file first.

Tolerances: on Ampere and Hopper the SSD kernel's fp32 tl.dot runs as TF32 (10-bit mantissa,
relative error ~1e-3 per product), where the interpreter tier computed exact fp32; values and
gradients are compared by relative error over the whole tensor, ‖fast − ref‖ / ‖ref‖, against
bounds that TF32 accumulation meets (docs/kernels.md)."""
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


TF32 = 5e-3  # relative error bound of a TF32 scan against the fp32 PyTorch path


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def test_kernels_are_installed():
    kernels.require()  # raises naming every kernel that did not import, and why


def test_selective_scan_kernel_matches_torch(monkeypatch):
    g = torch.Generator(device="cuda").manual_seed(0)
    b, l, h, p, n = 2, 1000, 8, 64, 64
    x = torch.randn(b, l, h, p, device="cuda", generator=g)
    dt = torch.randn(b, l, h, device="cuda", generator=g)
    A = -torch.rand(h, device="cuda", generator=g) * 4 - 0.5
    B, C = (torch.randn(b, l, 1, n, device="cuda", generator=g) for _ in range(2))
    D, bias = torch.randn(h, device="cuda", generator=g), torch.zeros(h, device="cuda")
    fast, ref = _both_paths(lambda: selective_scan(x, dt, A, B, C, D, bias), monkeypatch)
    assert rel(fast, ref) < TF32


def test_gated_scan_kernel_matches_torch(monkeypatch):
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
    assert rel(fast, ref) < TF32


def test_model_cuda_kernels_match_torch_path_values_and_gradients(monkeypatch, chr20_windows):
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml")).cuda()
    batch = batch_encode([chr20_windows(1000, 1)[0], chr20_windows(700, 1)[0]])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    args = (ids.cuda(), batch.valid.cuda(), labels.cuda(), batch.weight().cuda())

    def run():
        model.zero_grad(set_to_none=True)
        out = model(*args)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()
                                     if p.grad is not None}
    (fast, fast_grads), (ref, ref_grads) = _both_paths(run, monkeypatch)
    assert rel(fast, ref) < TF32
    assert fast_grads.keys() == ref_grads.keys()
    worst = max(rel(fast_grads[n], ref_grads[n]) for n in ref_grads if ref_grads[n].norm() > 0)
    assert worst < 10 * TF32, worst
    with torch.autocast("cuda", dtype=torch.bfloat16):  # flash-attn varlen only runs in half precision
        half, _ = _both_paths(run, monkeypatch)
    assert (half.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.95


@pytest.mark.parametrize("precision", ["bf16", "bf16-weights"])
def test_paper_config_at_8kbp_trains_on_the_kernels(precision, chr20_windows):
    """One forward + backward of the paper's model on 8192 bp with every kernel: fp32 parameters
    under bf16 autocast (precision bf16), or bf16 parameters (bf16-weights, DeepSpeed's bf16 mode);
    the loss and every gradient finite, the peak memory printed."""
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "paper.yaml")).cuda()
    if precision == "bf16-weights":
        model = model.to(torch.bfloat16)
    batch = batch_encode([chr20_windows(8192, 1)[0]])
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(ids.cuda(), batch.valid.cuda(), labels.cuda(), batch.weight().cuda())
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    print(f"paper config, 8192 bp, {precision}: loss {out.loss.item():.3f}, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
