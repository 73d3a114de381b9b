"""Published studies cannot drift from their data: every results/<study>/README.md is remade by
its tables.py from the files beside it (the same text, block by block), and holds no decimal
number outside its generated blocks and code."""
import importlib.util
import re

import pytest

from studies.readme import BLOCK, prose, stale

from .conftest import ROOT

STUDIES = sorted(p.parent for p in (ROOT / "results").glob("*/README.md"))


def _blocks(study):
    spec = importlib.util.spec_from_file_location(f"tables_{study.name}", study / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.blocks()


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_every_generated_block_is_what_the_files_give(study):
    assert (study / "tables.py").is_file(), f"{study.name}: no tables.py to generate its README's numbers"
    text = (study / "README.md").read_text()
    assert BLOCK.search(text), f"{study.name}: README.md marks no generated block"
    assert not stale(text, _blocks(study)), f"{study.name}: run python results/{study.name}/tables.py"


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_no_hand_written_decimal_numbers(study):
    found = re.findall(r".{0,30}\d\.\d.{0,30}", prose((study / "README.md").read_text()))
    assert not found, f"{study.name}: numbers outside generated blocks: {found}"


def test_a_stale_block_is_found():
    from studies.readme import render
    text = "a\n<!-- begin: t -->\nold\n<!-- end: t -->\nb\n"
    assert stale(text, {"t": "new"}) == ["t"] and stale(render(text, {"t": "new"}), {"t": "new"}) == []
    with pytest.raises(ValueError, match="differ"):
        render(text, {"u": "x"})
