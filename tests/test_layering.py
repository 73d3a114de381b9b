"""Imports flow one way: dnachunker <- data_pipeline <- train <- studies <- slurm (launchers),
evaluation above the data pipeline; bench and tests on top. Checked on every import statement, lazy ones included."""
import ast

import pytest

from .conftest import ROOT

ALLOWED = {
    "dnachunker": set(),
    "data_pipeline": {"dnachunker"},
    "train": {"dnachunker", "data_pipeline"},
    "evaluation": {"dnachunker", "data_pipeline"},
    "studies": {"dnachunker", "data_pipeline", "train", "evaluation"},
    "slurm": {"dnachunker", "data_pipeline", "train", "evaluation", "studies"},
    "bench": {"dnachunker", "data_pipeline", "train", "evaluation"},
    "dnachunker_cli": {"dnachunker", "data_pipeline", "train", "evaluation", "studies", "bench"},
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


def _module(py) -> str:
    parts = list(py.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(py, modules: set[str]):
    """The project modules a file imports, lazy imports included (`from . import x` resolved)."""
    here = _module(py).split(".")
    package = here if py.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(py.read_text(), str(py))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                yield name


def test_the_import_graph_has_no_circle():
    files = {_module(py): py for package in ALLOWED for py in (ROOT / package).rglob("*.py")}
    graph = {m: {t for t in _targets(py, set(files)) if t != m and not m.startswith(t + ".")}
             for m, py in files.items()}  # a package's own __init__ runs first anyway: not an edge upward
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return path[path.index(t):] + [t] if t in path else [m, t]
            if not state.get(t) and (cycle := visit(t, path + [t])):
                return cycle
        state[m] = 2
        return None
    for m in sorted(graph):
        if not state.get(m) and (cycle := visit(m, [m])):
            raise AssertionError("import circle: " + " -> ".join(cycle))
