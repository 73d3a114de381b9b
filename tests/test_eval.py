"""Evaluation: task loaders, fine-tuning / linear probing, baselines, segmentation analysis."""
import gzip

import numpy as np
import pytest
import torch

from dnachunker import DNAChunker
from dnachunker.tokenization import Kmer, KmerArgs, NoArgs, Single
from evaluation.__main__ import main as eval_cli
from evaluation.analysis import boundary_agreement, robustness
from evaluation.chunk_lengths import difference_ci, lengths_by_region, mean_length_ci
from evaluation.finetune import FinetuneConfig, _probe, evaluate
from evaluation.metrics import METRICS, accuracy, all_metrics, auroc, f1_macro, mcc
from evaluation.task_types import TASK_TYPES
from evaluation.formats import load_genomic_benchmark, load_gue, load_janggu, load_nt
from evaluation.tasks import EvalDataError, Task

from .conftest import shared_file

GUE_TATA = "gue_from_DeepGene/prom/prom_300_tata"
FLY = "ncbi_softmasked_small_chroms/DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz"


def test_metrics_match_hand_computed_values():
    y, p = [0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]
    # TP=2 TN=2 FP=1 FN=1 -> MCC = (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert mcc(y, p) == pytest.approx(1 / 3)
    assert accuracy(y, p) == pytest.approx(4 / 6)
    assert f1_macro(y, p) == pytest.approx(2 / 3)
    assert mcc([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)
    assert mcc([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    # AUROC: 3 positives x 3 negatives = 9 pairs; positives .9 .6 .4 against negatives .8 .4 .1:
    # .9 wins 3, .6 wins 2, .4 wins 1 (.1) and ties 1 (.4, half) -> 6.5 / 9
    scores = np.array([0.8, 0.4, 0.9, 0.6, 0.4, 0.1])
    labels = [0, 0, 1, 1, 1, 0]
    assert auroc(labels, np.stack([1 - scores, scores], 1)) == pytest.approx((3 + 2 + 1.5) / 9)
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8], [0.45, 0.55], [0.9, 0.1]])
    got = all_metrics(labels, probs)  # the second is called 1 (argmax), and ranks below two positives
    assert got["accuracy"] == pytest.approx(5 / 6) and got["auroc"] == pytest.approx(8 / 9)
    assert set(got) == set(TASK_TYPES["classification"].metrics) and got["mcc"] == pytest.approx(mcc(labels, probs.argmax(1)))
    # regression: y = 1 2 3 4, predictions 1 3 2 5. Pearson by hand: deviations (-1.5 -.5 .5 1.5) and
    # (-1.75 .25 -.75 2.25): sum of products 5.5, sums of squares 5 and 8.75 -> 5.5 / sqrt(43.75)
    got = all_metrics([1, 2, 3, 4], np.array([1.0, 3.0, 2.0, 5.0]), TASK_TYPES["regression"].metrics)
    assert got["pearson"] == pytest.approx(5.5 / np.sqrt(43.75))
    # Spearman: ranks 1 2 3 4 against 1 3 2 4: d^2 = 0 1 1 0 -> 1 - 6*2 / (4*15) = 0.8; ties take the mean rank
    assert got["spearman"] == pytest.approx(0.8)
    assert all_metrics([1, 2, 3], np.array([5.0, 5.0, 7.0]), ["spearman"])["spearman"] == pytest.approx(np.sqrt(3) / 2)
    assert set(TASK_TYPES["regression"].metrics) | set(TASK_TYPES["classification"].metrics) <= set(METRICS)


@pytest.mark.slow
def test_finetuned_tiny_model_beats_majority_class_on_gue(pretrained):
    task = load_gue(shared_file(GUE_TATA))
    cfg = FinetuneConfig(mode="finetune", epochs=2, lr=2e-3, batch_size=32, seeds=[0], max_train=600)
    rows, summary, _ = evaluate(str(pretrained), task, cfg)
    assert summary["accuracy"] > summary["majority_accuracy"] and summary["mcc"] > 0.1, summary


