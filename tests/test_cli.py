"""One command line: `dnachunker COMMAND`, every flag with help text and its default, `--out` and
`--model` meaning one thing everywhere, and errors that say what was meant."""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnachunker_cli import COMMANDS, main
from dnachunker_cli.bench import BENCHES

from .conftest import ROOT, shared_file

HELP_CALLS = [[c, "--help"] for c in COMMANDS if c not in ("eval", "bench")]
HELP_CALLS += [["eval", sub, "--help"] for sub in ("finetune", "suite", "mlm", "bpe", "segment", "robustness")]
HELP_CALLS += [["bench", b, "--help"] for b in BENCHES]


def test_top_level_help_names_every_command_subcommand_and_benchmark(capsys):
    """What `dnachunker --help` lists is what exists: every eval subcommand of its parser, every
    bench/NAME.py with a main."""
    import ast
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    benches = sorted(p.stem for p in (ROOT / "bench").glob("*.py")
                     if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(p.read_text()).body))
    assert sorted(BENCHES) == benches and all(b in text for b in benches)
    from evaluation.__main__ import COMMANDS as EVAL
    assert all(sub in text for sub in EVAL) and all(c in text for c in COMMANDS)
    assert {argv[1] for argv in HELP_CALLS if argv[0] == "eval"} == set(EVAL)


@pytest.mark.parametrize("argv", HELP_CALLS, ids=" ".join)
def test_every_flag_has_help_and_shows_its_default(argv, monkeypatch, capsys):
    seen = []
    plain = argparse._ActionsContainer.add_argument

    def recording(self, *args, **kwargs):
        action = plain(self, *args, **kwargs)
        seen.append(action)
        return action
    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", recording)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: dnachunker {' '.join(argv[:-1])}")
    missing = [a.option_strings or a.dest for a in seen if not a.help and a.dest != "help"]
    assert not missing, f"flags without help: {missing}"
    for a in seen:  # a flag with a default shows it
        if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.help != argparse.SUPPRESS:
            assert "(default:" in text, a.option_strings


