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


def test_model_bench_prints_cost_table_and_exponents(capsys):
    model.main(["--sizes", "tiny", "--lengths", "256", "512", "--models", "dnachunker", "transformer", "bimamba",
                "--rounds", "2"])
    out = capsys.readouterr().out
    for name in ("dnachunker", "transformer", "bimamba"):
        assert f"| tiny | {name} | 256 |" in out
        assert sum(f"round {k}/2 tiny {name} 512:" in out for k in (1, 2)) == 2  # every point, every round
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
    for part in (r"model\.py\(\d+\): down", r"transformer\.py\(\d+\): forward", r"model\.py\(\d+\): up"):
        assert re.search(rf"\| F dnachunker/(modules/)?{part} \|", parts), part
