"""The benchmark suites (configs/eval/): each runs capped on the shipped data and writes its table
with the published rows; suites whose data is the user's name what they need; task types beyond
classification (regression, zero-shot variant effects) end to end on real chr20; k-fold splits."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.baselines import baseline
from evaluation.finetune import folds
from evaluation.metrics import auroc
from evaluation.suite import SuiteConfig, row_label, run_suite
from evaluation.tasks import Task

from .conftest import ROOT, shared_file

# the smallest run that still goes through every task: one seed, one epoch, a few sequences
CAPPED = ["seeds=[0]", "epochs=1", "max_train=24", "max_test=24", "max_valid=24", "batch_size=8", "max_len=300"]
SHIPPED = {"gue": 27, "nt_benchmark": 18, "genomic_benchmarks": 4, "paper_ablation": 4, "paper_columns": 5,
           "paper_columns_finetune": 2}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_suite_with_shipped_data_runs_capped_and_writes_its_table(name, pretrained, tmp_path):
    shared_file("gue_from_DeepGene")
    suite = SuiteConfig.load(ROOT / "configs" / "eval" / f"{name}.yaml",
                             CAPPED + (["folds=2"] if SuiteConfig.load(ROOT / "configs" / "eval" / f"{name}.yaml").folds
                                       else []))
    assert len(suite.tasks) == SHIPPED[name] and suite.follows
    results = run_suite(pretrained, suite, tmp_path)
    assert list(results) == suite.columns
    for t in suite.tasks:
        saved = json.loads((tmp_path / f"{t.column}.json").read_text())
        assert -1 <= saved["summary"][t.metric] <= 1
        # k-fold where the source has no test split: one row per fold, every fold scored
        want = 2 if suite.folds and t.format == "nt" else 1
        assert len(saved["rows"]) == want and sorted(r.get("fold") for r in saved["rows"]) == (
            [0, 1] if want == 2 else [None])
    table = (tmp_path / "summary.md").read_text()
    assert table.startswith(f"# {name}\n\n{suite.follows}") and f"| {row_label(Path(pretrained))} |" in table
    assert "a subsample: not comparable with published numbers" in table
    for r in suite.references:
        assert f"| {r.label} |" in table and r.source in table
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(csv) == 2 and csv[0].startswith("row,")


def test_suites_on_the_users_data_say_what_they_need():
    for name, needs in (("nt_benchmark_original", "give data="), ("genomic_benchmarks_grch38", "give fasta="),
                        ("bend_vep", "give data=")):
        with pytest.raises(ValueError, match=needs):
            SuiteConfig.load(ROOT / "configs" / "eval" / f"{name}.yaml")
    assert len(SuiteConfig.load(ROOT / "configs" / "eval" / "nt_benchmark_original.yaml", ["data=nt.tsv"]).tasks) == 18
    # published numbers are never mixed across protocols
    with pytest.raises(ValueError, match="finetune numbers in a probe suite"):
        SuiteConfig.load(ROOT / "configs" / "eval" / "gue.yaml", ["mode=probe"])
    with pytest.raises(ValueError, match=r"no task column \['H9'\]"):
        SuiteConfig.load(ROOT / "configs" / "eval" / "gue.yaml",
                         ["references=[{model: x, protocol: finetune, scores: {H9: 0.5}}]"])
    with pytest.raises(ValueError, match="a regression task reports pearson, spearman, not 'mcc'"):
        SuiteConfig.load(ROOT / "configs" / "eval" / "paper_columns.yaml",
                         ["tasks=[{column: gc, format: csv, path: x.csv, type: regression}]"])


def test_k_fold_splits_cover_every_row_once_and_keep_the_class_balance():
    rows = [(f"ACGT{i}", i % 3 == 0) for i in range(30)]
    rows = [(s, int(y)) for s, y in rows]
    task = Task("t", rows[:24], rows[24:], split_here=True)
    parts = folds(task, 5)
    tested = [s for _, p in parts for s, _ in p.test]
    assert sorted(tested) == sorted(s for s, _ in rows) and len(set(tested)) == 30
    for f, p in parts:
        assert not {s for s, _ in p.test} & {s for s, _ in p.train} and len(p.train) + len(p.test) == 30
        assert sum(y for _, y in p.test) == 2  # 10 positives dealt round 5 folds
    assert folds(Task("t", rows[:24], rows[24:]), 5) == [(None, Task("t", rows[:24], rows[24:]))]  # a shipped test split


@pytest.mark.slow
def test_regression_task_gc_content_of_real_chr20_windows(pretrained, chr20_windows, tmp_path):
    """A regression column: each window's GC fraction, which k-mer frequencies contain exactly
    (ridge regression on them should find it) and the model's pooled states only in part."""
    windows = chr20_windows(200, 400)
    gc = [sum(c in "GCgc" for c in w) / len(w) for w in windows]
    table = tmp_path / "gc.csv"
    table.write_text("sequence,label,split\n" + "".join(
        f"{w},{y:.6f},{'test' if i % 4 == 0 else 'train'}\n" for i, (w, y) in enumerate(zip(windows, gc))))
    suite = SuiteConfig.load(None, ["name=gc", "seeds=[0,1]", "epochs=2",
                                    f"tasks=[{{column: gc, format: csv, path: {table}, type: regression, "
                                    f"metric: pearson}}]"])
    ridge = run_suite(baseline("kmer_lr"), suite, tmp_path / "kmer")["gc"]
    assert ridge["pearson"] > 0.99 and ridge["spearman"] > 0.98 and ridge["type"] == "regression"
    probe = run_suite(pretrained, suite, tmp_path / "model")["gc"]
    assert 0.2 < probe["pearson"] <= 1 and "mcc" not in probe
    assert "This run: probe, pearson, mean ± std over 2 seeds" in (tmp_path / "model" / "summary.md").read_text()


