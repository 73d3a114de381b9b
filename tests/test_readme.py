"""The README's examples run as written: its Python block, and every command of its quick tour,
capped (a tiny model instead of runs/tiny_chr20/export, small inputs, suites on a few sequences),
each ending in exit 0 and writing what it says."""
import gzip
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_train import tiny_run

pytestmark = pytest.mark.slow
README = (ROOT / "README.md").read_text()
EXPORT = "runs/tiny_chr20/export"
SUITE_CAPS = ["seeds=[0]", "epochs=1", "max_train=24", "max_test=24", "max_valid=24"]


def quick_tour() -> list[list[str]]:
    block = README.split("## Quick tour", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.startswith("dnachunker ")]


def test_the_quick_tour_has_every_command_it_shows():
    assert [c[1] for c in quick_tour()] == ["pretrain", "embed", "score-variants", "tracks", "eval", "eval", "eval",
                                          "eval"]


def _inputs(tmp_path, chr20_prefix):
    windows = [chr20_prefix[1_000_000 + 700 * i:1_000_000 + 700 * i + 700] for i in range(3)]
    (tmp_path / "my.fa").write_text("".join(f">s{i}\n{w}\n" for i, w in enumerate(windows)))
    (tmp_path / "ref.fa").write_text(">chr20\n" + chr20_prefix[1_000_000:1_010_000] + "\n")
    ref = [chr20_prefix[1_000_000 + p - 1].upper() for p in (2000, 4000, 6000)]
    lines = [f"chr20\t{p}\t.\t{r}\t{'A' if r != 'A' else 'C'}" for p, r in zip((2000, 4000, 6000), ref)]
    (tmp_path / "my.vcf.gz").write_bytes(gzip.compress(("#CHROM\tPOS\tID\tREF\tALT\n" + "\n".join(lines) + "\n").encode()))
    return {"my.fa": tmp_path / "my.fa", "ref.fa": tmp_path / "ref.fa", "my.vcf.gz": tmp_path / "my.vcf.gz"}


@pytest.mark.parametrize("index", range(8))
def test_each_quick_tour_command_runs(index, tmp_path, pretrained, train_shards, chr20_prefix):
    cmd = quick_tour()[index]
    files = _inputs(tmp_path, chr20_prefix)
    args = [str(pretrained) if a == EXPORT else str(files.get(a, a)) for a in cmd[1:]]
    if "--out" in args:
        i = args.index("--out") + 1
        args[i] = str(tmp_path / args[i])
    if args[0] == "pretrain":
        args = [a for a in args if not a.startswith("out_dir=")] + tiny_run(tmp_path / "mine", train_shards) + [
            "max_steps=2", "checkpoint.every=2"]
    elif args[:2] == ["eval", "suite"]:
        args += SUITE_CAPS
    elif args[0] == "tracks":  # ref.fa here is 10 kbp of chr20
        args[args.index("--region") + 1] = "chr20:1-2,000"
    elif args[:2] == ["eval", "segment"]:
        args += ["--count", "2", "--out", str(tmp_path / "seg")]
    dnachunker = Path(sys.executable).parent / "dnachunker"  # the console script, as a user runs it
    r = subprocess.run([str(dnachunker), *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{shlex.join(cmd)}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr


def test_the_python_block_runs(tmp_path, pretrained):
    code = re.search(r"```python\n(.*?)```", README, re.S)[1].replace(EXPORT, str(pretrained))
    code += "\nassert stage0[0] == 0 and len(stage1) <= len(stage0) and tok('ACGT').input_ids == [2, 3, 4, 5]\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
