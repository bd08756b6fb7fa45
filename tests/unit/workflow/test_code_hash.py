"""Stage code hashes: which edits change them, and which package modules a script depends on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unit_ablation.spec.model_classes import MODEL_MODULES, model_module
from unit_ablation.spec.zoo_layers import TORCHVISION_ARCH
from unit_ablation.workflow import code_hash
from unit_ablation.workflow.code_hash import module_closure, stage_code_hash

from support.workflow_runs import PROJECT_ROOT

PACKAGE_DIR = PROJECT_ROOT / "src" / "unit_ablation"


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the package and one script, to edit."""
    shutil.copytree(PROJECT_ROOT / "src" / "unit_ablation", tmp_path / "unit_ablation")
    shutil.copy(PROJECT_ROOT / "scripts" / "plot_layer.py", tmp_path / "plot_layer.py")
    return tmp_path


def test_closure_follows_imports_through_modules(package):
    package_dir = package / "unit_ablation"
    closure = module_closure(package / "plot_layer.py", package_dir)
    names = {path.relative_to(package_dir).as_posix() for path in closure}
    # plot_layer.py imports warm_start, glue (which imports allocator and termination) and its stage, which
    # imports layer_figures and style; layer_figures imports correlation (which imports ranks);
    # each subpackage's __init__ runs first
    assert {
        "__init__.py",
        "workflow/__init__.py",
        "workflow/glue.py",
        "runtime/__init__.py",
        "runtime/termination.py",
        "runtime/allocator.py",
        "runtime/progress.py",
        "runtime/warm_start.py",
        "stages/__init__.py",
        "stages/plot_layer.py",
        "report/__init__.py",
        "report/layer_figures.py",
        "report/style.py",
        "analysis/__init__.py",
        "analysis/correlation.py",
        "analysis/ranks.py",
        "files/__init__.py",
        "files/writing.py",
        "spec/__init__.py",
        "spec/layer_spec.py",
    } == names


def test_the_ablation_script_needs_the_engine_but_not_the_plots_nor_a_model_class():
    closure = {
        path.relative_to(PACKAGE_DIR).as_posix()
        for path in module_closure(PROJECT_ROOT / "scripts" / "ablate.py", PACKAGE_DIR)
    }
    engine = {"stages/ablate.py", "engine/driver.py", "engine/ablation_engine.py", "engine/plans.py"}
    assert engine | {"engine/graph_split.py", "models/checkpoint.py"} <= closure
    # the checkpoint loader imports the model's class by name (spec.model_classes), image folders
    # are read only by decode_images
    unused = {"report/plots.py", "models/training.py", "analysis/claims.py", "models/fashion_alexnet.py"}
    unused |= {"models/torchvision_classifier.py", "data/image_files.py", "data/image_decode.py"}
    assert not unused & closure


def test_extra_modules_join_the_closure_with_their_own_imports():
    script = PROJECT_ROOT / "scripts" / "ablate.py"
    closure = set(module_closure(script, PACKAGE_DIR, [model_module(TORCHVISION_ARCH)]))
    models = PACKAGE_DIR / "models"
    assert {models / "torchvision_classifier.py", models / "normalize.py"} <= closure
    assert models / "fashion_alexnet.py" not in closure
    plain = stage_code_hash(script, PACKAGE_DIR)
    modules = set(MODEL_MODULES.values())  # timm and python models share one module
    hashes = {stage_code_hash(script, PACKAGE_DIR, [module]) for module in modules}
    assert len(hashes | {plain}) == len(modules) + 1
    with pytest.raises(ValueError, match="no such module"):
        module_closure(script, PACKAGE_DIR, ["unit_ablation.models.nothing"])


@pytest.mark.parametrize(
    ("file", "old", "new", "changes"),
    [
        ("plot_layer.py", "import sys\n", "import sys  # a comment\n\n\n", False),
        ("unit_ablation/report/style.py", "import math\n", "# why math\nimport math\n", False),
        (
            "unit_ablation/analysis/correlation.py",
            "import numpy as np\n",
            "import numpy as np\nEDITED = 1\n",
            True,
        ),
        ("plot_layer.py", "dpi=snakemake.params.dpi", "dpi=2 * snakemake.params.dpi", True),
        ("unit_ablation/models/training.py", "import torch\n", "import torch\nEDITED = 1\n", False),  # unused
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
    script, package_dir = PROJECT_ROOT / "scripts" / "gather.py", PACKAGE_DIR
    first = stage_code_hash(script, package_dir)
    assert first == stage_code_hash(script, package_dir) and len(first) == 16
    int(first, 16)


def test_a_resumed_ablation_fingerprints_the_engine_it_ran():
    from unit_ablation.stages import ablate

    closure = module_closure(Path(ablate.__file__), ablate.PACKAGE_DIR, [model_module("fmnist_alexnet")])
    ran = {PACKAGE_DIR / "engine" / "driver.py", PACKAGE_DIR / "models" / "fashion_alexnet.py"}
    assert ran <= {path.resolve() for path in closure}


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """The on-disk store of file facts in a temporary folder, with empty in-memory caches."""
    path = tmp_path / "store" / "__pycache__" / "code-hashes.json"
    monkeypatch.setattr(code_hash, "STORE", path)
    forget_this_process()
    yield path
    forget_this_process()


def forget_this_process() -> None:
    """What a new process (the next dry run, a SLURM job) starts from: only the store on disk."""
    code_hash._facts_of_version.cache_clear()
    code_hash._stored.cache_clear()
    code_hash._changed.clear()


def test_file_facts_are_kept_on_disk_and_read_again_after_an_edit(package, store, monkeypatch):
    script, package_dir = package / "plot_layer.py", package / "unit_ablation"
    first = stage_code_hash(script, package_dir)
    stored = json.loads(store.read_text())
    assert str(script.resolve()) in stored and str((package_dir / "report" / "style.py").resolve()) in stored

    forget_this_process()
    monkeypatch.setattr(code_hash, "normalized_source", lambda source: pytest.fail("a stored file was read"))
    assert stage_code_hash(script, package_dir) == first

    monkeypatch.undo()
    monkeypatch.setattr(code_hash, "STORE", store)
    forget_this_process()
    style = package_dir / "report" / "style.py"
    style.write_text(style.read_text() + "\nEDITED = True\n")
    assert stage_code_hash(script, package_dir) != first
    assert json.loads(store.read_text())[str(style.resolve())][2] != stored[str(style.resolve())][2]


def test_a_store_that_cannot_be_written_changes_no_hash(package, store, monkeypatch):
    script, package_dir = package / "plot_layer.py", package / "unit_ablation"
    expected = stage_code_hash(script, package_dir)
    blocker = store.parent.parent / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(code_hash, "STORE", blocker / "__pycache__" / "code-hashes.json")
    forget_this_process()
    assert stage_code_hash(script, package_dir) == expected
    assert code_hash._changed  # kept in memory; this process still reads each file once