@pytest.mark.slow
def test_variant_effect_suite_on_labelled_chr20_variants(pretrained, chr20_prefix, tmp_path):
    """Zero-shot: SNVs on real chr20 (first 100 kbp), labelled, one with a wrong REF and one
    multiallelic left out; the suite's AUROC is the one computed from score-variants' own scores."""
    from dnachunker import DNAChunker
    from dnachunker.variants import score_variants
    seq = chr20_prefix[60_000:160_000]
    fasta = tmp_path / "chr20.fa"
    fasta.write_text(">chr20\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    rng = np.random.default_rng(0)
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for k, pos in enumerate(sorted(rng.choice(np.arange(1000, 99_000), 40, replace=False))):
        ref = seq[pos - 1].upper()
        if ref not in "ACGT":
            continue
        alt = "ACGT"[("ACGT".index(ref) + 1 + k % 3) % 4]
        lines.append(f"chr20\t{pos}\tv{k}\t{ref}\t{alt}\t.\tPASS\tLABEL={int(seq[pos - 1].islower())}")
    lines.append(f"chr20\t5000\tbad\t{'ACGT'[('ACGT'.index(seq[4999].upper()) + 1) % 4]}\tA\t.\tPASS\tLABEL=1")
    lines.append("chr20\t6000\tmulti\tA\tC,G\t.\tPASS\tLABEL=0")
    vcf = tmp_path / "v.vcf.gz"
    with gzip.open(vcf, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    suite = SuiteConfig.load(ROOT / "configs" / "eval" / "bend_vep.yaml", [f"data={vcf}", f"fasta={fasta}"])
    result = run_suite(pretrained, suite, tmp_path / "out")["variant_effect"]
    scored = [v for v in score_variants(DNAChunker.from_pretrained(pretrained), vcf, fasta) if v.status == "ok"]
    labels = {ln.split("\t")[2]: int(ln[-1]) for ln in lines[2:]}
    assert result["auroc"] == pytest.approx(auroc([labels[v.id] for v in scored], np.array([-v.score for v in scored])))
    assert result["scored"] == len(lines) - 4 and result["left_out"] == 2
    assert "zero-shot" in (tmp_path / "out" / "summary.md").read_text()
    assert run_suite(baseline("kmer_lr"), suite, tmp_path / "kmer") == {}  # nothing a baseline can score
    bad = tmp_path / "nolabel.vcf"
    bad.write_text(lines[1] + f"\nchr20\t1500\tx\t{seq[1499].upper()}\tA\t.\tPASS\t.\n")
    with pytest.raises(ValueError, match=r"nolabel.vcf:2: INFO needs LABEL=0 or LABEL=1"):
        run_suite(pretrained, SuiteConfig.load(ROOT / "configs" / "eval" / "bend_vep.yaml",
                                               [f"data={bad}", f"fasta={fasta}"]), tmp_path / "bad")


def test_every_published_number_names_where_it_was_read():
    """A reference's source pins what it was read from: a repository at a commit (owner/repo@sha),
    an arXiv or bioRxiv identifier, or an address, and the table or file within it."""
    import re

    import yaml

    from evaluation.references import Reference
    pinned = re.compile(r"@[0-9a-f]{7,40}\b|arXiv \d{4}\.\d{4,5}|bioRxiv|https?://")
    for path in sorted((ROOT / "configs" / "eval").glob("*.yaml")):
        for ref in (Reference(**r) for r in yaml.safe_load(path.read_text()).get("references", [])):
            assert pinned.search(ref.source), f"{path.name}: {ref.label}: {ref.source!r} names no commit or page"
            assert re.search(r"Table|table|\.md|\.csv|Figure", ref.source), f"{path.name}: {ref.label}: which table?"


def test_a_suite_runs_the_tasks_named_on_the_command_line_only(tmp_path, capsys):
    """`tasks=[splice,promoters]` keeps those of the file's tasks (in the file's order); a name the
    suite does not have is an error listing the ones it has."""
    from evaluation.__main__ import main as eval_cli
    suite = SuiteConfig.load(ROOT / "configs/eval/paper_columns.yaml", ["tasks=[splice,promoters]"])
    assert suite.columns == ["promoters", "splice"] and suite.tasks[1].path.endswith("splice/reconstructed")
    assert eval_cli(["suite", "--baseline", "kmer_lr", "--suite", str(ROOT / "configs/eval/paper_columns.yaml"),
                     "--out", str(tmp_path), "tasks=[promoters]", "seeds=[0]", "max_train=60", "max_test=40"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["promoters.json"]
    assert eval_cli(["suite", "--baseline", "kmer_lr", "--suite", str(ROOT / "configs/eval/paper_columns.yaml"),
                     "--out", str(tmp_path), "tasks=[nope]"]) == 2
    assert "no task ['nope'] (its tasks: histone, enhancers, promoters, splice, splice_site)" in capsys.readouterr().err
