"""tests/robustness/FAULTS.md lists the faults the tests try: every row names a real test, and every
fault test of the reliability files has its row."""

from __future__ import annotations

import ast
import re

from support.paths import FAULTS, PROJECT_ROOT

# Files whose every test is a fault or bad input, so each must be listed
FAULT_FILES = (
    "tests/unit/workflow/test_config_check.py",
    "tests/robustness/test_bad_files.py",
    "tests/robustness/test_untrusted_checkpoints.py",
    "tests/robustness/test_resume.py",
    "tests/robustness/test_termination.py",
    "tests/robustness/test_disk_full.py",
    "tests/robustness/test_interrupted_runs.py",
)
ROW = re.compile(r"^\|(?P<fault>[^|]+)\|(?P<outcome>[^|]+)\|\s*`(?P<test>tests/[\w/]+\.py::\w+)`\s*\|$")


def listed_tests() -> list[str]:
    rows = [ROW.match(line) for line in FAULTS.read_text().splitlines() if line.startswith("| ")]
    rows = [row for row in rows if row and row["fault"].strip() != "Fault or bad input"]
    assert all(row["fault"].strip() and row["outcome"].strip() for row in rows)
    return [row["test"] for row in rows]


def defined_tests(path: str) -> set[str]:
    """Names of the test functions a test file defines."""
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    return {node.name for node in functions if node.name.startswith("test_")}


def test_every_row_names_an_existing_test():
    listed = listed_tests()
    assert len(listed) >= 30
    missing = [test for test in listed if test.split("::")[1] not in defined_tests(test.split("::")[0])]
    assert missing == []


def test_every_fault_test_has_a_row():
    listed = set(listed_tests())
    unlisted = [
        f"{path}::{name}"
        for path in FAULT_FILES
        for name in sorted(defined_tests(path))
        if f"{path}::{name}" not in listed
    ]
    assert unlisted == []
