"""The benchmark scripts run and print their tables (tiny sizes; no timing is asserted)."""
import pytest

from bench import model, scans

pytestmark = pytest.mark.slow


def test_scan_bench_prints_ratio_table(capsys):
    scans.main(["--lengths", "128", "256"])
    out = capsys.readouterr().out
    assert "| scan | length | ssd_ms | sequential_ms | speedup |" in out
    assert out.count("| selective |") == 2 and out.count("| dechunk |") == 2


def test_model_bench_prints_cost_table_and_exponents(capsys):
    model.main(["--sizes", "tiny", "--lengths", "256", "512"])
    out = capsys.readouterr().out
    for name in ("dnachunker", "transformer", "bimamba"):
        assert f"| tiny | {name} | 256 |" in out
    assert "time_exponent" in out and "time_vs_dnachunker" in out
