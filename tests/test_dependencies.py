"""Every third-party module the project imports is declared in pyproject.toml: the package's own
code in its dependencies or an extra, the tests in the dev extra. Checked on every import
statement, lazy ones included, against what each installed distribution provides."""
import ast
import importlib.metadata
import re
import sys
import tomllib

from .conftest import ROOT
from .test_layering import ALLOWED

FIRST_PARTY = set(ALLOWED) | {"tests"}  # the project's packages, as the layering test knows them
# modules of the CUDA extra, which cannot be installed without CUDA: their distributions by name
NOT_INSTALLABLE_HERE = {"causal_conv1d": "causal-conv1d", "flash_attn": "flash-attn", "mamba_ssm": "mamba-ssm",
                        "selective_scan_cuda": "mamba-ssm", "triton": "triton"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda req: _norm(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])  # noqa: E731
    return {"core": {name(r) for r in project["dependencies"]},
            **{extra: {name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}}


def _third_party(paths) -> dict[str, str]:
    """module -> the first file:line that imports it."""
    found = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for n in names:
                top = n.split(".")[0]
                if top not in FIRST_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _distribution(module: str) -> set[str]:
    owners = importlib.metadata.packages_distributions().get(module, [])
    return {_norm(d) for d in owners} or {NOT_INSTALLABLE_HERE.get(module, module)}


def test_every_import_of_the_package_is_declared():
    declared = _declared()
    anywhere = set().union(*declared.values())
    files = [p for pkg in FIRST_PARTY - {"tests"} for p in sorted((ROOT / pkg).rglob("*.py"))]
    missing = [f"{where} imports {m} (distribution {', '.join(sorted(_distribution(m)))})"
               for m, where in sorted(_third_party(files).items()) if not _distribution(m) & anywhere]
    assert not missing, "undeclared in pyproject.toml:\n" + "\n".join(missing)


def test_every_import_of_the_tests_and_studies_is_in_dev_or_the_package():
    declared = _declared()
    usable = declared["core"] | declared["dev"]
    files = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "results").rglob("*.py"))
    missing = [f"{where} imports {m}" for m, where in sorted(_third_party(files).items())
               if m not in NOT_INSTALLABLE_HERE and not _distribution(m) & usable]
    assert not missing, "not in the dev extra nor the dependencies:\n" + "\n".join(missing)
