"""One configuration system: schema <- YAML <- overrides, the model as a section of the training
config, resolved once; errors name where they come from."""
import re

import pytest

from data_pipeline.config import PipelineConfig
from data_pipeline.errors import DataError
from dnachunker.config import DNAChunkerConfig
from dnachunker.configlib import ConfigError, load_structured, to_yaml
from studies.config import SweepConfig, load_sweep
from train.config import load_config, training_changes

from .conftest import ROOT

PRETRAIN = ROOT / "configs" / "pretrain" / "tiny_chr20.yaml"


def test_model_path_is_read_once_and_overrides_apply_on_top(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(PRETRAIN, ["model.target_ratio=[0.3,0.5]", "model.mamba.d_state=8"])
    tiny = DNAChunkerConfig.load(ROOT / "configs" / "model" / "tiny.yaml")
    assert cfg.model.d_model == tiny.d_model and cfg.model.target_ratio == [0.3, 0.5] and cfg.model.mamba.d_state == 8
    # the file is not read again later: editing it does not change the loaded config
    text = to_yaml(cfg)
    assert "target_ratio:\n  - 0.3\n  - 0.5" in text and "d_model:" in text and "configs/model" not in text
    # a later model path replaces the whole section (the schema's defaults fill what it omits)
    other = tmp_path / "m.yaml"
    other.write_text("main_layers: 3\n")
    cfg = load_config(PRETRAIN, ["model.target_ratio=[0.3,0.5]", f"model={other}", "model.n_heads=4"])
    assert cfg.model.main_layers == 3 and cfg.model.target_ratio == [0.5, 0.5] and cfg.model.d_model == [256, 512, 672]


def test_errors_name_the_file_or_override(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match="override 'model.no_such_key=1'"):
        load_config(PRETRAIN, ["model.no_such_key=1"])
    bad = tmp_path / "bad_model.yaml"
    bad.write_text("d_model: seven\n")
    with pytest.raises(ConfigError, match="bad_model.yaml"):
        load_config(PRETRAIN, [f"model={bad}"])
    with pytest.raises(ConfigError, match="override 'model.main_mlp=relu': .*main_mlp: must be one of gelu, swiglu"):
        load_config(PRETRAIN, ["model.main_mlp=relu"])
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(PRETRAIN, ["model=nope.yaml"])
    with pytest.raises(DataError, match="window.length"):
        PipelineConfig.load(None, ["fasta=x", "out=y", "window.length=0"])
    with pytest.raises(ConfigError, match="override 'no_such=1': Key 'no_such' not in 'SweepConfig'"):
        load_structured(SweepConfig, None, ["no_such=1"], what="sweep config")


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1e-3", "optim.lr: must be > 0, got -0.001"),
    ("data.micro_batch_size=0", "data.micro_batch_size: must be >= 1, got 0"),
    ("grad_accum=0", "grad_accum: must be >= 1"), ("checkpoint.every=0", "checkpoint.every: must be >= 1"),
    ("max_steps=-5", "max_steps: must be >= 1"), ("checkpoint.keep=0", "checkpoint.keep: must be >= 1"),
    ("data.mask_prob=1.5", r"data.mask_prob: must be in \(0,1\), got 1.5"),
    ("data.repeat_weight=-1", "data.repeat_weight: must be >= 0"),
    ("optim.min_lr_ratio=5", r"optim.min_lr_ratio: must be in \[0,1\], got 5.0"),
    ("data.num_workers=-1", "data.num_workers: must be >= 0"),
    ("optim.betas=[0.9,1.2]", r"optim.betas: must be in \[0,1\)"),
    ("model.mamba.d_conv=7", r"model.mamba.d_conv: must be in \[2,4\]"),
    ("model.tokenization=kmer model.tokenization_args.k=0", "tokenization_args.k for 'kmer' must be >= 1"),
    ("optim.decay_steps=0", "optim.decay_steps: must be >= 1"),
    ("max_steps=100 export_steps=[50,100]", r"export_steps: every step must be in \[1, max_steps=100\)")])
def test_every_key_is_range_checked_naming_the_override(monkeypatch, override, message):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=f"override {re.escape(repr(override.split()[-1]))}: invalid pretraining "
                                          f"config: .*{message}"):
        load_config(PRETRAIN, override.split())


@pytest.mark.parametrize("override,message", [("window.stride=0", "window.stride: must be >= 1"),
                                              ("window.max_n_fraction=2", r"window.max_n_fraction: must be in \[0,1\]")])
def test_pipeline_keys_are_range_checked(override, message):
    with pytest.raises(DataError, match=f"override '{override}': invalid pipeline config: {message}"):
        PipelineConfig.load(None, ["fasta=x", "out=y", override])


