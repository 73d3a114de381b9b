"""Fast scans against their sequential reference twins: values and gradients."""
import pytest
import torch

from dnachunker.ops import gated_scan, gated_scan_ref, selective_scan, selective_scan_ref, ssd_chunked, ssd_sequential
from dnachunker.ops.ragged import flip_valid, reverse_index


def _grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    y = fn(*xs)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), [x.grad for x in xs]


@pytest.mark.parametrize("groups", [3, 1])  # a group per head; three heads sharing one B, C
@pytest.mark.parametrize("l,chunk", [(1, 8), (37, 8), (128, 32), (200, 64)])
def test_ssd_chunked_matches_sequential(l, chunk, groups):
    g = torch.Generator().manual_seed(l)
    b, h, p, n = 2, 3, 4, 5
    x = torch.randn(b, l, h, p, generator=g, dtype=torch.float64)
    # up to -2 per step: within a chunk of 32 or 64 the decays pass e^-40, where they are clamped
    a = -torch.rand(b, l, h, generator=g, dtype=torch.float64) * 2
    B = torch.randn(b, l, groups, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, l, groups, n, generator=g, dtype=torch.float64)
    y1, g1 = _grads(lambda *t: ssd_chunked(*t, chunk_size=chunk), x, a, B, C)
    y2, g2 = _grads(ssd_sequential, x, a, B, C)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}
GRAD_TOLERANCE = {torch.float32: dict(rtol=1e-3, atol=1e-3), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ngroups", [1, 2])
def test_selective_scan_matches_reference(dtype, ngroups):
    """bf16 inputs are upcast inside both (fp32 compute, bf16 out); B/C groups expand to heads."""
    g = torch.Generator().manual_seed(0)
    b, l, h, p, n = 2, 150, 4, 8, 16
    x = torch.randn(b, l, h, p, generator=g).to(dtype)
    dt = torch.randn(b, l, h, generator=g).to(dtype)
    A = -torch.rand(h, generator=g) * 4 - 0.5
    B, C = (torch.randn(b, l, ngroups, n, generator=g).to(dtype) for _ in range(2))
    D, dt_bias = torch.randn(h, generator=g), torch.randn(h, generator=g) * 0.1
    y1, g1 = _grads(lambda *t: selective_scan(*t, chunk_size=32), x, dt, A, B, C, D, dt_bias)
    y2, g2 = _grads(selective_scan_ref, x, dt, A, B, C, D, dt_bias)
    assert y1.dtype == dtype
    torch.testing.assert_close(y1.float(), y2.float(), **TOLERANCE[dtype])
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u.float(), v.float(), **GRAD_TOLERANCE[dtype])
    if ngroups > 1:  # heads 0-1 read group 0, heads 2-3 group 1: a group's B moves only its heads
        B2 = B.clone()
        B2[:, :, 1] += 1
        y3 = selective_scan(x, dt, A, B2, C, D, dt_bias, chunk_size=32)
        assert torch.equal(y3[:, :, :2], y1[:, :, :2]) and not torch.equal(y3[:, :, 2:], y1[:, :, 2:])


def test_ssd_chunked_runs_backward_under_bf16_autocast():
    """precision: bf16 on CPU: autocast makes the within-chunk product bf16; backward takes its
    bf16 gradient and stays close to the fp32 gradients."""
    g = torch.Generator().manual_seed(4)
    x, B, C = (torch.randn(2, 100, 2, 8, generator=g) for _ in range(3))
    a = -torch.rand(2, 100, 2, generator=g)
    B, C = B[:, :, :1], C[:, :, :1]
    def forward_under_autocast(*t):  # backward runs after the autocast region, as in training
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ssd_chunked(*t, chunk_size=32)
    y1, g1 = _grads(forward_under_autocast, x, a, B, C)
    y2, g2 = _grads(ssd_sequential, x, a, B, C)
    torch.testing.assert_close(y1.float(), y2, rtol=5e-2, atol=5e-2)
    for u, v in zip(g1, g2):  # bf16 rounding: a few single entries move by 0.1; the whole by ~1 %
        assert u.dtype == torch.float32 and (u - v).norm() < 0.03 * v.norm()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gated_scan_matches_reference_in_each_dtype(dtype):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 130, 8, generator=g).to(dtype)
    p = torch.rand(2, 130, generator=g)
    p[:, 0] = 1.0
    y1, g1 = _grads(gated_scan, u, p)
    y2, g2 = _grads(gated_scan_ref, u, p)
    assert y1.dtype == dtype
    torch.testing.assert_close(y1.float(), y2.float(), **TOLERANCE[dtype])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a.float(), b.float(), **GRAD_TOLERANCE[dtype])


