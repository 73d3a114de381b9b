"""The models bench.paper_cost compares (the paper's DNAChunker with cuts at alpha = 0.5, the
single-nucleotide Transformer, an NT-v2-style ESM, a Caduceus-like BiMamba; bench.paper_cost's
docstring says how each is set up) and what it measures on them: FLOPs, the live-tensor peak of a
training step, forward bp/s, and where DNAChunker's forward time goes."""
from __future__ import annotations

import time
import types

import torch

from .model import ROOT, real_window

PAPER = ROOT / "configs" / "model" / "paper.yaml"
TARGET = 8192  # the paper's window (bp)


def paper_config(**overrides):
    from dnachunker import DNAChunkerConfig
    return DNAChunkerConfig.load(PAPER, *[f"{k}={v}" for k, v in overrides.items()])


def _every_second(router, x, valid):
    """The router's own computation, then cuts at every 2nd position (alpha = 0.5 exactly)."""
    from dnachunker.modules.routing import Router
    p, _ = Router.forward(router, x, valid)
    return p, (torch.arange(x.size(1), device=x.device) % 2 == 0)[None, :] & valid


def _ntv2(layers: int):
    from transformers import EsmConfig, EsmForMaskedLM
    return EsmForMaskedLM(EsmConfig(vocab_size=4107, hidden_size=672, num_hidden_layers=layers, num_attention_heads=12,
                                    intermediate_size=4 * 672, position_embedding_type="rotary",
                                    max_position_embeddings=2050, pad_token_id=1, mask_token_id=2,
                                    token_dropout=False, attn_implementation="sdpa"))