def test_training_changes_against_a_checkpoint_name_the_keys(monkeypatch):
    monkeypatch.chdir(ROOT)
    saved = {"config": to_yaml(load_config(PRETRAIN, [])), "world_size": 2}
    changes = lambda *o, world=2: training_changes(load_config(PRETRAIN, list(o)), saved, world)  # noqa: E731
    assert changes("model.activation_checkpointing=main", "model.mamba.recompute=false", "max_steps=99999",
                   "checkpoint.every=7") == []
    assert changes("model.target_ratio=[0.3,0.5]", "model.ratio_loss_weight=0.1") == [
        "model.ratio_loss_weight: 0.03 -> 0.1", "model.target_ratio: [0.5, 0.5] -> [0.3, 0.5]"]
    micro = load_config(PRETRAIN, []).data.micro_batch_size
    assert changes(f"data.micro_batch_size={2 * micro}", world=1) == []  # half the ranks, twice the micro-batch
    assert changes("optim.warmup_steps=7", world=1) == [
        "optim.warmup_steps: 30 -> 7", f"global batch (ranks x data.micro_batch_size x grad_accum): {2 * micro} -> "
        f"{micro} windows"]
    assert training_changes(load_config(PRETRAIN, []), {"config": "model: configs/model/tiny.yaml\n"}, 1) == []


def test_a_grid_override_replaces_the_sweep_files_grid(monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = ROOT / "configs" / "sweep" / "alpha_depth.yaml"
    assert set(load_sweep(spec, []).grid) == {"model.target_ratio", "model.main_layers"}
    cfg = load_sweep(spec, ["grid={model.target_ratio: [[0.5, 0.5]]}", "slurm.time_min=5"])
    assert cfg.grid == {"model.target_ratio": [[0.5, 0.5]]} and cfg.slurm.time_min == 5


def test_the_scaling_sweep_resolves_budgets_seeds_and_one_schedule(monkeypatch, tmp_path):
    """Every row runs once per pretraining seed (its initialisation and data order), each stopping
    at the largest budget on one schedule and exported at the smaller ones; the control has a seed
    each; baselines are rows."""
    from studies.points import resolve
    monkeypatch.chdir(ROOT)
    points = resolve(load_sweep(ROOT / "configs/sweep/scaling.yaml", []), tmp_path, [])
    got = {p.name: (p.label, p.kind, p.seed, p.cfg and (p.cfg.max_steps, p.cfg.export_steps, p.cfg.optim.decay_steps))
           for p in points}
    for seed in (0, 1, 2):
        assert got[f"p00_base__seed-{seed}"] == ("DNAChunker", "pretrain", seed, (500, [60, 180], 500))
        assert got[f"p02_tokenization-kmer__k-6__seed-{seed}"][:3] == ("6-mer", "pretrain", seed)
        assert got[f"control__seed-{seed}"][1] == "control"
    assert [(p.cfg.seed, p.cfg.data.seed) for p in points if p.name == "p00_base__seed-1"] == [(1, 1)]
    assert got["kmer_lr"] == ("k-mer LR (baseline)", "baseline", None, None) and "cnn" in got and "onehot" in got
    assert [str(d.relative_to(tmp_path)) for _, d, _ in points[0].evals()] == [
        "p00_base__seed-0/eval/step000060", "p00_base__seed-0/eval/step000180", "p00_base__seed-0/eval"]


def test_the_paper_scale_scaling_sweep_resolves_to_2b_tokens_per_row(monkeypatch, tmp_path):
    from studies.points import resolve
    from train.optim import grad_accum as _grad_accum
    monkeypatch.chdir(ROOT)
    points = resolve(load_sweep(ROOT / "configs/sweep/scaling_hg38.yaml", []), tmp_path, [])
    runs = [p for p in points if p.kind == "pretrain"]
    assert len(runs) == 9 and {p.seed for p in runs} == {0, 1, 2}
    cfg = runs[0].cfg
    tokens = cfg.data.micro_batch_size * _grad_accum(cfg, 8) * 8 * cfg.model.max_len * cfg.max_steps
    assert cfg.export_steps == [100, 300] and 1.95e9 < tokens < 2.05e9


@pytest.mark.parametrize("override,message", [
    ("model.target_ratio=0.5", "model.target_ratio: takes a list, e.g. [0.5, 0.5]"),
    ("max_steps=abc", "max_steps: Value 'abc' of type 'str' could not be converted to Integer")])
def test_a_wrong_type_is_one_line_naming_the_key(monkeypatch, override, message):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError) as e:
        load_config(PRETRAIN, [override])
    assert str(e.value) == f"override {override!r}: {message}"


def test_the_wait_policy_is_set_before_torch_or_a_script_that_imported_torch_first_is_told():
    import subprocess
    import sys
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    probe = "import os; print(os.environ.get('GOMP_SPINCOUNT'))"
    first = subprocess.run([sys.executable, "-c", f"import dnachunker, torch; {probe}"], capture_output=True, text=True,
                           env=env, cwd=ROOT)
    assert first.stdout.strip() == "3000" and "imported before dnachunker" not in first.stderr
    late = subprocess.run([sys.executable, "-c", f"import torch, dnachunker; {probe}"], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert late.stderr.count("torch was imported before dnachunker") == 1 and "GOMP_SPINCOUNT=3000" in late.stderr
    chosen = subprocess.run([sys.executable, "-c", "import torch, dnachunker"], capture_output=True, text=True,
                            env={**env, "OMP_WAIT_POLICY": "PASSIVE"}, cwd=ROOT)
    assert "imported before dnachunker" not in chosen.stderr
