"""Imports flow one way: dnachunker <- data_pipeline <- train <- slurm, evaluation above the data
pipeline; bench and tests on top. Checked on every import statement, lazy ones included."""
import ast

import pytest

from .conftest import ROOT

ALLOWED = {
    "dnachunker": set(),
    "data_pipeline": {"dnachunker"},
    "train": {"dnachunker", "data_pipeline"},
    "evaluation": {"dnachunker", "data_pipeline"},
    "slurm": {"dnachunker", "data_pipeline", "train", "evaluation"},
    "bench": {"dnachunker", "data_pipeline", "train", "evaluation"},
    "dnachunker_cli": {"dnachunker", "data_pipeline", "train", "evaluation", "slurm", "bench"},
}


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    bad = [f"{py.relative_to(ROOT)}:{line} imports {mod}"
           for py in sorted((ROOT / package).rglob("*.py"))
           for mod, line in _imports(py)
           if mod in ALLOWED and mod != package and mod not in ALLOWED[package]]
    assert not bad, "\n".join(bad)
