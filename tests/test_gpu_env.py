"""The GPU environment, checked where it cannot be built: exact pins of the [cuda] extra, the same
mamba-ssm as the CPU tier, the wheelhouse script and container recipes reading those pins, every
shell script parsing, and the build script stopping at its first unmet requirement with a message."""
import re
import subprocess
import tomllib

import pytest

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_cuda_extra_is_pinned_exactly_and_matches_the_cpu_tier():
    pins = dict(r.split("==") for r in PYPROJECT["optional-dependencies"]["cuda"])
    assert set(pins) == {"mamba-ssm", "causal-conv1d", "flash-attn"}
    assert all(re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", v) for v in pins.values()), pins
    cpu_tier = re.search(r"mamba-ssm==(\S+)", (ROOT / "scripts/install.sh").read_text())[1]
    assert cpu_tier == pins["mamba-ssm"], "the CPU tier must test the mamba-ssm the GPU environment installs"


def test_wheelhouse_script_and_containers_read_the_pins():
    torch = next(r for r in PYPROJECT["dependencies"] if r.startswith("torch=="))
    for recipe in ("containers/dnachunker.def", "containers/Dockerfile"):
        text = (ROOT / recipe).read_text()
        assert "scripts/build_wheels.sh" in text and "'.[cuda]'" in text, recipe
        sed = re.search(r"\$\((sed -n '[^']*') ", text)[1]  # the recipe's own way of reading the torch pin
        got = subprocess.run(f"{sed} pyproject.toml", shell=True, cwd=ROOT, capture_output=True, text=True).stdout
        assert got.strip() == torch.split("==")[1], recipe
    reader = re.search(r"<<'PYEOF'\n(.*?)PYEOF", (ROOT / "scripts/build_wheels.sh").read_text(), re.S)[1]
    got = subprocess.run(["python3", "-c", reader], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert got.split() == PYPROJECT["optional-dependencies"]["cuda"]


@pytest.mark.parametrize("script", sorted(p.relative_to(ROOT) for d in ("scripts", "slurm", ".ci")
                                          for p in (ROOT / d).glob("*") if p.suffix == ".sh" or p.name == "run"))
def test_shell_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("nvcc", [False, True])
def test_wheel_build_stops_at_the_first_unmet_requirement_naming_it(tmp_path, nvcc):
    """Without nvcc it says so; with one (a stand-in), this CPU build of torch is the next stop."""
    if nvcc:
        (tmp_path / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8'\n")
        (tmp_path / "nvcc").chmod(0o755)
    r = subprocess.run(["bash", "scripts/build_wheels.sh", str(tmp_path / "wheels")], cwd=ROOT, capture_output=True,
                       text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2 and not (tmp_path / "wheels").exists(), r.stderr
    assert r.stderr.startswith("build_wheels: ") and len(r.stderr.splitlines()) == 1
    assert ("has a CPU build of torch 2.13.0" if nvcc else "nvcc not found") in r.stderr


def test_gpu_check_rehearsed_here_stops_at_its_first_failed_check(tmp_path):
    """On this CPU machine with a stand-in nvidia-smi naming an H100: the check that fails first
    is the environment's (a CPU build of torch), said in one line and in the report, exit 1.
    Without any nvidia-smi: exit 2."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\ncase "$*" in *-L*) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: x)";; '
                   '*driver*) echo "name, driver_version, memory.total"; echo "NVIDIA H100 80GB HBM3, 580.1, 81559 MiB";; '
                   '*) echo "NVIDIA H100 80GB HBM3";; esac\n')
    smi.chmod(0o755)
    report = tmp_path / "report.md"
    env = {"PATH": f"{smi.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(ROOT / ".venv/bin/python")}
    r = subprocess.run(["bash", "scripts/gpu_check.sh", str(report)], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"gpu_check: FAILED: environment: see the last lines above (report: {report})"
    text = report.read_text()
    assert text.startswith("# GPU check: NVIDIA H100 80GB HBM3 x 1") and "2. tests/test_cuda.py" not in text
    assert "is a CPU build: install the CUDA build" in text and "**FAILED: environment" in text
    r = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "none.md")], cwd=ROOT, capture_output=True,
                       text=True, env={**env, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "no NVIDIA GPU here" in r.stderr
