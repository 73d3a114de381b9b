"""Classical baselines and the statistics that compare study rows: k-mer features counted right,
baselines deterministic on a real task, the bootstrap telling separated rows from noise."""
import json

import numpy as np
import pytest
import scipy.stats

from evaluation.baselines import BASELINES, baseline, kmer_frequencies
from evaluation.finetune import FinetuneConfig, evaluate
from evaluation.metrics import mcc
from evaluation.nullsim import Design, claim_rate, trial
from evaluation.predictions import Predictions
from evaluation.stats import Row, compare, mean_std, overall, examples_term
from evaluation.formats import load_task

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
    assert mean_std({0: {0: 0.5, 1: 0.7}})[1:] == (pytest.approx(np.std([0.5, 0.7], ddof=1)), "probe seeds")


def test_compare_is_a_t_interval_over_seeds_by_hand():
    """Without predictions the interval is the paired t interval over pretraining seeds; against a
    baseline, Welch's over its probe seeds; a claim needs 3 units per row."""
    a = {0: {0: 0.60, 1: 0.62}, 1: {0: 0.55, 1: 0.57}, 2: {0: 0.58, 1: 0.58}}
    b = {0: {0: 0.50, 1: 0.50}, 1: {0: 0.52, 1: 0.50}, 2: {0: 0.49, 1: 0.49}}
    c = compare(Row(a), Row(b))
    d = [0.61 - 0.50, 0.56 - 0.51, 0.58 - 0.49]
    half = scipy.stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / np.sqrt(3)
    assert c.delta == pytest.approx(np.mean(d)) and (c.lo, c.hi) == (pytest.approx(np.mean(d) - half),
                                                                     pytest.approx(np.mean(d) + half))
    assert c.claim and c.direction == 1 and c.df == pytest.approx(2) and not c.test_term
    base = {None: {0: 0.50, 1: 0.52, 2: 0.51}}
    w = compare(Row(a), Row(base))
    va, vb = np.var([0.61, 0.56, 0.58], ddof=1) / 3, np.var([0.50, 0.52, 0.51], ddof=1) / 3
    assert w.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2))
    assert w.hi - w.lo == pytest.approx(2 * scipy.stats.t.ppf(0.975, w.df) * np.sqrt(va + vb))
    two = compare(Row({k: a[k] for k in (0, 1)}), Row({k: b[k] for k in (0, 1)}))
    assert two.lo is not None and not two.claim and "2 pretraining seeds" in two.note
    one = compare(Row({0: a[0]}), Row(base))
    assert one.lo is None and not one.claim and "1 pretraining seed" in one.note


def test_test_set_term_counts_what_rows_share_once():
    """Two rows with identical predictions in every unit share all their test-set noise: the term
    is 0. A row whose units agree with each other but not with the other row's carries a term."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    def row(pred):  # three pretraining seeds, each with the same predictions for its 2 probe seeds
        p = np.stack([pred, pred]).astype(np.int16)
        preds = {s: Predictions(y, np.arange(2), np.eye(2, dtype=np.float16)[p], "t", p) for s in range(3)}
        return Row({s: {q: mcc(y, pred, 2) for q in range(2)} for s in range(3)}, preds)
    good = np.where(rng.random(400) < 0.8, y, 1 - y)
    assert examples_term(row(good), row(good)) == pytest.approx(0, abs=1e-12)
    other = np.where(rng.random(400) < 0.8, y, 1 - y)
    assert examples_term(row(good), row(other)) > 1e-4
    assert examples_term(row(good), Row(row(other).scores)) is None  # no predictions kept


@pytest.mark.parametrize("pretraining", [1, 2, 3])
def test_false_positives_under_the_null_are_at_most_5_percent(pretraining):
    """The study's design simulated (evaluation.nullsim): two rows from one distribution, 3 probe
    seeds, 1000 test examples drawn anew per trial. With 3 pretraining seeds the rule claims a
    difference in 5 % of trials within Monte Carlo error; with fewer it claims none."""
    rate, se, _, _ = claim_rate(Design(pretraining=pretraining), trials=600 if pretraining == 3 else 100)
    if pretraining < 3:
        assert rate == 0
    else:
        assert abs(rate - 0.05) < 3 * (0.05 * 0.95 / 600) ** 0.5, rate


def test_a_known_shift_is_found():
    """Power: row A's margin raised by 0.2 (about +0.06 MCC, three times the pretraining-seed
    spread of this design) is claimed in most trials, and always in the right direction."""
    rng = np.random.default_rng(1)
    hits = []
    for i in range(100):
        a, b = trial(Design(shift=0.2), rng)
        c = compare(a, b, seed=i)
        assert c.direction >= 0
        hits.append(c.claim)
    assert np.mean(hits) > 0.5, np.mean(hits)


def test_overall_averages_columns_per_seed_pair():
    got = overall({"x": {0: {0: 0.2, 1: 0.4}}, "y": {0: {0: 0.4, 1: 0.6, 2: 0.9}}})
    assert got == {0: {0: pytest.approx(0.3), 1: pytest.approx(0.5)}}  # seed 2 is missing from x


def test_each_column_reports_its_own_metric_from_suite_to_study_table(tmp_path):
    """A suite naming AUROC for one task and accuracy for another: the suite's JSON, the sweep's
    rows and the study table all read the column's metric, and no overall mean mixes them."""
    from evaluation.suite import SuiteConfig, run_suite
    from studies.compare import Columns
    from studies.report import write_report
    from studies.points import Point
    from studies.rows import rows as point_rows
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
    cols = Columns(cfg.metrics, cfg.overall_columns)
    rows = point_rows(point, {}, cols)
    assert rows[0]["auroc/promoters"] == results["promoters"]["auroc"] and "overall_auroc" not in rows[0]
    from evaluation.references import Reference
    published = [Reference("CNN", protocol="probe", source="somewhere, Table 1", scores={"histone": 0.7})]
    write_report(rows, [], cols, {}, tmp_path, "mixed", published=published)
    study = (tmp_path / "study.md").read_text()
    assert "| CNN |  | 0.700 | probe | somewhere, Table 1 |" in study  # a sweep shows its suite's published rows
    assert "promoters: AUROC, histone: accuracy, mean ± std" in study
    assert "| configuration | promoters | histone | pretraining seeds | tokens | status |" in study
    with pytest.raises(Exception, match="a classification task reports mcc, accuracy, f1, auroc, not 'r2'"):
        SuiteConfig.load(suite, ["tasks=[{column: x, format: gue, path: y, metric: r2}]"])
