"""Tokenizations as one interface (dnachunker.tokenization): the registry, the baselines' cuts,
and the guarantee that no cut depends on a base under [MASK], in training and at inference."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_pipeline.__main__ import main as pipeline
from data_pipeline.fitting import fit_tokenization
from data_pipeline.loader import PretrainLoader
from dnachunker import DNAChunker, DNAChunkerConfig, tokenization
from dnachunker.masking import bert_mask
from dnachunker.tokenization import TOKENIZATIONS, Tokenization
from dnachunker.tokenizer import MASK, batch_encode, decode

from .conftest import ROOT
from .test_model import CONFIGS


def tiny(*overrides):
    torch.manual_seed(0)
    return DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml", *overrides))


def bpe_cfg(vocab=256):
    return DNAChunkerConfig.load(CONFIGS / "tiny.yaml", "tokenization=bpe", f"tokenization_args.vocab_size={vocab}")


@pytest.fixture(scope="module")
def bpe(chr20_windows):
    """A 256-token BPE fitted on real chr20 windows."""
    return tokenization.fit(bpe_cfg(), chr20_windows(1000, 60))


def test_fixed_kinds_cut_stage_0_only_and_imply_their_switches(chr20_windows, bpe):
    seqs = chr20_windows(300, 2)
    learned = tiny()
    for kind, args in (("single", {}), ("kmer", {"k": 6}), ("bpe", {"vocab_size": 4096, "fit_samples": 20000})):
        model = tiny(f"tokenization={kind}")
        if kind == "bpe":
            model.tokenization = bpe
        assert model.cfg.tokenization_args == args  # resolved: every argument recorded
        assert not model.cfg.ratio_loss and model.cfg.mask_protection == (kind == "bpe")
        assert model.num_parameters() == learned.num_parameters()  # the same backbone
        for seq, (s0, s1) in zip(seqs, model.segment(seqs)):
            assert np.array_equal(s0, model.tokenization.starts(seq)) and np.array_equal(s1, s0)
    assert np.array_equal(tiny("tokenization=kmer").tokenization.starts(seqs[0]), np.arange(0, 300, 6))
    assert np.array_equal(tiny("tokenization=single").tokenization.starts(seqs[0]), np.arange(300))
    with pytest.raises(ValueError, match="'given' is now 'bpe'"):
        tiny("tokenization=given")
    with pytest.raises(ValueError, match="tokenization_args for 'kmer'.*size"):
        tiny("tokenization=kmer", "tokenization_args.size=3")


def test_fixed_cuts_always_start_a_chunk_at_position_zero():
    model = tiny("tokenization=single")
    ids = batch_encode(["ACGTACGTACGTACGT"]).input_ids
    given = torch.zeros_like(ids, dtype=torch.bool)
    given[0, [5, 9]] = True  # no cut at 0
    with torch.no_grad():
        out = model(ids, boundaries=given)
    assert out.stages[0].chunk_start[0][out.stages[0].chunk_valid[0]].long().tolist() == [0, 5, 9]
    with pytest.raises(ValueError, match="fixed tokenizations"):
        tiny()(ids, boundaries=given)


def _swap_masked(original: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Every base under a [MASK] replaced by another base (A->C->G->T->A); nothing else changed."""
    out = original.clone()
    under = masked == MASK
    out[under] = (original[under] - 2 + 1) % 4 + 2
    return out


def test_bpe_cuts_do_not_depend_on_the_bases_under_mask_on_real_chr20(chr20_windows, bpe):
    batch = batch_encode(chr20_windows(1024, 16))

    def masked(ids):
        return bert_mask(ids, batch.valid, torch.Generator().manual_seed(3))[0]  # same positions each time
    ids = masked(batch.input_ids)
    other = _swap_masked(batch.input_ids, ids)
    assert (other != batch.input_ids).sum() > 1500  # ~12 % of 16 kbp changed
    cuts, cuts_other = bpe.boundaries(ids, batch.valid), bpe.boundaries(masked(other), batch.valid)
    assert torch.equal(cuts, cuts_other)
    mask = ids == MASK  # every [MASK] is a one-base token: a cut at it and right after it
    assert cuts[mask].all() and cuts[:, 1:][mask[:, :-1]].all()
    # the check can fail: cutting the unmasked sequence (the earlier scheme) lets the hidden bases
    # move the cuts in almost every window
    leaky = [not np.array_equal(bpe.starts(decode(a)), bpe.starts(decode(b))) for a, b in zip(batch.input_ids, other)]
    assert np.mean(leaky) > 0.9


class _BeforeG(Tokenization):
    """A kind a user might add: a cut before every visible G (fitted: nothing; saved: a marker)."""
    kind = "before_g"
    implies = {"ratio_loss": False}
    file = "before_g.json"

    def boundaries(self, input_ids, valid):
        return valid & (input_ids == 4)

    def save(self, directory):
        (Path(directory) / self.file).write_text(json.dumps({"kind": self.kind}))

    @classmethod
    def load(cls, args, directory):
        assert json.loads((Path(directory) / cls.file).read_text()) == {"kind": cls.kind}
        return cls(args)


