"""The benchmark scripts run and print their tables (tiny sizes; no timing is asserted)."""
import re

import pytest

from bench import memory, model, scans

pytestmark = pytest.mark.slow


def test_scan_bench_prints_ratio_table(capsys):
    scans.main(["--lengths", "128", "256"])
    out = capsys.readouterr().out
    assert "| scan | length | ssd_ms | sequential_ms | speedup |" in out
    assert out.count("| selective |") == 2 and out.count("| dechunk |") == 2
    chunk_rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| selective, ", "| gated, "))]
    shapes = [f"| {scan}, {m}.yaml {where}" for scan, where in (("selective", "stage 0"), ("gated", "dechunk 0"))
              for m in ("small", "paper")]
    assert [(r[0], r[1]) for r in chunk_rows] == [(shape, c) for shape in shapes for c in ("32", "64")]
    assert all(float(r[2]) > 0 for r in chunk_rows) and [float(r[3].rstrip(" |")) for r in chunk_rows[::2]] == [1.0] * 4


def test_model_bench_prints_cost_table_and_exponents(capsys):
    model.main(["--sizes", "tiny", "--lengths", "128", "256", "--models", "dnachunker", "transformer", "bimamba",
                "--rounds", "2"])
    out = capsys.readouterr().out
    for name in ("dnachunker", "transformer", "bimamba"):
        assert f"| tiny | {name} | 128 |" in out
        assert sum(f"round {k}/2 tiny {name} 256:" in out for k in (1, 2)) == 2  # every point, every round
    assert "time_exponent" in out and "time_vs_dnachunker" in out
    header = next(line for line in out.splitlines() if line.startswith("| size | model | length"))
    spread = header.split("|").index(" spread ")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| tiny |")][:6]
    assert all(float(r[spread]) >= 1 for r in rows)  # slowest round over the fastest one kept


