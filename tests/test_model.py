"""Behaviour of the full model on real chr20 DNA."""
from pathlib import Path

import numpy as np
import pytest
import torch

from dnachunker import DNAChunker, DNAChunkerConfig, ratio_loss
from dnachunker.masking import IGNORE, bert_mask
from dnachunker.modules.norm import RMSNorm
from dnachunker.tokenizer import MASK, PAD, batch_encode

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"


def tiny(*overrides: str) -> DNAChunker:
    torch.manual_seed(0)
    return DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml", *overrides)).eval()


def with_residual(model: DNAChunker) -> DNAChunker:
    """The residual projection starts at zero (H-Net); give it trained-like weights."""
    with torch.no_grad():
        for stage in model.stages:
            stage.residual_proj.weight.normal_(0, 0.02)
    return model


def masked_batch(seqs, seed=0):
    batch = batch_encode(seqs)
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(seed))
    return batch, ids, labels


def test_padding_never_changes_a_real_sequence(chr20_windows):
    short, long_ = chr20_windows(300, 1)[0], chr20_windows(700, 2)[1]
    model = tiny()
    _, ids, _ = masked_batch([short, long_])
    alone = ids[:1, :300]
    with torch.no_grad():
        ref = model(alone).logits[0]
        batched = model(ids, ids != PAD)
    assert (ids[0, 300:] == PAD).all()
    torch.testing.assert_close(batched.logits[0, :300], ref, rtol=1e-4, atol=1e-5)
    # padding also changes neither segmentation nor the compression statistics of the real part
    single = model(alone)
    for s_b, s_a in zip(batched.stages, single.stages):
        n = int(s_a.valid.sum())
        assert torch.equal(s_b.boundary[0, :n], s_a.boundary[0, :n])
        assert not s_b.boundary[0, n:].any()


def test_masked_base_is_a_single_base_chunk_at_both_stages(chr20_windows):
    model = tiny()
    _, ids, _ = masked_batch(chr20_windows(512, 3), seed=3)
    with torch.no_grad():
        out = model(ids)
    masked = (ids == MASK).nonzero().tolist()
    assert len(masked) > 100
    for s, stage in enumerate(out.stages):
        for b, t in masked:
            starts = set(stage.chunk_start[b][stage.chunk_valid[b]].long().tolist())
            assert t in starts, f"stage {s}: no boundary before masked base {t}"
            assert t + 1 in starts or t + 1 == ids.size(1), f"stage {s}: no boundary after {t}"
    # and the router alone would not have produced all of them: protection did real work
    assert not all(out.stages[1].router_boundary.flatten()[:10])


def _chunk_contains_mask(is_mask: np.ndarray, starts: np.ndarray, pos_bp: np.ndarray) -> np.ndarray:
    """For stage positions starting at base pair pos_bp, does their chunk (given by the chunk
    start base pairs `starts`) contain a [MASK]? Computed from base-pair spans only."""
    ends = np.append(starts[1:], len(is_mask))
    k = np.searchsorted(starts, pos_bp, side="right") - 1
    return np.array([is_mask[starts[i]:ends[i]].any() for i in k])


@pytest.mark.parametrize("protect", [True, False])
def test_residual_is_zero_exactly_where_chunks_contain_masks(chr20_windows, protect):
    model = with_residual(tiny(f"mask_protection={protect}"))
    _, ids, _ = masked_batch(chr20_windows(400, 2), seed=5)
    with torch.no_grad():
        out = model(ids)
    for b in range(ids.size(0)):
        is_mask = (ids[b] == MASK).numpy()
        pos_bp = np.arange(ids.size(1))  # stage-0 positions are base pairs
        for s, stage in enumerate(out.stages):
            starts = stage.chunk_start[b][stage.chunk_valid[b]].long().numpy()
            expected = _chunk_contains_mask(is_mask, starts, pos_bp)
            residual_norm = stage.residual[b, : len(pos_bp)].abs().sum(-1)
            assert expected.any() and not expected.all()
            assert torch.equal(residual_norm == 0, torch.from_numpy(expected)), f"stage {s}"
            pos_bp = starts  # stage s+1 positions are stage-s chunks
        if not protect:  # without protection, gating must cover whole multi-base chunks
            assert _chunk_contains_mask(is_mask, out.stages[0].chunk_start[b].long().numpy(),
                                        np.arange(len(is_mask))).sum() > is_mask.sum()


def test_residual_gating_switch(chr20_windows):
    model = with_residual(tiny("residual_gating=false"))
    _, ids, _ = masked_batch(chr20_windows(300, 1), seed=1)
    with torch.no_grad():
        out = model(ids)
    assert all(bool((st.residual_gate == 1).all()) for st in out.stages)
    assert (out.stages[0].residual[ids == MASK].abs().sum(-1) > 0).all()