def test_a_new_tokenization_is_one_class_and_one_registry_entry(monkeypatch, tmp_path, chr20_windows):
    monkeypatch.setitem(TOKENIZATIONS, "before_g", _BeforeG)  # the registry entry
    model = tiny("tokenization=before_g")
    seq = chr20_windows(200, 1)[0]
    s0, s1 = model.segment([seq])[0]
    expected = np.union1d([0], [i for i, c in enumerate(seq.upper()) if c == "G"])
    assert np.array_equal(s0, expected) and np.array_equal(s1, s0)
    loaded = DNAChunker.from_pretrained(model.save_pretrained(tmp_path / "x"))
    assert isinstance(loaded.tokenization, _BeforeG)
    assert np.array_equal(loaded.segment([seq])[0][0], expected)


def test_fitting_on_shards_is_deterministic_and_the_bpe_command_uses_it(tmp_path, train_shards):
    from evaluation.__main__ import main as eval_cli
    cfg = DNAChunkerConfig.load(CONFIGS / "tiny.yaml", "tokenization=bpe", "tokenization_args.vocab_size=128",
                                "tokenization_args.fit_samples=300")
    fit_tokenization(cfg, train_shards, tmp_path / "a")
    fit_tokenization(cfg, train_shards, tmp_path / "b")
    assert eval_cli(["bpe", "--shards", str(train_shards), "--vocab-size", "128", "--max-samples", "300",
                     "--out", str(tmp_path / "c")]) == 0
    files = [(tmp_path / d / "bpe.json").read_bytes() for d in "abc"]
    assert files[0] == files[1] == files[2] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["bpe.json"]


