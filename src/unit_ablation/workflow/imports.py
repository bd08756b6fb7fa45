"""The third-party packages a stage can import: its script and its package closure (no torch).

A rule's conda env must provide every one of them; `tests/project/test_conda_envs.py` derives the check from
these imports, so the envs cannot drift from the code. Imports inside functions count (they run when
the function does); imports in `if TYPE_CHECKING:` blocks do not (they never run).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from unit_ablation.workflow.code_hash import PACKAGE, module_closure, runtime_imports

# Provided without the env listing them: the package itself, and Snakemake, whose script runner
# injects the `snakemake` object (a script does not import it, but a helper may name its types).
PROVIDED = frozenset({PACKAGE, "snakemake"})


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports that the file can run (`from PIL import Image` -> PIL)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in runtime_imports(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif node.module and node.level == 0:  # a relative import stays inside the package
            names.add(node.module.partition(".")[0])
    return names


def is_third_party(name: str) -> bool:
    return name not in sys.stdlib_module_names and name not in PROVIDED


def third_party_importers(script: Path, package_dir: Path) -> dict[str, list[Path]]:
    """Each third-party top-level module the script's closure can import -> the files importing it."""
    script, package_dir = Path(script), Path(package_dir)
    importers: dict[str, list[Path]] = {}
    for path in [script, *module_closure(script, package_dir)]:
        for name in sorted(top_level_imports(path)):
            if is_third_party(name):
                importers.setdefault(name, []).append(path)
    return importers


def third_party_imports(script: Path, package_dir: Path) -> set[str]:
    """Top-level names of the third-party modules the script and its package closure can import
    (not the standard library, the package itself or snakemake)."""
    return set(third_party_importers(script, package_dir))
