"""Decisions made once, in the type that owns them, checked from the source (as test_layers.py holds the layers).

    what kind of base       scaling/grid/bases.py       PresetBase, CheckpointBase (parse_base tells them apart)
    what kind of data       scaling/tasks/source.py     FamilySource; scaling/tasks/dataset.py DatasetSource
                            (scaling.grid.spec.DataSpec.data_source tells them apart)

Anywhere else, code asks the base or the source; a line that asks either which kind it is fails here.
"""

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scaling"
KIND_TESTS = {
    "a base's kind": re.compile(r"\bis_checkpoint\b|\.checkpoint is (not )?None|startswith\(HF_PREFIX\)"
                                r"|isinstance\([^)]*\b(PresetBase|CheckpointBase)\b"),
    "the data's kind": re.compile(r"\bdataset is (not )?None\b|\bdata\.source\b|\bspec\.dataset\b"
                                  r"|isinstance\([^)]*\b(FamilySource|DatasetSource)\b"),
}
OWNERS = {"grid/bases.py", "tasks/source.py", "tasks/dataset.py"}  # the types that own the decisions


def kind_tests(text: str) -> list[tuple[int, str, str]]:
    """(line number, what it asks, the line) of every kind test in a module's text."""
    return [(number, what, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
            for what, pattern in KIND_TESTS.items() if pattern.search(line)]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")))
def test_no_module_asks_a_base_or_a_data_source_its_kind(path):
    if path in OWNERS:
        return
    found = kind_tests((PACKAGE / path).read_text())
    assert not found, f"scaling/{path} asks {found[0][1]} at line {found[0][0]} ({found[0][2]}): ask the type instead"


def test_the_checker_sees_a_kind_test():
    # The rules are only as good as their patterns: the branches this test replaced are caught.
    for line in ("if cell.base.is_checkpoint:", "if spec.dataset is not None:", "what = 'groups' if data.source else 'f'",
                 "grader = LenientGrader(solved=spec.dataset is None)", "isinstance(base, CheckpointBase)"):
        assert kind_tests(line), line
    assert all((PACKAGE / owner).is_file() for owner in OWNERS)