def test_gated_scan_matches_reference_including_hard_gates():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 90, 6, generator=g, dtype=torch.float64)
    p = torch.rand(3, 90, generator=g, dtype=torch.float64)
    p[:, 0] = 1.0          # first position: hard reset
    p[:, 10:15] = 0.0      # pure carry
    p[:, 40] = 1.0         # hard boundary mid-sequence
    y1, g1 = _grads(gated_scan, u, p)
    y2, g2 = _grads(gated_scan_ref, u, p)
    torch.testing.assert_close(y1, y2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y1[:, 40], u[:, 40], rtol=0, atol=1e-5)  # p = 1 forgets the past
    torch.testing.assert_close(y1[:, 14], y1[:, 9])  # p = 0 carries the state unchanged
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("l,chunk", [(1, 8), (37, 8), (130, 32), (200, 64)])
def test_gated_scan_matches_reference_at_each_chunk_length(l, chunk):
    """The chunked one-decay scan, with and without right padding to whole chunks, fp64."""
    g = torch.Generator().manual_seed(l)
    u = torch.randn(2, l, 5, generator=g, dtype=torch.float64)
    p = torch.rand(2, l, generator=g, dtype=torch.float64)
    y1, g1 = _grads(lambda a, b: gated_scan(a, b, chunk), u, p)
    y2, g2 = _grads(gated_scan_ref, u, p)
    torch.testing.assert_close(y1, y2, rtol=1e-9, atol=1e-9)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_flip_valid_is_an_involution_that_leaves_padding_in_place():
    x = torch.arange(12.).view(2, 6, 1)
    valid = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    f = flip_valid(x, valid)
    assert f[1, :, 0].tolist() == [8, 7, 6, 9, 10, 11]
    assert f[0, :, 0].tolist() == [5, 4, 3, 2, 1, 0]
    assert torch.equal(flip_valid(f, valid), x)
    full = torch.ones_like(valid)  # nothing padded: no index, the reversal is a flip
    assert reverse_index(full) is None and torch.equal(flip_valid(x, full), x.flip(1))


def test_gated_scan_backward_passes_gradcheck():
    """The hand-written backward (one reverse scan) against finite differences, fp64."""
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 21, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = (torch.rand(2, 21, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: gated_scan(a, b, 8), (u, p))


def test_mamba_direction_recompute_in_backward_gives_bit_identical_gradients():
    """In training a BiMamba direction keeps only its input for backward and recomputes the
    conv, scan and gated norm; values and gradients (input and every parameter) are exactly
    those of autograd through every intermediate (`mix`): forward direction, and reverse
    direction on a padded batch (gather) and on an unpadded one (flip)."""
    from dnachunker.config import MambaConfig
    from dnachunker.modules.bimamba import MambaDirection
    torch.manual_seed(5)
    zxbcdt = torch.randn(2, 150, 2 * 64 + 2 * 16 + 4)
    padded = reverse_index(torch.arange(150).expand(2, 150) < torch.tensor([[150], [97]]))
    for reverse, order in ((False, None), (True, padded), (True, None)):
        direction = MambaDirection(64, MambaConfig(d_state=16, headdim=16, chunk_size=32), reverse)
        results = []
        for fn in (direction, direction.mix):
            direction.zero_grad()
            y, (gx,) = _grads(lambda t, f=fn, o=order: f(t, o), zxbcdt)
            results.append((y, gx, [q.grad.clone() for q in direction.parameters()]))
        (y1, gx1, gp1), (y2, gx2, gp2) = results
        assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
        assert all(torch.equal(u, v) for u, v in zip(gp1, gp2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gated", [False, True])
def test_rms_norm_matches_reference_and_keeps_no_float32_copies(dtype, gated):
    """Values and gradients (input, gate, weight) as the autograd reference's; what it keeps for
    backward is its inputs and the (..., 1) reciprocal RMS, in place of the reference's float32
    copies: measured with saved-tensor hooks."""
    from dnachunker.ops.rmsnorm import rms_norm, rms_norm_ref
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 37, 64, generator=g).to(dtype)
    z = torch.randn(2, 37, 64, generator=g).to(dtype) if gated else None
    w = (1 + 0.1 * torch.randn(64, generator=g)).requires_grad_(True)
    kept = {}
    for name, fn in (("fast", rms_norm), ("ref", rms_norm_ref)):
        w.grad = None
        inputs = [x, z] if gated else [x]
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        def norm(*t, f=fn):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                return f(t[0], w, t[1] if gated else None)
        y, grads = _grads(norm, *inputs)
        kept[name] = (y, grads, w.grad.clone(), sum(saved))
    (y1, g1, w1, fast), (y2, g2, w2, ref) = kept["fast"], kept["ref"]
    assert y1.dtype == dtype
    torch.testing.assert_close(y1, y2, **TOLERANCE[dtype])
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, **GRAD_TOLERANCE[dtype])
    torch.testing.assert_close(w1, w2, **GRAD_TOLERANCE[dtype])
    elements = x.numel()
    assert fast == elements * x.element_size() * (2 if gated else 1) + 64 * 4 + 2 * 37 * 4
    assert ref >= fast + elements * 4  # at least one float32 copy more


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cosine_matches_reference_with_zero_vectors_and_keeps_its_inputs(dtype):
    """Values and gradients as F.cosine_similarity's on float32 copies, zero vectors included; what
    it keeps for backward is q and k as they are and three (...,) float32 vectors."""
    from dnachunker.ops.cosine import cosine, cosine_ref
    g = torch.Generator().manual_seed(4)
    q, k = (torch.randn(3, 41, 32, generator=g).to(dtype) for _ in range(2))
    q[0, 5] = 0
    k[1, 7] = 0
    out = {}
    for name, fn in (("fast", cosine), ("ref", cosine_ref)):
        saved = []

        def run(a, b, f=fn, saved=saved):
            with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                          lambda t: t):
                return f(a, b)
        out[name] = (*_grads(run, q, k), sum(saved))
    (y1, g1, fast), (y2, g2, ref) = out["fast"], out["ref"]
    assert y1.dtype == torch.float32
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-6)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, **GRAD_TOLERANCE[dtype])
    assert fast == 2 * q.numel() * q.element_size() + 3 * 3 * 41 * 4
    assert ref >= fast + q.numel() * 4