def test_linear_probe_keeps_the_backbone_frozen(pretrained):
    full = load_gue(shared_file(GUE_TATA))
    task = Task(full.name, full.train[:300], full.test[:200], full.valid[:100])
    model = DNAChunker.from_pretrained(pretrained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(mode="probe", epochs=1, seeds=[0])
    train, valid = task.split_valid(0)
    out, best = _probe(model, task, train, valid, cfg, 0, "cpu", {}, TASK_TYPES["classification"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in model.parameters())
    assert out.shape == (200, 2) and np.allclose(out.sum(1), 1, atol=1e-5) and -1 <= best <= 1


def test_robustness_metric(chr20_windows):
    ref = np.array([0, 3, 7, 12])
    assert boundary_agreement(ref, ref, "snv", 5) == 1.0
    assert boundary_agreement(ref, np.array([0, 3, 6, 11]), "deletion", 5) == 1.0  # shifted by the deletion
    seqs = chr20_windows(240, 4)
    batch = lambda t: (lambda ss: [t.starts(s) for s in ss])  # noqa: E731
    for kind in ("insertion", "deletion"):
        single = robustness(batch(Single(NoArgs())), seqs, kind)
        six = robustness(batch(Kmer(KmerArgs(6))), seqs, kind)
        assert single > 0.98 and six < 0.8 * single


def test_model_robustness_and_the_robustness_command(tmp_path, train_shards, pretrained, chr20_windows):
    seqs = chr20_windows(400, 12)
    model = DNAChunker.from_pretrained(pretrained)
    learned = robustness(lambda ss: [s[0] for s in model.segment(ss)], seqs, "deletion")
    assert 0.0 < learned <= 1.0
    assert robustness(lambda ss: [s[0] for s in model.segment(ss)], seqs, "snv") > 0.5
    assert eval_cli(["bpe", "--shards", str(train_shards), "--vocab-size", "512", "--max-samples", "500",
                     "--out", str(tmp_path / "bpe")]) == 0
    out = tmp_path / "robustness"
    assert eval_cli(["robustness", "--model", str(pretrained), "--bpe", str(tmp_path / "bpe"), "--fasta",
                     str(shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")), "--length", "400",
                     "--count", "6", "--out", str(out)]) == 0
    assert (out / "robustness.png").stat().st_size > 0
    rows = (out / "robustness.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["DNAChunker (stage 0)", "single-nucleotide", "6-mer", "BPE"]
    assert float(rows[2].split(",")[1]) == 1.0  # an SNV moves no single-base cut


def test_task_loaders_on_real_data_and_malformed_rows(tmp_path, chr20_prefix):
    task = load_gue(shared_file(GUE_TATA))
    assert len(task.train) == 4904 and len(task.test) == 613 and task.valid and task.n_classes == 2
    jg = load_janggu(shared_file("janggu_hg19_oct4_mafk"))
    assert len(jg.train) == 3897 + 3900 and len(jg.test) == 200 and len(jg.train[0][0]) == 200
    nt = load_nt(shared_file("ai4h_hub_gb_nt/nucleotide_transformer/train.tsv.gz"), "promoter_all")
    assert len(nt.train) + len(nt.test) == 71
    d = tmp_path / "gue"
    d.mkdir()
    (d / "test.csv").write_text("sequence,label\nACGT,0\n")
    for body, msg in (("sequence,label\nACGT,0\nACXT,1\n", r"train\.csv:3: invalid character 'X'"),
                      ("sequence,label\nACGT,zero\n", r"train\.csv:2: label 'zero' is not an integer"),
                      ("sequence,label\nACGT,0,7\n", r"train\.csv:2: 3 fields, the header has 2"),
                      ("seq_x,label\nACGT,0\n", r"train\.csv:1: header needs a 'sequence'"),
                      ("sequence,label\n,1\n", r"train\.csv:2: empty sequence")):
        (d / "train.csv").write_text(body)
        with pytest.raises(EvalDataError, match=msg):
            load_gue(d)
    with pytest.raises(EvalDataError, match="no rows for task 'nope'"):
        load_nt(shared_file("ai4h_hub_gb_nt/nucleotide_transformer/train.tsv.gz"), "nope")
    # Genomic Benchmarks coordinates, cut from a reference FASTA (here: hg19 chr20)
    gb = tmp_path / "gb"
    (gb / "train").mkdir(parents=True)
    (gb / "test").mkdir()
    (gb / "metadata.yaml").write_text("classes:\n  negative: {}\n  positive: {}\n")
    rows = {"negative": "a,chr20,1000000,1000050,+\n", "positive": "b,20,1000100,1000150,-\n"}
    for split in ("train", "test"):
        for cls, row in rows.items():
            (gb / split / f"{cls}.csv.gz").write_bytes(gzip.compress(f"id,region,start,end,strand\n{row}".encode()))
    fasta = shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")
    t = load_genomic_benchmark(gb, fasta)
    comp = str.maketrans("ACGTNacgtn", "TGCANtgcan")
    assert t.train[0] == (chr20_prefix[1000000:1000050], 0)
    assert t.train[1] == (chr20_prefix[1000100:1000150].translate(comp)[::-1], 1)
    (gb / "test" / "positive.csv.gz").write_bytes(gzip.compress(b"id,region,start,end,strand\nb,chr20,5,9,*\n"))
    with pytest.raises(EvalDataError, match=r"positive\.csv\.gz:2: bad interval or strand"):
        load_genomic_benchmark(gb, fasta)


@pytest.mark.slow
def test_cli_segment_views_and_region_table(pretrained, tmp_path):
    fly = shared_file(FLY)
    gtf = shared_file("ncbi_softmasked_small_chroms/DmelanDM6_4.gtf.gz")
    assert eval_cli(["segment", "--model", str(pretrained), "--fasta", str(fly), "--gtf", str(gtf),
                     "--length", "1024", "--count", "24", "--out", str(tmp_path)]) == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "chunk_lengths.csv")))
    assert {r["region"] for r in rows} == {"all", "repeat", "non-repeat", "exon", "non-exon"}
    assert {r["group"] for r in rows} == {"NC_004353.4"}  # one FASTA: its record is the one group
    assert all(float(r["mean_bp"]) >= 1 for r in rows if int(r["chunks"]) > 0)
    assert (tmp_path / "segmentation.png").stat().st_size > 2000 and (tmp_path / "chunk_lengths.png").is_file()
    assert "stage 1" in (tmp_path / "segmentation.html").read_text()
    assert eval_cli(["finetune", "--model", str(pretrained), "--format", "gue", "--path", str(tmp_path),
                     "--mode", "probe"]) == 2  # not a task directory: a clear error, exit code 2


def test_lengths_by_region():
    starts = np.array([0, 4, 6])
    region = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    out = lengths_by_region(starts, region)
    assert out["in"].tolist() == [4] and out["out"].tolist() == [2, 4]


def test_mean_chunk_length_interval_is_over_windows():
    same = [np.array([2, 2, 4])] * 5  # identical windows: no spread, whatever the chunks inside
    assert mean_length_ci(same) == (pytest.approx(8 / 3), pytest.approx(8 / 3), pytest.approx(8 / 3))
    mixed = [np.array([1, 1, 1, 1])] * 5 + [np.array([4])] * 5  # windows of 4 bp: 1 bp or 4 bp chunks
    mean, lo, hi = mean_length_ci(mixed)
    assert mean == pytest.approx(40 / 25) and 1 < lo < mean < hi < 4
    d, dlo, dhi = difference_ci(same, mixed)
    assert d == pytest.approx(40 / 25 - 8 / 3) and dlo < d < dhi < 0


def test_user_csv_with_split_column(tmp_path, chr20_windows):
    seqs = chr20_windows(100, 6)
    rows = [f"{s},{i % 2},{split}" for i, (s, split) in enumerate(zip(seqs, ["train"] * 4 + ["test", "dev"]))]
    f = tmp_path / "mine.csv"
    f.write_text("sequence,label,split\n" + "\n".join(rows) + "\n")
    from evaluation.formats import load_csv
    task = load_csv(f)
    assert len(task.train) == 4 and len(task.test) == 1 and len(task.valid) == 1
    assert task.train[0] == (seqs[0], 0)
    f.write_text("sequence,label,split\n" + rows[0] + "\n" + rows[1].replace(",train", ",holdout") + "\n")
    with pytest.raises(EvalDataError, match=r"mine\.csv:3: split 'holdout'"):
        load_csv(f)


def test_cuts_as_in_training_break_a_fixed_tokenization_at_the_masks_and_leave_learned_cuts(chr20_windows):
    """cuts=training: a BPE model reads the same unmasked bases, cut where BERT's masking (seed 0)
    would have cut them in pretraining; a learned router's cuts do not change."""
    from dnachunker import tokenization
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    from evaluation.finetune import pooled
    from .test_model import tiny
    b = batch_encode(chr20_windows(256, 4))
    bpe = tiny("tokenization=bpe", "tokenization_args.vocab_size=128")
    bpe.tokenization = tokenization.fit(bpe.cfg, chr20_windows(500, 40))
    plain, training = pooled(bpe, b.input_ids, b.valid), pooled(bpe, b.input_ids, b.valid, cuts="training")
    masked, _ = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
    cut = bpe.tokenization.boundaries(masked, b.valid)
    assert cut.sum() > bpe.tokenization.boundaries(b.input_ids, b.valid).sum()  # the masks break BPE's tokens
    expected = bpe(b.input_ids, b.valid, boundaries=cut).hidden.float()
    v = b.valid.unsqueeze(-1).float()
    assert torch.allclose(training, (expected * v).sum(1) / v.sum(1), atol=1e-6)
    assert not torch.allclose(plain, training)
    learned = tiny()
    assert torch.equal(pooled(learned, b.input_ids, b.valid), pooled(learned, b.input_ids, b.valid, cuts="training"))


def test_finetuning_picks_lr_and_epoch_on_valid_and_lora_trains_only_adapters(pretrained):
    """lrs: each learning rate trained in turn, the (lr, epoch) best on valid recorded in the row;
    lora_rank: peft adapters on the mixers and MLPs, every pretrained weight left as it was."""
    from evaluation.finetune import _finetunable, _finetune, run_seed
    from evaluation.task_types import task_type
    full = load_gue(shared_file(GUE_TATA))
    task = Task(full.name, full.train[:200], full.test[:100], full.valid[:60])
    cfg = FinetuneConfig(mode="finetune", epochs=2, lrs=[1e-5, 3e-3], seeds=[0])
    row, out = run_seed(str(pretrained), task, cfg, 0)
    assert row["lr"] in (1e-5, 3e-3) and row["epoch"] in (1, 2) and out.shape == (100, 2)
    # the row's valid score is the best of the four (lr, epoch) pairs, each re-run here
    tt = task_type("classification")
    scores = []
    for lr in (1e-5, 3e-3):
        model, head = _finetunable(str(pretrained), task, cfg, 0, "cpu", tt)
        scores += list(_finetune(model, head, task.train, task.valid, cfg, lr, 0, "cpu", tt))
    assert row["valid_mcc"] == pytest.approx(max(scores))
    lora = FinetuneConfig(mode="finetune", epochs=1, lr=3e-3, lora_rank=4, seeds=[0])
    model, head = _finetunable(str(pretrained), task, lora, 0, "cpu", tt)
    before = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in model.state_dict().items() if "lora_B" in k}
    assert adapters and all(not v.any() for v in adapters.values())  # B starts at 0: the model as exported
    list(_finetune(model, head, task.train, task.valid, lora, 3e-3, 0, "cpu", tt))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert any(after[k].any() for k in adapters)


def test_the_picture_zooms_where_a_repeat_and_an_exon_begin_and_splits_lengths_by_region():
    """The zoom of segmentation.png goes where the most kinds of region have an edge (here the one
    place a repeat and an exon both start); chunk_lengths.png's per-region lengths are the chunks
    in and out of each region, together every chunk."""
    from evaluation.analysis import zoom_start
    from evaluation.chunk_lengths import region_lengths
    repeat, exon = np.zeros(1000, bool), np.zeros(1000, bool)
    repeat[100:160], repeat[700:760], exon[730:900] = True, True, True
    start = zoom_start(1000, 120, {"repeat": repeat, "exon": exon})
    assert start <= 700 < start + 120 and start <= 730 < start + 120  # both edges in the zoom
    segs = [[np.array([0, 100, 160, 700, 730, 900]), np.array([0, 700])]]
    got = region_lengths(segs, {"repeat": [repeat], "exon": [exon]})
    assert got["all"][0].tolist() == [100, 60, 540, 30, 170, 100] and got["repeat"][0].tolist() == [60, 30]
    for kind in ("repeat", "exon"):
        assert sorted([*got[kind][0], *got[f"non-{kind}"][0]]) == sorted(got["all"][0]) and got["all"][1].sum() == 1000