def test_weights_of_an_earlier_version_are_refused_naming_what_changed(tmp_path):
    from safetensors.torch import load_file, save_file
    path = tiny().save_pretrained(tmp_path / "old")
    state = load_file(path / "model.safetensors")
    save_file({**state, "norm.weight": torch.ones(32)}, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors.*norm.weight \(the second final norm"):
        DNAChunker.from_pretrained(path)
    (path / "config.yaml").write_text((path / "config.yaml").read_text().replace("tokenization: learned",
                                                                                "tokenization: given"))
    with pytest.raises(ValueError, match=r"config.yaml.*'given' is now 'bpe'"):
        DNAChunker.from_pretrained(path)


@pytest.mark.slow
def test_reshard_with_other_bases_under_mask_trains_on_the_same_cuts(tmp_path, chr20_prefix):
    """The issue's scenario as a user would run it: shard 64 kbp of real chr20, fit a 256-token BPE,
    take the first 8 training batches' samples, re-shard with only the bases under [MASK] changed:
    the training cuts are identical (the earlier scheme changed them in 24 of 24 samples)."""
    piece = chr20_prefix[1_000_000:1_064_000]

    def shard(seq: str, name: str) -> Path:
        fasta = tmp_path / f"{name}.fa"
        fasta.write_text(">chr20\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
        out = tmp_path / name
        assert pipeline(["all", f"fasta={fasta}", f"out={out}", "window.length=1024", "workers=1",
                         "splits.train=[chr20:0-56000]", "splits.valid=[chr20:56000-64000]", "splits.test=[]"]) == 0
        return out
    first = shard(piece, "first")
    cfg = bpe_cfg(256)
    cuts = fit_tokenization(cfg, first, tmp_path / "bpe")

    def batches(root):
        loader = PretrainLoader(str(root), "train", micro_batch_size=1, seed=0, tokenization=cuts)
        it = iter(loader)
        out = [next(it) for _ in range(8)]
        it.close()
        return out
    before = batches(first)
    changed = list(piece)
    for b in before:
        meta = loader_meta(first, int(b["index"]))
        for j in torch.nonzero(b["input_ids"][0] == MASK).flatten().tolist():
            g = meta["start"] + (1023 - j if bool(b["reverse"]) else j)  # reverse-complemented samples
            c = changed[g]
            new = "ACGT"[("ACGT".index(c.upper()) + 1) % 4]
            changed[g] = new.lower() if c.islower() else new
    assert sum(a != b for a, b in zip(piece, changed)) > 800
    after = batches(shard("".join(changed), "second"))
    for b, a in zip(before, after):
        assert torch.equal(b["input_ids"], a["input_ids"])  # what the model sees: unchanged
        assert not torch.equal(b["labels"], a["labels"])    # what it must predict: changed
        assert torch.equal(b["boundaries"], a["boundaries"])

    def unmasked(b):  # the window before masking
        return decode(torch.where(b["labels"] >= 0, b["labels"], b["input_ids"])[0])
    moved = [not np.array_equal(cuts.starts(unmasked(b)), cuts.starts(unmasked(a))) for b, a in zip(before, after)]
    assert sum(moved) >= 7  # the earlier scheme (cuts of the unmasked window) would have moved them


def loader_meta(root: Path, index: int) -> dict:
    from data_pipeline.reader import ShardSplit
    return ShardSplit(root, "train")[index]["meta"]


@pytest.mark.slow
def test_training_batch_cuts_equal_the_exported_models_cuts(tmp_path, train_shards, monkeypatch):
    """A real BPE pretraining run (DeepSpeed, fitted at start-up): the cuts its loader feeds equal
    what the export computes from the same masked ids, natively and through Transformers."""
    import subprocess
    import sys

    out = tmp_path / "bpe_run"
    r = subprocess.run([sys.executable, "-m", "train.pretrain", "--config", "configs/pretrain/tiny_chr20.yaml",
                        f"out_dir={out}", f"data.root={train_shards}", "data.micro_batch_size=4",
                        "data.num_workers=1", "max_steps=2", "val_every=0", "val_batches=1", "model.max_len=512",
                        "model.tokenization=bpe", "model.tokenization_args.vocab_size=128",
                        "model.tokenization_args.fit_samples=300"],
                       cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp",
                                                                      "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    from train.config import load_config
    cfg = load_config(out / "config.yaml", [])
    assert cfg.tokenization_from == str(out) and (out / "bpe.json").is_file()
    assert (out / "export" / "bpe.json").read_bytes() == (out / "bpe.json").read_bytes()
    loader = PretrainLoader(str(train_shards), "train", micro_batch_size=4, seed=0,
                            tokenization=tokenization.load(cfg.model, out))
    it = iter(loader)
    batch = next(it)
    it.close()
    model = DNAChunker.from_pretrained(out / "export").eval()
    assert torch.equal(model.tokenization.boundaries(batch["input_ids"], batch["valid"]), batch["boundaries"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    import dnachunker.hf  # noqa: F401
    from transformers import AutoModelForMaskedLM
    hf = AutoModelForMaskedLM.from_pretrained(out / "export").eval()
    with torch.no_grad():
        ref = model(batch["input_ids"], batch["valid"], boundaries=batch["boundaries"])
        own = model(batch["input_ids"], batch["valid"])
        via_hf = hf(input_ids=batch["input_ids"], attention_mask=batch["valid"].long())
    from dnachunker.tokenizer import MASK, PAD
    predicted = torch.tensor([t for t in range(ref.logits.shape[-1]) if t not in (PAD, MASK)])
    assert torch.equal(own.logits, ref.logits)  # the Transformers model masks only [PAD] and [MASK]
    assert torch.equal(via_hf.logits[..., predicted], ref.logits[..., predicted])
    assert via_hf.logits[..., [PAD, MASK]].eq(float("-inf")).all()
    (out / "export" / "bpe.json").unlink()
    with pytest.raises(FileNotFoundError, match="no bpe.json"):
        DNAChunker.from_pretrained(out / "export")


def test_the_worked_example_of_a_new_tokenization_runs_as_documented(tmp_path, chr20_windows, monkeypatch):
    """docs/architecture.md's example, executed: registered, its cuts by hand, a [MASK] always its
    own run (nothing about the base under it), a model with it trains a step and exports, and the
    export cuts alike."""
    import re

    from dnachunker import tokenization
    from dnachunker.masking import bert_mask
    from dnachunker.tokenizer import batch_encode
    monkeypatch.setattr(tokenization, "TOKENIZATIONS", dict(tokenization.TOKENIZATIONS))  # undone after the test
    doc = (ROOT / "docs" / "architecture.md").read_text()
    code = re.search(r"### Adding a tokenization, end to end.*?```python\n(.*?)```", doc, re.S)[1]
    exec(compile(code, "docs/architecture.md", "exec"), {"__name__": "docs_example"})
    run = tokenization.TOKENIZATIONS["run"]
    cuts = run(run.Args(max_len=3)).starts("AAAAACCGTTTT")
    assert cuts.tolist() == [0, 3, 5, 7, 8, 11]  # AAA|AA|CC|G|TTT|T
    cfg = DNAChunkerConfig.load(CONFIGS / "tiny.yaml", "tokenization=run", "tokenization_args.max_len=4")
    assert cfg.mask_protection and not cfg.ratio_loss
    b = batch_encode(chr20_windows(256, 2))
    masked, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
    cut = tokenization.build(cfg).boundaries(masked, b.valid)  # on the ids the model sees
    hidden = masked == MASK
    after = torch.zeros_like(hidden)
    after[:, 1:] = hidden[:, :-1]
    # a [MASK] never joins a run of bases, either side: the cuts say nothing of the base under it
    assert cut[hidden & ~after].all() and cut[after & ~hidden & b.valid].all()
    torch.manual_seed(0)
    model = DNAChunker(cfg)
    loss = model(masked, b.valid, labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    again = DNAChunker.from_pretrained(model.save_pretrained(tmp_path / "export"))
    assert np.array_equal(again.tokenization.starts("AAAAACCGTTTT"), [0, 4, 5, 7, 8])