def test_ratio_loss_is_one_on_target_and_ignores_padding():
    alpha = 0.3
    valid = torch.ones(2, 20, dtype=torch.bool)
    valid[1, 10:] = False
    boundary = torch.zeros(2, 20, dtype=torch.bool)
    boundary[0, :6], boundary[1, :3] = True, True       # 9 of 30 real positions = 0.3
    p = torch.full((2, 20), alpha)
    p[1, 10:], boundary[1, 12:] = 0.99, True            # garbage on padding
    assert ratio_loss(p, boundary, valid, alpha).item() == pytest.approx(1.0)
    off = ratio_loss(torch.full((2, 20), 0.8), valid.clone(), valid, alpha)
    assert off.item() > 1.5


def test_gradients_reach_router_through_p(chr20_windows):
    model = tiny("ratio_loss=false").train()
    batch, ids, labels = masked_batch(chr20_windows(256, 2), seed=2)
    out = model(ids, batch.valid, labels, batch.weight())
    assert torch.equal(out.loss, out.mlm_loss)  # no ratio term: only p in the dechunk scans is left
    out.loss.backward()
    for s, stage in enumerate(model.stages):
        g = stage.router.q.weight.grad
        assert g is not None and g.abs().sum() > 0, f"stage {s} router got no gradient"


def test_repeat_bases_are_weighted(chr20_windows):
    seq = next(w for w in chr20_windows(256, 40) if 0.2 < sum(c.islower() for c in w) / 256 < 0.8)
    model = tiny()
    batch, ids, labels = masked_batch([seq], seed=4)
    out = model(ids, batch.valid, labels, batch.weight())
    t = labels != IGNORE
    ce = torch.nn.functional.cross_entropy(out.logits[t], labels[t], reduction="none")
    w = torch.where(batch.repeat[t], 0.1, 1.0)
    torch.testing.assert_close(out.mlm_loss, (ce * w).sum() / w.sum())
    assert not torch.allclose(out.mlm_loss, ce.mean())


def test_paper_config_has_172m_parameters():
    with torch.device("meta"):
        model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "paper.yaml"))
    assert model.cfg.main_layers == 30 and model.cfg.max_len == 8192
    assert model.cfg.target_ratio == [0.5, 0.5]
    assert abs(model.num_parameters() - 172e6) / 172e6 < 0.05


@pytest.mark.slow
def test_paper_main_network_keeps_its_activation_scale_through_30_layers_at_init(chr20_windows):
    """Residual output projections start at 0.02/sqrt(n_residuals) (H-Net; 38 for the paper's main
    network): the residual stream's RMS grows < 1.5x over 30 blocks, where unscaled it grows ~4x."""
    batch = batch_encode(chr20_windows(2048, 1))

    def growth(*overrides):
        torch.manual_seed(0)
        model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "paper.yaml", *overrides)).eval()
        rms = []
        model.main.blocks[0].register_forward_pre_hook(lambda m, args: rms.append(args[0].pow(2).mean().sqrt()))
        for block in model.main.blocks:
            block.register_forward_hook(lambda m, args, out: rms.append(out.pow(2).mean().sqrt()))
        with torch.no_grad():
            model(batch.input_ids, batch.valid)
        assert len(rms) == 31
        return (rms[-1] / rms[0]).item(), model
    scaled, model = growth()
    assert scaled < 1.5
    std = model.main.blocks[7].mlp.down.weight.std().item()
    assert std == pytest.approx(0.02 / 38 ** 0.5, rel=0.02)  # 2+2 (stage 0) + 2+2 (stage 1) + 30 layers
    assert model.stages[0].encoder.mixers[0].out_proj.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert growth("residual_init_scale=1.0")[0] > 3


