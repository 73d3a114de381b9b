"""Classical baselines and the statistics that compare study rows: k-mer features counted right,
baselines deterministic on a real task, the bootstrap telling separated rows from noise."""
import json

import numpy as np
import pytest

from evaluation.baselines import BASELINES, baseline, kmer_frequencies
from evaluation.finetune import FinetuneConfig, evaluate
from evaluation.metrics import mcc
from evaluation.stats import mean_std, overall, paired_bootstrap
from evaluation.tasks import load_task

from .conftest import shared_file


def test_kmer_frequencies_count_by_hand_and_skip_n():
    f = kmer_frequencies("ACGNAC", ks=(1, 2))
    # 1-mers: A C G A C over 5 valid bases (N skipped); 2-mers: AC, CG, AC (GN, NA break)
    assert f[:4].tolist() == [2 / 5, 2 / 5, 1 / 5, 0]
    two = f[4:]
    assert two[0 * 4 + 1] == pytest.approx(2 / 3) and two[1 * 4 + 2] == pytest.approx(1 / 3)
    assert two.sum() == pytest.approx(1) and len(f) == 4 + 16
    assert kmer_frequencies("acgt", ks=(1,)).tolist() == [0.25] * 4  # soft-masked bases count too


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_on_a_real_task_is_deterministic_and_learns(name):
    task = load_task("gue", str(shared_file("gue_from_DeepGene/prom/prom_300_tata")))
    cfg = FinetuneConfig(seeds=[0, 1], max_train=300, max_test=200)
    rows, summary, preds = evaluate(baseline(name), task, cfg)
    again, _, _ = evaluate(baseline(name), task, cfg)
    assert [r["mcc"] for r in rows] == [r["mcc"] for r in again]
    assert summary["mode"] == name and summary["seeds"] == 2
    # the kept per-example predictions give back each seed's MCC
    assert preds.output.shape == (2, 200, 2) and preds.seeds.tolist() == [0, 1]
    assert [mcc(preds.y, p) for p in preds.labels()] == pytest.approx([r["mcc"] for r in rows])
    # TATA promoters against non-promoters, 270 training sequences: chance is 0 (± ~0.07 on 200)
    assert summary["mcc"] > 0.2, summary


def test_unknown_baseline_names_the_known_ones():
    with pytest.raises(ValueError, match="kmer_lr, cnn, onehot"):
        baseline("svm")


def test_mean_std_is_across_pretraining_seeds_when_there_are_several():
    two = {0: {0: 0.5, 1: 0.7}, 1: {0: 0.3, 1: 0.5}}
    assert mean_std(two) == (pytest.approx(0.5), pytest.approx(np.std([0.6, 0.4], ddof=1)), "pretraining seeds")
    assert mean_std({None: {0: 0.5, 1: 0.7}})[1:] == (pytest.approx(np.std([0.5, 0.7], ddof=1)), "probe seeds")


def test_paired_bootstrap_separates_a_real_gap_and_not_noise():
    rng = np.random.default_rng(0)
    a = {p: {q: 0.5 + rng.normal(0, 0.01) for q in range(3)} for p in range(2)}
    far = {p: {q: v + 0.1 for q, v in a[p].items()} for p in a}
    noisy = {p: {q: v + (0.05, -0.05, 0.01)[q] for q, v in a[p].items()} for p in a}  # probe seeds disagree
    d, lo, hi = paired_bootstrap(far, a)
    assert d == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)  # paired: a constant shift
    d, lo, hi = paired_bootstrap(noisy, a)
    assert d == pytest.approx(0.01 / 3) and lo < 0 < hi
    # a baseline (no pretraining seed) against a pretrained row: probe seeds paired, pretraining resampled
    base = {None: {q: 0.45 for q in range(3)}}
    d, lo, hi = paired_bootstrap(a, base)
    assert d == pytest.approx(np.mean([v for s in a.values() for v in s.values()]) - 0.45) and lo > 0
    with pytest.raises(ValueError, match="no probe seed"):
        paired_bootstrap(a, {None: {7: 0.1}})


def test_overall_averages_columns_per_seed_pair():
    got = overall({"x": {0: {0: 0.2, 1: 0.4}}, "y": {0: {0: 0.4, 1: 0.6, 2: 0.9}}})
    assert got == {0: {0: pytest.approx(0.3), 1: pytest.approx(0.5)}}  # seed 2 is missing from x


def test_each_column_reports_its_own_metric_from_suite_to_study_table(tmp_path):
    """A suite naming AUROC for one task and accuracy for another: the suite's JSON, the sweep's
    rows and the study table all read the column's metric, and no overall mean mixes them."""
    from evaluation.suite import SuiteConfig, run_suite
    from slurm.report import write_report
    from slurm.sweep import Point, _rows
    tata, h3 = shared_file("gue_from_DeepGene/prom/prom_300_tata"), shared_file("gue_from_DeepGene/EMP/H3")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: mixed\nseeds: [0, 1]\nmax_train: 200\nmax_test: 100\ntasks:\n"
                     f"  - {{column: promoters, format: gue, path: {tata}, metric: auroc}}\n"
                     f"  - {{column: histone, format: gue, path: {h3}, metric: accuracy}}\n")
    cfg = SuiteConfig.load(suite)
    point = Point("kmer_lr", "k-mer LR (baseline)", {}, tmp_path / "kmer_lr", [], None, kind="baseline",
                  baseline="kmer_lr")
    results = run_suite(baseline("kmer_lr"), cfg, point.out / "eval")
    saved = json.loads((point.out / "eval" / "promoters.json").read_text())
    assert saved["summary"]["metric"] == "auroc" and all("valid_auroc" in r for r in saved["rows"])
    assert 0.5 < results["promoters"]["auroc"] <= 1 and results["histone"]["metric"] == "accuracy"
    rows = _rows(point, {}, cfg.metrics)
    assert rows[0]["auroc/promoters"] == results["promoters"]["auroc"] and "overall_auroc" not in rows[0]
    from evaluation.references import Reference
    published = [Reference("CNN", protocol="probe", source="somewhere, Table 1", scores={"histone": 0.7})]
    write_report(rows, [], cfg.metrics, {}, tmp_path, "mixed", published=published)
    study = (tmp_path / "study.md").read_text()
    assert "| CNN |  | 0.700 | probe | somewhere, Table 1 |" in study  # a sweep shows its suite's published rows
    assert "promoters: AUROC, histone: accuracy, mean ± std" in study
    assert "| configuration | promoters | histone | pretraining seeds | tokens | status |" in study
    with pytest.raises(Exception, match="a classification task reports mcc, accuracy, f1, auroc, not 'r2'"):
        SuiteConfig.load(suite, ["tasks=[{column: x, format: gue, path: y, metric: r2}]"])
