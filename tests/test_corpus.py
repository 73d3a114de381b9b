"""Multi-genome corpora (data_pipeline/corpus.py) on real genomes: per-genome shard sets merged
into one corpus, the weighted sample order, exact and elastic resume across genomes, the species id
in the batch, bad corpus configs, and the per-genome Slurm array on the local cluster."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from data_pipeline.__main__ import main as cli
from data_pipeline.corpus import CorpusSplit
from data_pipeline.corpus_build import weights
from data_pipeline.corpus_config import CorpusConfig
from data_pipeline.errors import DataError
from data_pipeline.loader import PretrainLoader
from data_pipeline.reader import ShardSplit

from .conftest import ROOT, shared_file
from .test_data_pipeline import FLY, YEAST, _consumed, resumes_exactly
from .test_slurm import needs_slurm
from .test_train import tiny_run


def corpus_yaml(tmp, *, sampling="{strategy: by_bp}", extra="", yeast_weight="null", window=512):
    yeast, fly = shared_file(YEAST), shared_file(FLY)
    path = tmp / "corpus.yaml"
    path.write_text(f"""out: {tmp / 'corpus'}
window: {{length: {window}}}
samples_per_shard: 128
workers: 1
sampling: {sampling}
genomes:
  - name: yeast
    fasta: {yeast}
    weight: {yeast_weight}
    splits: {{train: ["NC_001133.9:0-200000"], valid: ["NC_001133.9:200000-230218"], test: []}}
  - name: fly
    fasta: {fly}
    weight: 3
    splits: {{train: ["NC_004353.4:0-1200000"], valid: ["NC_004353.4:1200000-1348131"], test: []}}
  - name: yeast_heldout
    fasta: {yeast}
    hold_out: valid
{extra}""")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    assert cli(["all", "--config", str(corpus_yaml(tmp))]) == 0
    return tmp / "corpus"


def test_each_genome_is_its_own_shard_set_merged_into_one_corpus(corpus, tmp_path, capsys):
    manifest = json.loads((corpus / "corpus.json").read_text())
    genomes = {g["name"]: g for g in manifest["genomes"]}
    assert list(genomes) == ["yeast", "fly", "yeast_heldout"]
    assert genomes["yeast"]["samples"] == {"train": 200000 // 512, "valid": 30218 // 512, "test": 0}
    assert genomes["yeast_heldout"]["samples"]["train"] == 0 and genomes["yeast_heldout"]["p"] == 0
    fly_bp = genomes["fly"]["samples"]["train"]
    assert genomes["fly"]["p"] == pytest.approx(fly_bp / (fly_bp + 390))  # by_bp: train windows x 512
    train = CorpusSplit(corpus, "train")
    assert len(train) == 390 + fly_bp
    for i in (0, 389, 390, len(train) - 1):  # genome by genome; sample i of a genome is its shard set's
        g = train.genome_of(i)
        own = ShardSplit(corpus / train.names[g], "train")[i - int(train.offset[g])]
        s = train[i]
        assert s["species"] == g and np.array_equal(s["bases"], own["bases"])
        assert s["meta"]["chrom"] == f"{train.names[g]}/{own['meta']['chrom']}"  # names prefixed
    valid = CorpusSplit(corpus, "valid")  # the held-out genome is whole in valid
    assert valid.sizes.tolist() == [59, 256, 449]  # fly: 33 mostly-N windows dropped
    # a second run reuses every genome; `only` builds one genome (a Slurm array element)
    capsys.readouterr()
    config = corpus_yaml(corpus.parent)
    assert cli(["all", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("reused") >= 3
    assert cli(["all", "--config", str(config), "only=1"]) == 0
    assert "fly: done; merge with" in capsys.readouterr().out.replace(str(corpus) + "/", "")


def test_sampling_weights():
    bp = [100, 400, 0]
    assert weights("uniform", bp, [None] * 3, 0).tolist() == [0.5, 0.5, 0]
    assert weights("by_bp", bp, [None] * 3, 0).tolist() == [0.2, 0.8, 0]
    assert weights("explicit", bp, [3, 1, 5], 0).tolist() == [0.75, 0.25, 0]  # no train bp: weight 0
    assert weights("temperature", bp, [None] * 3, 0.5).tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    with pytest.raises(DataError, match="every genome has weight 0"):
        weights("explicit", bp, [0, 0, 1], 0)


def test_weighted_order_is_deterministic_and_draws_each_genome_without_repeats(corpus):
    split = CorpusSplit(corpus, "train")
    split.p = np.array([0.5, 0.5, 0.0])  # yeast (390 samples) drawn far more often than its size
    n = split.draws()
    assert n.sum() == len(split) and abs(n[0] - n[1]) <= 1 and n[2] == 0
    orders = [split.order(7, e) for e in range(3)]
    assert np.array_equal(orders[0], split.order(7, 0)) and not np.array_equal(orders[0], split.order(8, 0))
    for e, order in enumerate(orders):
        assert np.bincount([split.genome_of(i) for i in order], minlength=3).tolist() == n.tolist()
    for e in range(1, 4):  # up-weighted yeast: after any number of epochs each sample was drawn k or k+1 times
        yeast = np.bincount(np.concatenate([o[o < 390] for o in orders[:e]]), minlength=390)
        assert yeast.max() - yeast.min() <= 1 and yeast.min() >= e * n[0] // 390
    # down-weighted fly: no sample repeats until all of it was drawn, across epochs
    split.p = np.array([0.9, 0.1, 0.0])
    fly_n = int(split.draws()[1])
    fly = np.concatenate([o[o >= 390] for o in (split.order(7, e) for e in range(int(split.sizes[1]) // fly_n))])
    assert len(fly) <= split.sizes[1] and len(np.unique(fly)) == len(fly)


def test_loader_resumes_exactly_and_on_fewer_ranks_across_genomes(corpus):
    root = str(corpus)
    ref = resumes_exactly(root, ("input_ids", "labels", "index", "species"))
    split = CorpusSplit(corpus, "train")
    for b in ref:  # the species id reaches the batch
        assert b["species"].tolist() == [split.genome_of(i) for i in b["index"].tolist()]
    assert {s for b in ref for s in b["species"].tolist()} == {0, 1}
    # 2 ranks -> 1 rank: the epoch's draws continue without a repeat or a gap
    two = [PretrainLoader(root, "train", 2, rank=r, world_size=2, seed=3) for r in range(2)]
    seen = [i for loader in two for b in _consumed(loader, 10) for i in b["index"].tolist()]
    one = PretrainLoader(root, "train", 3, seed=3)
    one.load_state_dict(two[0].state_dict())
    rest = [i for b in _consumed(one, (one.n - 40) // 3) for i in b["index"].tolist()]
    assert one.epoch == 0
    assert sorted(seen + rest) == sorted(one.order(0)[: len(seen) + len(rest)].tolist())


def test_a_checkpoint_of_other_sampling_weights_is_refused(corpus, tmp_path):
    state = PretrainLoader(str(corpus), "train", 4, seed=1).state_dict()
    other = tmp_path / "other"
    other.mkdir()
    for g in ("yeast", "fly", "yeast_heldout"):
        (other / g).symlink_to(corpus / g)
    manifest = json.loads((corpus / "corpus.json").read_text())
    manifest["genomes"][0]["p"], manifest["genomes"][1]["p"] = 0.5, 0.5
    (other / "corpus.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="draws per genome and epoch .* differ"):
        PretrainLoader(str(other), "train", 4, seed=1).load_state_dict(state)
    manifest["genomes"][1]["manifest_sha256"] = "0" * 64  # as if fly were rebuilt after the merge
    (other / "corpus.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="fly: its shard set changed after .*corpus.json was written"):
        CorpusSplit(other, "train")


@pytest.mark.parametrize("case, match", [
    ("dup", r"corpus.yaml:\d+: genome 'fly': the name is used twice"),
    ("negative", r"corpus.yaml:\d+: genome 'yeast': weight -1.0 is negative"),
    ("zero", "every explicit weight is zero"),
    ("empty", r"corpus.yaml:\d+: genome 'yeast': its splits leave it empty"),
    ("both", r"genome 'yeast': weight -1.0 is negative; .*corpus.yaml:\d+: genome 'fly': the name is used twice"),
])
def test_bad_corpus_configs_name_the_file_line_and_genome_of_every_problem(tmp_path, capsys, case, match):
    kw = {"dup": dict(extra=f"  - {{name: fly, fasta: {shared_file(FLY)}}}\n"),
          "negative": dict(yeast_weight="-1"),
          "zero": dict(sampling="{strategy: explicit}", yeast_weight="0", extra=""),
          "empty": dict(window=250000),
          "both": dict(yeast_weight="-1", extra=f"  - {{name: fly, fasta: {shared_file(FLY)}}}\n")}[case]
    path = corpus_yaml(tmp_path, **kw)
    if case == "zero":
        path.write_text(path.read_text().replace("weight: 3", "weight: 0"))
    assert cli(["all", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and re.search(match, err), err


@needs_slurm
@pytest.mark.slow
def test_per_genome_slurm_array_then_merge(tmp_path):
    path = corpus_yaml(tmp_path)
    r = subprocess.run(["bash", "slurm/corpus.sh", str(path)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "CORPUS_LOGS": str(tmp_path / "logs"), "CPUS": "1",
                            "SBATCH_ARGS": "--gres=none --time=10:00"})
    assert r.returncode == 0, r.stderr
    merge = r.stdout.split("merge: job ")[1].split()[0]
    deadline = time.time() + 600
    logs = {}
    while time.time() < deadline and not (tmp_path / "corpus" / "corpus.json").is_file():
        time.sleep(2)
        logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.out")}
        if any("error:" in text for text in logs.values()):  # a failed element: the merge never runs
            subprocess.run(["scancel", merge])
            break
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.out")}
    assert (tmp_path / "corpus" / "corpus.json").is_file(), (merge, logs)
    assert len([n for n in logs if n.startswith("corpus-genome")]) == 3  # one element per genome
    direct = CorpusConfig.load(str(path))
    assert [g["name"] for g in json.loads((tmp_path / "corpus" / "corpus.json").read_text())["genomes"]] == \
        [g.name for g in direct.genomes]


def _pretrain(out, corpus, *overrides):
    return subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                           *tiny_run(out, corpus), "max_steps=4", "val_every=0", "val_batches=3", *overrides],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def test_pretraining_on_a_corpus_reports_each_genome_and_learns_a_species_embedding(corpus, tmp_path):
    """Validation interleaves the genomes, so a few batches hold each: per-genome MLM loss and
    compression in summary.json, MLflow and the model card, which lists every genome's source.
    With model.species the batch's species ids reach a learned input embedding, which the export
    keeps and inference names (--species)."""
    out = tmp_path / "run"
    r = _pretrain(out, corpus, "model.species=[yeast,fly,yeast_heldout]")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for g in ("yeast", "fly", "yeast_heldout"):
        assert 0.5 < summary[f"valid/{g}/mlm_loss"] < 3 and 0 < summary[f"valid/{g}/compression_0"] <= 1
        # the router's own cuts are a subset of those used (mask protection only adds)
        assert 0 < summary[f"valid/{g}/router_compression_0"] < summary[f"valid/{g}/compression_0"]
    assert summary["valid/yeast/mlm_loss"] != summary["valid/fly/mlm_loss"]
    card = (out / "export" / "README.md").read_text()
    for g in json.loads((corpus / "corpus.json").read_text())["genomes"]:
        assert f"genome `{g['name']}` (sampling probability {g['p']:.3f})" in card
        loss = summary[f"valid/{g['name']}/mlm_loss"]
        assert f"| {g['name']}: validation MLM loss | {loss:.4f} |" in card
    split = CorpusSplit(corpus, "valid")  # 3 batches of 4 interleaved: every genome, in turn
    assert [split.genome_of(i) for i in PretrainLoader(str(corpus), "valid", 4, train=False).order(0)[:6]] == \
        [0, 1, 2, 0, 1, 2]
    from dnachunker import DNAChunker
    model = DNAChunker.from_pretrained(out / "export")
    assert model.cfg.species == ["yeast", "fly", "yeast_heldout"]
    rows = model.species_embed.weight.detach().abs().sum(1)
    assert rows[0] > 0 and rows[1] > 0 and rows[2] == 0  # trained on yeast and fly; the held-out genome never
    fasta = tmp_path / "q.fa"
    fasta.write_text(">q\n" + "ACGTTGCAAT" * 30 + "\n")
    outs = {}
    for species in ("yeast", "fly"):
        r = subprocess.run([sys.executable, "-m", "dnachunker_cli", "embed", "--model", str(out / "export"), "--fasta",
                            str(fasta), "--out", str(tmp_path / f"{species}.npz"), "--species", species], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs[species] = np.load(tmp_path / f"{species}.npz")["embeddings"]
    assert not np.allclose(outs["yeast"], outs["fly"])
    r = subprocess.run([sys.executable, "-m", "dnachunker_cli", "embed", "--model", str(out / "export"), "--fasta",
                        str(fasta), "--out", str(tmp_path / "x.npz"), "--species", "human"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "species 'human': this model knows ['yeast', 'fly', 'yeast_heldout']" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dnachunker_cli", "embed", "--model", str(out / "export"), "--fasta",
                        str(fasta), "--out", str(tmp_path / "x.npz")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "name one (--species)" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="this model embeds the species"):
        model(torch.tensor([[2, 3, 4, 5]]))
    import dnachunker.hf  # noqa: F401
    from transformers import AutoModel  # Transformers users pass the species per sequence
    hf = AutoModel.from_pretrained(out / "export").eval()
    ids = torch.tensor([[2, 3, 4, 5] * 8] * 2)
    with torch.no_grad():
        h = hf(ids, species=torch.tensor([0, 1])).last_hidden_state
        ref = model.eval()(ids, species=torch.tensor([0, 1])).hidden
    torch.testing.assert_close(h, ref)
    assert not torch.allclose(h[0], h[1])
    # the names must be the corpus's genomes, in its order
    r = _pretrain(tmp_path / "bad", corpus, "model.species=[fly,yeast,yeast_heldout]")
    assert r.returncode == 2 and "must be the genomes of" in r.stderr and "Traceback" not in r.stderr
    # the same samples scored for any model: per genome, as the trainer's validation
    r = subprocess.run([sys.executable, "-m", "evaluation", "mlm", "--model", str(out / "export"), "--data", str(corpus),
                        "--batches", "3", "--batch-size", "4", "--out", str(tmp_path / "mlm.json")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    scored = json.loads((tmp_path / "mlm.json").read_text())
    for g in ("yeast", "fly", "yeast_heldout"):
        for k in ("mlm_loss", "router_compression_0"):
            assert scored[f"{g}/{k}"] == pytest.approx(summary[f"valid/{g}/{k}"], rel=1e-4)


@pytest.fixture(scope="module")
def species_export(tmp_path_factory):
    """An untrained tiny model embedding the species yeast and fly, the embedding large enough to
    move the router's decisions (after a few training steps it would still be near zero) and small
    enough to leave it chunking (it cuts ~40 % of positions; at std 0.5 the species vector would
    swamp the bases and leave one chunk per window)."""
    from .test_model import tiny
    model = tiny("species=[yeast,fly]")
    torch.nn.init.normal_(model.species_embed.weight, std=0.1)
    return model.save_pretrained(tmp_path_factory.mktemp("species") / "export")


def test_segment_gives_each_genome_its_chunk_statistics_under_its_own_species(corpus, species_export, tmp_path,
                                                                              capsys):
    import csv

    from evaluation.__main__ import main as eval_cli
    gtf = shared_file("ncbi_softmasked_small_chroms/DmelanDM6_4.gtf.gz")
    args = ["segment", "--model", str(species_export), "--data", str(corpus), "--count", "6", "--gtf", f"fly={gtf}"]
    capsys.readouterr()
    assert eval_cli(args + ["--out", str(tmp_path / "x")]) == 2
    assert re.search(r"genome 'yeast_heldout' .* --species names the one to use", capsys.readouterr().err)
    assert eval_cli(["segment", "--model", str(species_export), "--fasta", str(shared_file(YEAST)),
                     "--out", str(tmp_path)]) == 2
    assert "embeds the species ['yeast', 'fly']: name one (--species)" in capsys.readouterr().err
    tables = {}
    for species in ("yeast", "fly"):  # what the genome the model does not know is read as
        assert eval_cli(args + ["--species", species, "--out", str(tmp_path / species)]) == 0
        tables[species] = {(r["group"], r["stage"], r["region"]): r
                           for r in csv.DictReader(open(tmp_path / species / "chunk_lengths.csv"))}
    rows = tables["yeast"]
    assert {g for g, _, _ in rows} == {"yeast", "fly", "yeast_heldout"}
    assert {reg for g, _, reg in rows if g == "fly"} == {"all", "repeat", "non-repeat", "exon", "non-exon"}
    assert {reg for g, _, reg in rows if g == "yeast"} == {"all", "repeat", "non-repeat"}
    for key in rows:  # the genomes the model knows read as themselves; the other as --species says
        assert (rows[key] == tables["fly"][key]) == (key[0] != "yeast_heldout") or key[2] != "all", key
    for g in ("yeast", "fly", "yeast_heldout"):
        r0, r1 = rows[(g, "0", "all")], rows[(g, "1", "all")]
        assert int(r0["windows"]) == 6 and int(r1["chunks"]) <= int(r0["chunks"]) <= 6 * 512
        # the router's own ratio: stage 0 per base, stage 1 per stage-0 chunk; the mean length is its inverse
        assert float(r0["ratio"]) == pytest.approx(int(r0["chunks"]) / (6 * 512))
        assert float(r1["ratio"]) == pytest.approx(int(r1["chunks"]) / int(r0["chunks"]))
        assert float(r0["mean_bp"]) == pytest.approx(1 / float(r0["ratio"]))
        assert float(r0["mean_bp_95lo"]) < float(r0["mean_bp"]) < float(r0["mean_bp_95hi"])
        assert (r0["vs_first_bp"] == "") == (g == "yeast")  # the first group is the reference of the others
    assert float(rows[("fly", "0", "all")]["vs_first_bp"]) == pytest.approx(
        float(rows[("fly", "0", "all")]["mean_bp"]) - float(rows[("yeast", "0", "all")]["mean_bp"]))
    assert int(rows[("fly", "0", "exon")]["chunks"]) > 0
    plain = {}  # one genome's own shard set names no species: --species does, whatever its directory is called
    for species in ("yeast", "fly"):
        assert eval_cli(["segment", "--model", str(species_export), "--data", str(corpus / "yeast"), "--count", "6",
                         "--species", species, "--out", str(tmp_path / f"plain_{species}")]) == 0
        plain[species] = {(r["stage"], r["region"]): r for r in csv.DictReader(open(tmp_path / f"plain_{species}" /
                                                                                   "chunk_lengths.csv"))}
    assert plain["yeast"][("0", "all")]["chunks"] == rows[("yeast", "0", "all")]["chunks"]  # the same windows
    assert plain["fly"][("0", "all")]["chunks"] != rows[("yeast", "0", "all")]["chunks"]
    for name in ("chunk_lengths.png", "segmentation_yeast.png", "segmentation_fly.png", "segmentation_yeast_heldout.png"):
        assert (tmp_path / "yeast" / name).stat().st_size > 5000, name


def test_mlm_and_suites_read_each_genome_and_task_as_its_species(corpus, species_export, tmp_path):
    """A species-embedding model is never run without a species: `eval mlm` maps a corpus's genomes
    to the model's species by name, a suite reads each task as its organism (or unknown_species),
    and the species it was read as is part of what a re-run compares."""
    from evaluation.finetune import FinetuneConfig, evaluate
    from evaluation.mlm import mlm_loss
    from evaluation.suite import SuiteConfig, run_suite
    from evaluation.formats import load_gue
    from evaluation.tasks import EvalDataError, Task
    from dnachunker import DNAChunker
    model = DNAChunker.from_pretrained(species_export)
    with pytest.raises(EvalDataError, match=r"genome\(s\) \['yeast_heldout'\] are not among the model's species"):
        mlm_loss(model, str(corpus), batches=1, batch_size=4)
    yeast_only = str(corpus / "yeast")  # one genome's shard set: the species is the caller's to name
    with pytest.raises(EvalDataError, match="name one, the genome's"):
        mlm_loss(model, yeast_only, batches=1, batch_size=4)
    losses = {s: mlm_loss(model.set_species(s), yeast_only, batches=2, batch_size=4)["mlm_loss"] for s in ("yeast", "fly")}
    assert losses["yeast"] != losses["fly"]

    h3 = load_gue(shared_file("gue_from_DeepGene/EMP/H3"))
    task = Task(h3.name, h3.train[:60], h3.test[:40], h3.valid[:20])
    with pytest.raises(EvalDataError, match=r"embeds the species \['yeast', 'fly'\]: name one, the task's"):
        evaluate(str(species_export), task, FinetuneConfig(mode="probe", epochs=1, seeds=[0]))

    suite_yaml = tmp_path / "suite.yaml"
    suite_yaml.write_text(f"""name: two_organisms
