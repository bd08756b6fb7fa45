"""Stage code hashes: which edits change them, and which package modules a script depends on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from workflow_runs import PROJECT_ROOT

from unit_ablation.code_hash import module_closure, stage_code_hash


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the package and one script, to edit."""
    shutil.copytree(PROJECT_ROOT / "src" / "unit_ablation", tmp_path / "unit_ablation")
    shutil.copy(PROJECT_ROOT / "scripts" / "plot_layer.py", tmp_path / "plot_layer.py")
    return tmp_path


def test_closure_follows_imports_through_modules(package):
    names = {path.stem for path in module_closure(package / "plot_layer.py", package / "unit_ablation")}
    # plot_layer.py imports glue and plots; plots imports correlation, which imports agreement
    assert {"glue", "plots", "correlation", "agreement", "io", "layers", "progress", "__init__"} == names


def test_the_ablation_script_needs_the_engine_but_not_the_plots():
    closure = {
        path.stem
        for path in module_closure(
            PROJECT_ROOT / "scripts" / "ablate.py", PROJECT_ROOT / "src" / "unit_ablation"
        )
    }
    assert {"ablation", "engine", "plans", "graph_split", "models"} <= closure
    assert not {"plots", "training", "claims"} & closure


@pytest.mark.parametrize(
    ("file", "old", "new", "changes"),
    [
        ("plot_layer.py", "import sys\n", "import sys  # a comment\n\n\n", False),
        ("unit_ablation/plots.py", "import math\n", "# why math\nimport math\n", False),
        ("unit_ablation/correlation.py", "import logging\n", "import logging\nEDITED = 1\n", True),
        ("plot_layer.py", "dpi=snakemake.params.dpi", "dpi=2 * snakemake.params.dpi", True),
        ("unit_ablation/training.py", "import json\n", "import json\nEDITED = 1\n", False),  # not imported
    ],
)
def test_only_code_edits_in_the_closure_change_the_hash(package, file, old, new, changes):
    script, package_dir = package / "plot_layer.py", package / "unit_ablation"
    before = stage_code_hash(script, package_dir)
    path = package / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    assert (stage_code_hash(script, package_dir) != before) is changes


def test_hash_is_short_hex_and_stable():
    script, package_dir = PROJECT_ROOT / "scripts" / "gather.py", PROJECT_ROOT / "src" / "unit_ablation"
    first = stage_code_hash(script, package_dir)
    assert first == stage_code_hash(script, package_dir) and len(first) == 16
    int(first, 16)