def parameters(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _matching(build, target: int) -> int:
    """The depth whose parameter count is closest to target."""
    one, two = parameters(build(1)), parameters(build(2))
    return max(1, round((target - (2 * one - two)) / (two - one)))


def depth(name: str) -> int:
    """The model's full depth: the paper's 30 main layers, or the depth matching its parameters."""
    from dnachunker import DNAChunker

    from .baselines import SingleNucleotideMLM
    base = name.partition("+")[0]
    if base == "bimamba":
        return _matching(lambda n: SingleNucleotideMLM(paper_config(main_layers=n), "bimamba"), parameters(DNAChunker(paper_config())))
    if base == "nt-v2":
        return _matching(_ntv2, parameters(DNAChunker(paper_config())))
    return paper_config().main_layers


def build(name: str, layers: int | None = None):
    """name: a model, optionally '+<bench.model variant>'; layers: its depth (None: full) ->
    (model, step(seq, masked) -> (loss, attention tokens, attention width, attention layers))."""
    from dnachunker import DNAChunker
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode

    from .baselines import SingleNucleotideMLM
    from .model import VARIANTS
    torch.manual_seed(0)
    name, _, variant = name.partition("+")
    layers = layers or depth(name)
    settings = dict([VARIANTS[variant].split("=", 1)]) if variant else {}
    cfg = paper_config(max_len=TARGET, main_layers=layers, **settings)
    if name == "dnachunker":
        model = DNAChunker(cfg)
        for stage in model.stages:
            stage.router.forward = types.MethodType(_every_second, stage.router)
    elif name in ("transformer", "bimamba"):
        model = SingleNucleotideMLM(cfg, name)
    else:
        model = _ntv2(layers)

    def step(seq: str, masked: bool = True):
        b = batch_encode([seq])
        ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
        if not masked:
            ids = b.input_ids
        if name == "nt-v2":  # non-overlapping 6-mers (ids 5...), [MASK] where any base is masked
            codes = (b.input_ids[0, :len(seq) // 6 * 6] - 2).clamp(0, 3).view(-1, 6)
            tokens = 5 + (codes * 4 ** torch.arange(5, -1, -1)).sum(1)
            hit = (labels[0, :len(seq) // 6 * 6] != -100).view(-1, 6).any(1) if masked else torch.zeros_like(tokens, dtype=torch.bool)
            out = model(input_ids=torch.where(hit, 2, tokens)[None], labels=torch.where(hit, tokens, -100)[None])
            return out.loss, len(tokens), 672, model.config.num_hidden_layers
        if name == "dnachunker":
            out = model(ids, None, labels)
            return out.loss, int(out.stages[-1].boundary.sum()), cfg.d_model[-1], cfg.main_layers
        loss = model(ids, b.valid, labels)
        return loss, (len(seq) if name == "transformer" else 0), cfg.d_model[-1], cfg.main_layers
    return model, step


def count(name: str, lengths: list[int]) -> dict:
    """Training FLOPs (non-attention counted, attention by hand) and main tokens at each length.
    Attention per layer: 4 L^2 d forward, 8 L^2 d backward, and 4 L^2 d more where the main network
    is checkpointed (its forward runs again in backward; the counter sees the rest of that rerun)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, step = build(name)
    passes = 4 if getattr(getattr(model, "cfg", None), "activation_checkpointing", "none") in ("main", "all") else 3
    rows = []
    for T in lengths:
        for masked in ((True, False) if name == "dnachunker" else (True,)):
            with FlopCounterMode(display=False) as fc:
                loss, tokens, d, layers = step(real_window(T), masked)
                loss.backward()
            model.zero_grad(set_to_none=True)
            rows.append({"T": T, "masked": masked, "counted": fc.get_total_flops(), "tokens": tokens,
                         "attention_coef": 4 * passes * d * layers})  # attention FLOPs / tokens^2
    return {"params": parameters(model), "rows": rows}


def peak(name: str, T: int, layers: int) -> dict:
    """MB of live tensors at the peak of one bf16-autocast training step (bench.memory's replay) of
    the model at `layers` depth, and its parameters."""
    from .memory import replay_peak
    model, step = build(name, layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    seq = real_window(T)

    def train():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = step(seq)[0]
        opt.zero_grad(set_to_none=False)  # gradients persist: what the step adds is the sample's
        loss.backward()
        opt.step()
    train()  # gradients and optimizer state exist before the measured step
    return {"MB": replay_peak(train, stacks=False)[0] / 2**20, "params": parameters(model)}


def infer(names: list[str], T: int, rounds: int) -> dict[str, list[float]]:
    """Forward bp/s of each model, batch 8, alternating rounds."""
    built = {n: build(n) for n in names}
    seqs = [real_window(T * 8)[i * T:(i + 1) * T] for i in range(8)]
    speeds = {n: [] for n in names}
    for _ in range(rounds + 1):
        for n, (model, step) in built.items():
            model.eval()
            t = time.perf_counter()
            with torch.no_grad():
                for s in seqs:
                    step(s, masked=False)
            speeds[n].append(T * 8 / (time.perf_counter() - t))
    return {n: v[1:] for n, v in speeds.items()}  # the first round warms up


def forward_parts(T: int, batch: int, rounds: int) -> dict[str, float]:
    """Seconds of DNAChunker's forward (no masking, no gradients) by part, fastest of `rounds`:
    each stage's encoder, router, chunking (the rest of `down`), dechunking (`up` less its
    decoder: the upsampling and the p-gated scans), decoder; the main network; the rest
    (embedding, head)."""
    import functools
    model, _ = build("dnachunker")
    model.eval()
    spent: dict[str, float] = {}

    def timed(name, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            return out
        return run
    for s, stage in enumerate(model.stages):
        for part in ("encoder", "router", "decoder"):
            getattr(stage, part).forward = timed(f"stage {s} {part}", getattr(stage, part).forward)
        stage.down, stage.up = timed(f"stage {s} down", stage.down), timed(f"stage {s} up", stage.up)
    model.main.forward = timed("main network", model.main.forward)
    from dnachunker.tokenizer import batch_encode
    seq = real_window(T * batch)
    ids = batch_encode([seq[i * T:(i + 1) * T] for i in range(batch)]).input_ids
    best: dict[str, float] = {}
    for _ in range(rounds + 1):  # the first warms up
        spent.clear()
        t = time.perf_counter()
        with torch.no_grad():
            model(ids)
        spent["total"] = time.perf_counter() - t
        if not best or spent["total"] < best["total"]:
            best = dict(spent)
    out = {}
    for s in range(len(model.stages)):
        out[f"stage {s} encoder"] = best[f"stage {s} encoder"]
        out[f"stage {s} router"] = best[f"stage {s} router"]
        out[f"stage {s} chunking"] = best[f"stage {s} down"] - best[f"stage {s} encoder"] - best[f"stage {s} router"]
        out[f"stage {s} dechunking"] = best[f"stage {s} up"] - best[f"stage {s} decoder"]
        out[f"stage {s} decoder"] = best[f"stage {s} decoder"]
    out["main network"] = best["main network"]
    out["embedding, head"] = best["total"] - sum(best[f"stage {s} {w}"] for s in range(len(model.stages))
                                                 for w in ("down", "up")) - best["main network"]
    return {**out, "total": best["total"]}