mode: probe
seeds: [0]
epochs: 1
max_train: 60
max_test: 40
max_valid: 20
species: human
tasks:
  - {{column: histone, format: gue, path: {shared_file('gue_from_DeepGene/EMP/H3')}, species: yeast}}
  - {{column: promoters, format: gue, path: {shared_file('gue_from_DeepGene/prom/prom_300_tata')}}}
""")
    out = tmp_path / "eval"
    with pytest.raises(EvalDataError, match=r"task promoters: its organism \(human\) is not among the model's species"):
        run_suite(str(species_export), SuiteConfig.load(suite_yaml), out)
    assert not out.exists() or not any(out.iterdir())  # stopped before the first task, not after it
    first = run_suite(str(species_export), SuiteConfig.load(suite_yaml, ["unknown_species=fly"]), out)
    assert {c: r["species"] for c, r in first.items()} == {"histone": "yeast", "promoters": "fly"}
    assert "histone as yeast, promoters as fly" in (out / "summary.md").read_text()
    keys = {c: json.loads((out / f"{c}.json").read_text())["key"] for c in first}
    again = run_suite(str(species_export), SuiteConfig.load(suite_yaml, ["unknown_species=yeast"]), out)
    assert json.loads((out / "histone.json").read_text())["key"] == keys["histone"]  # kept: read as yeast both times
    assert json.loads((out / "promoters.json").read_text())["key"] != keys["promoters"]  # re-run as the other species
    assert again["promoters"]["species"] == "yeast"