def test_memory_bench_finds_the_peak_and_its_holders(capsys):
    memory.main(["--size", "tiny", "--length", "256", "--top", "3"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 2 and all(float(r.split("|")[4]) > 0 for r in rows)
    # the holders name the model code that allocated them, forward (kept) or backward
    assert "dnachunker/modules/bimamba.py" in out and "dnachunker/modules/transformer.py" in out
    memory.main(["--size", "tiny", "--length", "256", "--models", "dnachunker", "--by", "part"])
    parts = capsys.readouterr().out  # the encoders (down), the main network and the decoders (up)
    for part in (r"stage\.py\(\d+\): down", r"transformer\.py\(\d+\): forward", r"stage\.py\(\d+\): up"):
        assert re.search(rf"\| F dnachunker/(modules/)?{part} \|", parts), part


def test_paper_cost_memory_grows_by_the_same_increment_per_main_layer():
    """What bench.paper_cost's memory part relies on to reach the paper's depth from a few
    measured layers: each main-network layer adds the same bytes at a given length (measured at
    512 bp here; the bench measures at 8192), and a recomputed main network adds less per layer."""
    from bench.paper_models import peak
    plain = [peak("dnachunker", 512, d)["MB"] for d in (1, 2, 3)]
    ckpt = [peak("dnachunker+mainckpt", 512, d)["MB"] for d in (1, 2, 3)]
    step = plain[1] - plain[0]
    assert step > 0 and abs((plain[2] - plain[1]) - step) < 0.02 * step, plain
    assert 0 < ckpt[2] - ckpt[1] < step, (plain, ckpt)


def test_flop_counter_agrees_with_a_hand_count_on_a_tiny_config():
    """What bench.paper_cost relies on: forward + backward of the single-nucleotide Transformer is
    3 x 2 x in x out per token and Linear (forward, then the input's and the weight's gradients),
    and CPU attention (SDPA) is not counted at all, which is why the bench adds it by hand."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.baselines import SingleNucleotideMLM
    from dnachunker import DNAChunkerConfig
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    cfg = DNAChunkerConfig.load(model.ROOT / "configs" / "model" / "tiny.yaml")
    net = SingleNucleotideMLM(cfg, "transformer")
    T, d, V = 64, cfg.d_model[-1], cfg.vocab_size
    b = batch_encode(["ACGT" * (T // 4)])
    ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fc:
        net(ids, b.valid, labels).backward()
    hidden = int(cfg.mlp_ratio * d)
    per_token = cfg.main_layers * 2 * (3 * d * d + d * d + 2 * d * hidden)  # qkv, out, up, down
    # the head runs on every position (the loss reads the masked ones)
    assert fc.get_total_flops() == 3 * (T * per_token + T * 2 * d * V), fc.get_breakdown_by_module()


def test_a_measurement_process_that_dies_is_reported_not_waited_for():
    """A fresh process killed (for memory, say) before it answers: an error, not a hung bench."""
    import os

    from bench.common import in_fresh_process
    assert in_fresh_process(os._exit, 3) == {"error": "the process died with exit code 3"}


def test_gpu_step_bench_runs_a_deepspeed_step_and_counts_flops_on_the_pytorch_paths(tmp_path):
    """bench.gpu_step on this CPU, tiny: one warm-up and two timed DeepSpeed steps, the table, a
    finite loss, and counted FLOPs equal to train.flops on one window times the batch."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "bench.gpu_step", "--config", "configs/pretrain/tiny_chr20.yaml",
                        "--batch", "2", "--length", "512", "--steps", "2"], cwd=model.ROOT, capture_output=True,
                       text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(line for line in r.stdout.splitlines() if line.startswith("| tiny_chr20.yaml |")).split(" | ")
    assert row[1:4] == ["fp32", "2", "2 x 512"] and float(row[4]) > 0
    from bench.gpu_step import counted_flops
    from train.config import load_config
    cfg = load_config(model.ROOT / "configs/pretrain/tiny_chr20.yaml", ["model.max_len=1024"])
    assert float(row[7].replace(",", "")) == pytest.approx(2 * counted_flops(cfg, 512, "cpu") / 1e9, rel=1e-3, abs=0.05)
    assert "finite: True" in r.stdout


def test_paper_step_runs_the_paper_config_and_counts_its_flops():
    """bench.paper_step at a short length: the paper's 173 M-parameter model takes a real step (a
    finite loss), its FLOPs counted with attention added by hand (a share strictly between 0 and 1)."""
    from bench.paper_step import step
    r = step(256, "main", True, "fp32", 1)
    assert 170e6 < r["params"] < 176e6 and r["loss"] == r["loss"] and r["loss"] > 0
    # at least the main network's 6 x parameters x tokens for the positions it saw
    main_params = 12 * 30 * 672 ** 2
    assert r["flops"] > 6 * main_params * r["main_positions_per_bp"] * 256 and 0 < r["attention_share"] < 1, r


def test_versus_times_this_tree_against_a_commit_in_its_own_worktree(capsys):
    """bench.versus against HEAD: both trees take real steps in their own processes, the table has
    a row each, and the temporary worktree is gone afterwards."""
    import subprocess

    from bench import versus
    before = subprocess.run(["git", "worktree", "list"], cwd=model.ROOT, capture_output=True, text=True).stdout
    versus.main(["--against", "HEAD", "--batch", "1", "--length", "128", "--steps", "1", "--rounds", "1",
                 "--threads", "1", "--precision", "bf16", "mamba.recompute=true"])
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "configs/model/small.yaml" in line]
    assert len(rows) == 2 and rows[1][2:4] == ["mamba.recompute=true", "bf16"] and rows[0][2:4] == ["–", "fp32"]
    assert all(float(r[4]) > 0 and 0.1 < float(r[6].rstrip(" |")) < 50 for r in rows), rows
    assert re.search(r"new / old training bp/s: \d+\.\d+", out)
    assert subprocess.run(["git", "worktree", "list"], cwd=model.ROOT, capture_output=True, text=True).stdout == before


def test_forward_breakdown_parts_add_up_to_the_forward():
    """bench.paper_cost's breakdown: every part of the paper model's forward is timed, none is
    negative, and they add up to the whole forward."""
    from bench.paper_models import forward_parts
    r = forward_parts(256, 1, 1)
    parts = {k: v for k, v in r.items() if k != "total"}
    assert len(parts) == 12 and all(v >= 0 for v in parts.values()), r
    assert abs(sum(parts.values()) - r["total"]) < 1e-6 and r["main network"] > 0
