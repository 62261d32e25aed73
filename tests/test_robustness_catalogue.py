"""docs/robustness.md cannot drift from the suite: every test it names exists (the function in its
file, and a named case among that file's parametrize ids), and it keeps its at least 40 rows, each
naming a test."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "robustness.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)(?:\[([^\]`]+)\])?`")
ROW = re.compile(r"^\| *\d+ *\|", re.MULTILINE)


@cache
def _module(path: str) -> tuple[set[str], set[str]]:
    """(test functions defined at the top of the file, every string constant in it)."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    return functions, strings


def _rows() -> list[str]:
    return [line for line in CATALOGUE.read_text(encoding="utf-8").splitlines() if ROW.match(line)]


def test_the_catalogue_has_at_least_40_rows_each_with_a_test():
    rows = _rows()
    assert len(rows) >= 40
    assert [row for row in rows if not REFERENCE.search(row)] == []
    numbers = [int(row.split("|")[1]) for row in rows]
    assert numbers == list(range(1, len(rows) + 1))  # numbered in order, none twice


def missing_tests(text: str) -> list[str]:
    """The test references in `text` that name no test of the suite."""
    missing = []
    for path, name, case in REFERENCE.findall(text):
        if not (REPO / path).is_file():
            missing.append(f"{path} (no such file)")
            continue
        functions, strings = _module(path)
        if name not in functions:
            missing.append(f"{path}::{name}")
        elif case and case not in strings:
            missing.append(f"{path}::{name}[{case}] (no such case id)")
    return missing


def test_every_test_the_catalogue_names_exists():
    assert missing_tests(CATALOGUE.read_text(encoding="utf-8")) == []


def test_the_checker_notices_a_test_that_is_not_there():
    here = "tests/test_robustness_catalogue.py"
    assert missing_tests(f"`{here}::test_every_test_the_catalogue_names_exists`") == []
    assert missing_tests(f"`{here}::test_gone`") == [f"{here}::test_gone"]
    assert missing_tests("`tests/gone.py::test_a`") == ["tests/gone.py (no such file)"]
    case = "tests/engine/test_bad_input.py::test_a_bad_run_is_one_line_exit_2_and_writes_nothing"
    assert missing_tests(f"`{case}[cut-short]` `{case}[no-such-case]`") == [
        f"{case}[no-such-case] (no such case id)"
    ]