def test_save_load_round_trip(tmp_path, chr20_windows):
    model = tiny("target_ratio=[0.4,0.6]")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    _, ids, _ = masked_batch(chr20_windows(200, 2))
    path = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(x.name for x in path.iterdir()) == [  # text and tensors: no code
        "README.md", "config.json", "config.yaml", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json"]
    loaded = DNAChunker.from_pretrained(path)
    assert loaded.cfg == model.cfg
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert [a.tolist() for a in loaded.segment(chr20_windows(200, 2))[0]] == \
           [a.tolist() for a in model.segment(chr20_windows(200, 2))[0]]


def test_from_pretrained_rejects_a_non_checkpoint(tmp_path):
    (tmp_path / "config.yaml").write_text("d_model: [8, 8]\n")
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        DNAChunker.from_pretrained(tmp_path)


def test_bad_config_is_reported_with_its_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("d_model: [32, 48]\n")
    with pytest.raises(ValueError, match="bad.yaml: invalid DNAChunker config: d_model: needs 3 widths"):
        DNAChunkerConfig.load(bad)
    bad.write_text("no_such_key: 1\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        DNAChunkerConfig.load(bad)


def test_segment_returns_nested_boundaries(chr20_windows):
    seqs = [chr20_windows(333, 1)[0], chr20_windows(120, 5)[4]]
    segs = tiny().segment(seqs, batch_size=1)
    assert len(segs) == 2
    for seq, (s0, s1) in zip(seqs, segs):
        assert s0[0] == 0 and s1[0] == 0
        assert np.all(np.diff(s0) > 0) and s0[-1] < len(seq)
        assert set(s1.tolist()) <= set(s0.tolist())  # stage 1 merges stage-0 chunks
        assert len(s1) < len(s0) < len(seq)


def _saved_bytes_and_grads(ids, labels, *overrides):
    """(bytes autograd saves for backward in one forward, loss, gradients) of the tiny model."""
    model = tiny(*overrides).train()
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(ids, labels=labels)
    out.loss.backward()
    return sum(saved), out.loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_recomputation_settings_give_identical_loss_and_gradients_and_keep_less(chr20_windows):
    """activation_checkpointing none / main / all and each BiMamba direction's own recompute:
    the same loss and gradients; each step towards more recomputation keeps fewer bytes for backward."""
    _, ids, labels = masked_batch(chr20_windows(256, 2), seed=6)
    settings = {"kept": ("activation_checkpointing=none", "mamba.recompute=false"),
                "mixers": ("activation_checkpointing=none",),
                "main": ("activation_checkpointing=main",),
                "all": ("activation_checkpointing=all",)}
    runs = {name: _saved_bytes_and_grads(ids, labels, *o) for name, o in settings.items()}
    _, loss, grads = runs["kept"]
    for name, (_, other_loss, other_grads) in runs.items():
        torch.testing.assert_close(other_loss, loss)
        for a, b in zip(other_grads, grads):
            torch.testing.assert_close(a, b, msg=name)
    saved = [runs[name][0] for name in settings]
    assert saved == sorted(saved, reverse=True) and len(set(saved)) == len(saved), dict(zip(settings, saved))


def test_recorded_boolean_checkpointing_reads_as_its_meaning():
    assert DNAChunkerConfig.from_dict({"activation_checkpointing": True}).activation_checkpointing == "all"
    assert DNAChunkerConfig.from_dict({"activation_checkpointing": False}).activation_checkpointing == "none"
    with pytest.raises(ValueError, match="activation_checkpointing"):
        DNAChunkerConfig.from_dict({"activation_checkpointing": "blocks"})


def test_paper_block_is_pre_ln_layernorm_mhsa_gelu_with_rmsnorm_swiglu_as_options():
    from dnachunker.modules.transformer import GELUMLP, SwiGLU
    model = tiny()
    block = model.main.blocks[0]
    assert isinstance(block.norm1, torch.nn.LayerNorm) and isinstance(block.mlp, GELUMLP)
    assert isinstance(model.main.final_norm, torch.nn.LayerNorm)
    x = torch.randn(2, 10, 64)
    h = block.norm1(x)  # Pre-LN: the residual stream itself is never normalised
    attn = block.attn(h, torch.arange(10.0).expand(2, 10), torch.ones(2, 10, dtype=torch.bool))
    y = x + attn
    torch.testing.assert_close(block(x, torch.arange(10.0).expand(2, 10), torch.ones(2, 10, dtype=torch.bool)),
                               y + block.mlp.down(torch.nn.functional.gelu(block.mlp.up(block.norm2(y)))))
    other = tiny("main_norm=rmsnorm", "main_mlp=swiglu").main.blocks[0]
    assert isinstance(other.norm1, RMSNorm) and isinstance(other.mlp, SwiGLU)


def test_residual_projection_starts_at_zero_and_runs_in_fp32(chr20_windows):
    model = tiny()
    assert all(bool((st.residual_proj.weight == 0).all()) for st in model.stages)
    _, ids, _ = masked_batch(chr20_windows(200, 2))
    model = with_residual(model).bfloat16()  # as DeepSpeed runs it with bf16 on
    seen = {}
    for s, stage in enumerate(model.stages):
        stage.encoder.register_forward_hook(lambda m, i, o, s=s: seen.__setitem__(s, o))
    with torch.no_grad():
        out = model(ids)
    for s, (stage, st) in enumerate(zip(model.stages, out.stages)):
        assert st.residual.dtype == torch.float32
        w = stage.residual_proj
        expected = torch.nn.functional.linear(seen[s].float(), w.weight.float(), w.bias.float()) * st.residual_gate[..., None]
        torch.testing.assert_close(st.residual, expected, rtol=0, atol=0)


def test_dechunk_gate_stays_fp32_under_bf16(chr20_windows, monkeypatch):
    import dnachunker.modules.chunking as chunking
    dtypes = []
    real = chunking.gated_scan
    monkeypatch.setattr(chunking, "gated_scan", lambda u, p: dtypes.append(p.dtype) or real(u, p))
    _, ids, _ = masked_batch(chr20_windows(200, 1))
    with torch.no_grad():
        tiny().bfloat16()(ids)
    assert dtypes and set(dtypes) == {torch.float32}


def test_ratio_loss_sees_router_or_protected_decisions(chr20_windows):
    _, ids, labels = masked_batch(chr20_windows(400, 2), seed=4)
    with torch.no_grad():
        own, protected = (tiny(f"ratio_loss_on={w}")(ids, labels=labels) for w in ("router", "protected"))
    for s, (a, b) in enumerate(zip(own.stages, protected.stages)):
        assert a.router_compression < a.compression  # protection adds boundaries around [MASK]
        torch.testing.assert_close(own.ratio_losses[s], ratio_loss(a.p, a.router_boundary, a.valid, 0.5))
        torch.testing.assert_close(protected.ratio_losses[s], ratio_loss(b.p_used, b.boundary, b.valid, 0.5))
        assert protected.ratio_losses[s] != own.ratio_losses[s]


def test_confidence_term_is_identity_forward_and_a_gradient_path_to_the_router(chr20_windows):
    _, ids, labels = masked_batch(chr20_windows(300, 2), seed=2)

    def run(*overrides):
        model = with_residual(tiny("ratio_loss=false", *overrides))
        out = model(ids, labels=labels)
        out.loss.backward()
        return out, torch.cat([st.router.q.weight.grad.flatten() for st in model.stages])
    plain, g_plain = run()
    conf, g_conf = run("upsample_confidence=true")
    torch.testing.assert_close(conf.logits, plain.logits)  # the straight-through factor is 1
    assert g_plain.abs().sum() > 0 and (g_conf - g_plain).abs().sum() > 1e-3 * g_plain.abs().sum()


@pytest.mark.slow
@pytest.mark.parametrize("recompute", [True, False])
def test_compiled_model_matches_eager_in_loss_and_gradients(chr20_windows, recompute):
    """model.compile (torch.compile of the mixers and blocks, dynamic shapes), with BiMamba's
    recomputation on and off: the same parameter names, and within fp32 reordering tolerance the
    same loss and gradients, at two lengths through the same compiled model (long enough for
    several scan chunks at every stage)."""
    eager, compiled = (tiny(f"compile={c}", f"mamba.recompute={recompute}").train() for c in ("false", "true"))
    assert [n for n, _ in eager.named_parameters()] == [n for n, _ in compiled.named_parameters()]
    for length in (1024, 1280):
        _, ids, labels = masked_batch(chr20_windows(length, 2), seed=7)
        losses = []
        for model in (eager, compiled):
            model.zero_grad()
            out = model(ids, labels=labels)
            out.loss.backward()
            losses.append(out.loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("recompute", [True, False])
def test_a_compiled_bimamba_mixer_is_one_graph_in_training(recompute):
    """What model.compile compiles for stage 0 must trace whole, recomputation included: a graph
    break inside the mixer's checkpoint (e.g. a global mutation) silently halves what compiles."""
    from dnachunker.modules.bimamba import BiMamba
    mixer = BiMamba(32, tiny(f"mamba.recompute={recompute}").cfg.mamba)
    explained = torch._dynamo.explain(mixer)(torch.randn(1, 256, 32, requires_grad=True), None)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_key_mask_packs_without_a_host_sync_when_the_count_is_known():
    """The flash-attn packing from the host's chunk count (nonzero_static) equals the one that
    asks the device (nonzero), and the model hands the main network its last stage's count."""
    from dnachunker.modules.chunking import Chunks
    from dnachunker.modules.transformer import KeyMask
    valid = torch.tensor([[True, True, True, False], [True, False, False, False], [True, True, True, True]])
    known = KeyMask(valid, total=int(valid.sum())).packing()
    asked = KeyMask(valid).packing()
    assert all(torch.equal(a, b) for a, b in zip(known[:2], asked[:2])) and known[2] == asked[2] == 4
    boundary = torch.tensor([[True, False, True, True, False], [True, True, False, False, False]])
    assert Chunks.from_boundaries(boundary).total == 5