def test_the_console_script_is_installed_and_unknown_commands_are_named():
    r = subprocess.run([str(Path(sys.executable).with_name("dnachunker")), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "dnachunker eval COMMAND" in r.stdout
    assert main(["nope"]) == 2


def test_outputs_default_outside_results():
    text = "\n".join((ROOT / p).read_text() for p in ("evaluation/__main__.py", "dnachunker_cli/use.py"))
    assert 'default="results/' not in text


def test_a_run_directory_given_as_model_says_which_export_to_use(tmp_path, capsys):
    from dnachunker_cli.use import main as use
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000002").mkdir(parents=True)
    (run / "checkpoints" / "step_00000002" / "trainer_state.json").write_text("{}")
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nACGT\n")
    assert use(["embed", "--model", str(run), "--fasta", str(fasta), "--out", str(tmp_path / "e.npz")]) == 2
    assert f"that is a training run's out_dir; use {run / 'export'}" in capsys.readouterr().err
    assert use(["embed", "--model", str(run / "checkpoints" / "step_00000002"), "--fasta", str(fasta),
                "--out", str(tmp_path / "e.npz")]) == 2
    assert "that is a DeepSpeed checkpoint (code, not weights" in capsys.readouterr().err


def test_task_format_and_nt_task_are_checked_against_what_is_there():
    from evaluation.formats import load_task
    from evaluation.tasks import EvalDataError
    with pytest.raises(EvalDataError, match="--format gue expects a directory with train.csv.*looks like --format gbseq"):
        load_task("gue", shared_file("ai4h_hub_gb_nt/enhancers_cohn"))
    with pytest.raises(EvalDataError, match="no rows for task 'nope'; the tasks in it: H2AFZ, .*promoter_all"):
        load_task("nt", shared_file("ai4h_hub_gb_nt/nucleotide_transformer/train.tsv.gz"), task="nope")


def test_every_command_checks_where_it_writes_before_it_computes(tmp_path, pretrained, capsys):
    """A missing output folder is said at once, naming the folder, with nothing computed; output
    folders are made before the work (and a file where a folder should go is said at once too)."""
    import time

    from dnachunker_cli.use import main as use
    from evaluation.__main__ import main as eval_cli
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nACGTACGTAC\n")
    missing = tmp_path / "outputs"
    for argv in (["embed", "--model", str(pretrained), "--fasta", str(fasta), "--out", str(missing / "e.npz")],
                 ["score-variants", "--model", str(pretrained), "--vcf", str(tmp_path / "v.vcf"), "--fasta",
                  str(fasta), "--out", str(missing / "s.tsv")]):
        t0 = time.time()
        assert use(argv) == 2 and time.time() - t0 < 5
        assert capsys.readouterr().err.strip() == f"error: {missing}: no such folder, for the output {argv[-1]} " \
                                                  "(create it first)"
    (tmp_path / "taken").write_text("a file, not a folder")
    assert eval_cli(["segment", "--model", str(pretrained), "--fasta", str(fasta), "--out",
                     str(tmp_path / "taken" / "seg")]) == 2
    assert f"for the output folder {tmp_path / 'taken' / 'seg'}" in capsys.readouterr().err
    assert eval_cli(["mlm", "--model", str(pretrained), "--data", str(tmp_path), "--out", str(missing / "m.json")]) == 2
    assert f"error: {missing}: no such folder" in capsys.readouterr().err


def test_a_folder_named_dnachunker_beside_a_script_does_not_shadow_the_package(tmp_path):
    """A clone in ./dnachunker and a script beside it: the installed package is what imports."""
    (tmp_path / "dnachunker" / "docs").mkdir(parents=True)
    (tmp_path / "use.py").write_text("from dnachunker import DNAChunker\nprint(DNAChunker.__module__)\n")
    r = subprocess.run([sys.executable, "use.py"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "dnachunker.model", r.stderr[-500:]


def test_an_all_n_record_is_embedded_with_a_warning_naming_it(tmp_path, pretrained, capsys):
    from dnachunker_cli.use import main as use
    fasta = tmp_path / "x.fa"
    fasta.write_text(">real\nACGTACGTAC\n>gap\nNNNNNNNNNN\n")
    assert use(["embed", "--model", str(pretrained), "--fasta", str(fasta), "--out", str(tmp_path / "e.npz")]) == 0
    assert f"warning: {fasta}: 1 record(s) hold no A, C, G or T ('gap')" in capsys.readouterr().err


def test_a_one_seed_suite_table_shows_one_number_under_the_runs_name(tmp_path, pretrained):
    """No `± 0.000` for a single seed; an export's row is named after its run, not its path."""
    from evaluation.suite import SuiteConfig, row_label, run_suite
    run = tmp_path / "my_run"
    shutil.copytree(pretrained, run / "export")
    suite = SuiteConfig.load(ROOT / "configs/eval/paper_columns.yaml",
                             ["tasks=[promoters]", "seeds=[0]", "max_train=60", "max_test=40", "epochs=1"])
    run_suite(run / "export", suite, tmp_path / "eval")
    text = (tmp_path / "eval" / "summary.md").read_text()
    row = next(x for x in text.splitlines() if x.startswith("| my_run |"))
    assert "±" not in row and "one seed" in text
    assert row_label(run / "exports" / "step000060") == "my_run, step 60"


@pytest.mark.parametrize("old,new", [("slurm.sweep", "studies.sweep"), ("slurm.publish", "studies.publish")])
def test_the_moved_study_commands_still_run_under_their_old_names_with_a_note(old, new):
    r = subprocess.run([sys.executable, "-m", old, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and f"{old} moved to {new}" in r.stderr and f"python -m {old}" in r.stdout
