"""The conda envs (`--software-deployment-method conda`) provide what each rule's code imports.

Derived from the code, so it cannot drift: each rule's script and the package modules of its import
closure (function-level and lazy imports included, `if TYPE_CHECKING:` blocks excluded) name the
third-party modules the rule can import, and the rule's env must provide every one of them, directly
or through the run dependencies of its packages below. Conda is not needed: the check is static.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from unit_ablation.workflow.imports import third_party_importers, third_party_imports

from support.paths import PROJECT_ROOT

PACKAGE_DIR = PROJECT_ROOT / "src" / "unit_ablation"
ENV_DIR = PROJECT_ROOT / "envs"
RULE_FILES = [PROJECT_ROOT / "Snakefile", *sorted((PROJECT_ROOT / "rules").glob("*.smk"))]

# Import name -> the conda-forge packages that provide it, where the names differ (any one will do).
# Only the names that occur (or are tested below).
CONDA_PACKAGES = {
    "torch": {"pytorch"},
    "PIL": {"pillow"},
    "yaml": {"pyyaml"},
    "matplotlib": {"matplotlib-base", "matplotlib"},
}
# Run dependencies of conda-forge packages (their recipes' `run:` requirements) that count as
# providing a package to an env. Minimal, and only what is certain; when in doubt an env lists the
# package itself (pytorch is left out: the stages get numpy from the env, not from it).
RUN_DEPENDS = {
    "torchvision": {"pytorch", "numpy", "pillow"},
    "matplotlib": {"matplotlib-base"},
    "matplotlib-base": {"numpy", "pillow"},
    "pandas": {"numpy"},
    "scipy": {"numpy"},
}
# Optional extras: third-party packages that a stage's closure may import although its env lacks
# them (e.g. behind a guard that names the missing package), each with why. Empty on purpose:
# - timm (`timm:` models) is a planned workflow feature, so a stage that imports it gets it in its env;
# - captum (attribution baselines) is for tests and benchmarks only; see TEST_ONLY.
OPTIONAL_EXTRAS: dict[str, str] = {}
# Packages for tests and benchmarks only: no stage may import them and no rule env may carry them.
TEST_ONLY = {"captum": "attribution baselines in tests and benchmarks, not part of any result"}
# Rules that run no code (no script, shell, run, wrapper or notebook), with why they need no env.
TARGET_RULES = {"all": "the default target: collects the results, runs nothing"}
ACTIONS = ("script", "shell", "run", "wrapper", "notebook", "cwl")


@dataclass
class Rule:
    name: str
    file: Path
    directives: dict[str, str] = field(default_factory=dict)  # name -> first line of its value

    def path(self, directive: str) -> Path:
        """A directive's file, relative to the rule's file as Snakemake resolves it."""
        value = self.directives[directive]
        try:
            relative = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pytest.fail(f"rule {self.name}: {directive}: {value} is no literal path; teach this test")
        return (self.file.parent / relative).resolve()

    def __repr__(self) -> str:
        return self.name


def parse_rules(path: Path) -> list[Rule]:
    """The rules of a Snakefile, with the first line of each directive's value (static, no config:
    rules in both branches of an `if` count)."""
    lines = path.read_text().splitlines()
    rules = []
    for start, line in enumerate(lines):
        header = re.match(r"(\s*)(?:rule|checkpoint)\s+(\w+)\s*:", line)
        if not header:
            continue
        rule, indent, body = Rule(header[2], path), len(header[1]), None
        for number in range(start + 1, len(lines)):
            text = lines[number]
            depth = len(text) - len(text.lstrip())
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            if depth <= indent:
                break
            body = depth if body is None else body
            directive = re.fullmatch(r"(\w+):\s*(.*)", text.strip())
            if depth == body and directive:
                value = directive[2] or next(
                    (later.strip() for later in lines[number + 1 :] if later.strip()), ""
                )
                rule.directives[directive[1]] = value
        rules.append(rule)
    return rules


RULES = [rule for path in RULE_FILES for rule in parse_rules(path)]
SCRIPT_RULES = [rule for rule in RULES if "script" in rule.directives]


def env_packages(env: Path) -> set[str]:
    """The conda package names an env file lists (`pytorch=2.14.1` -> pytorch)."""
    names = set()
    for spec in yaml.safe_load(env.read_text())["dependencies"]:
        assert isinstance(spec, str), f"{env.name}: {spec!r}: this test reads conda specs only"
        names.add(re.match(r"[A-Za-z0-9_.-]+", spec.split("::")[-1])[0].lower())
    return names


def with_run_dependencies(packages: set[str]) -> set[str]:
    provided, pending = set(), list(packages)
    while pending:
        package = pending.pop()
        if package not in provided:
            provided.add(package)
            pending.extend(RUN_DEPENDS.get(package, ()))
    return provided


def unprovided(imports: set[str], packages: set[str]) -> set[str]:
    """The imported top-level modules that the conda packages (and their run dependencies) don't
    provide, optional extras aside."""
    provided = with_run_dependencies(packages)
    return {
        name
        for name in imports
        if name not in OPTIONAL_EXTRAS and not (CONDA_PACKAGES.get(name, {name.lower()}) & provided)
    }


def relative(path: Path) -> str:
    return path.resolve().relative_to(PROJECT_ROOT).as_posix()


def test_the_rule_files_parse_into_rules():
    names = [rule.name for rule in RULES]
    assert len(SCRIPT_RULES) >= 20 and len(names) == len(set(names))
    assert {"ablate", "gather", "plot_layer", "summarize", "decode_images", "prepare_data"} <= set(names)
    for path in RULE_FILES:  # rules this test cannot read: teach it first
        assert not re.search(r"^\s*(use\s+rule|module)\s", path.read_text(), re.MULTILINE), path.name


def test_rules_without_a_script_run_nothing():
    no_script = {rule.name: rule for rule in RULES if rule not in SCRIPT_RULES}
    for rule in no_script.values():
        actions = set(ACTIONS) & set(rule.directives)
        assert not actions, f"rule {rule.name} runs {actions}: teach this test what it imports"
    assert set(no_script) == set(TARGET_RULES)


@pytest.mark.parametrize("rule", SCRIPT_RULES, ids=str)
def test_rule_has_log_and_a_conda_env(rule):
    assert {"log", "conda"} <= set(rule.directives), f"rule {rule.name} lacks log: or conda:"
    env, script = rule.path("conda"), rule.path("script")
    assert env.parent == ENV_DIR and env.suffix == ".yaml" and env.exists(), f"{rule.name}: {env}"
    assert script.parent == PROJECT_ROOT / "scripts" and script.exists(), f"{rule.name}: {script}"


@pytest.mark.parametrize("rule", SCRIPT_RULES, ids=str)
def test_rule_env_provides_every_third_party_import(rule):
    importers = third_party_importers(rule.path("script"), PACKAGE_DIR)
    env = rule.path("conda")
    missing = unprovided(set(importers), env_packages(env))
    where = {name: [relative(path) for path in importers[name]] for name in sorted(missing)}
    assert not missing, f"rule {rule.name}: envs/{env.name} does not provide {where}"
    assert not set(TEST_ONLY) & set(importers), f"rule {rule.name} imports a test-only package"


@pytest.mark.parametrize("env", sorted(ENV_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_env_file_is_conda_forge_with_pinned_dependencies(env):
    data = yaml.safe_load(env.read_text())
    assert isinstance(data, dict) and set(data) >= {"channels", "dependencies"}, env.name
    assert data["channels"] == ["conda-forge", "nodefaults"], env.name
    specs = data["dependencies"]
    assert isinstance(specs, list) and all(isinstance(spec, str) for spec in specs), env.name
    assert any(re.fullmatch(r"python=3\.\d+", spec) for spec in specs), f"{env.name}: pin python"
    assert all("=" in spec for spec in specs), f"{env.name}: pin every package like requirements.txt"
    assert not set(TEST_ONLY) & env_packages(env), f"{env.name} carries a test-only package"


@pytest.mark.parametrize("env", sorted(ENV_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_env_is_used_and_lists_only_what_its_rules_import(env):
    rules = [rule for rule in SCRIPT_RULES if rule.path("conda") == env]
    assert rules, f"no rule uses envs/{env.name}"
    imports = set().union(*(third_party_imports(rule.path("script"), PACKAGE_DIR) for rule in rules))
    needed = {package for name in imports for package in CONDA_PACKAGES.get(name, {name.lower()})}
    unused = env_packages(env) - needed - {"python"}
    assert not unused, f"envs/{env.name} lists {unused}, which none of {rules} imports"


def test_the_check_knows_names_run_dependencies_and_extras():
    assert unprovided({"yaml", "PIL", "numpy"}, {"pyyaml", "torchvision"}) == set()
    assert unprovided({"matplotlib", "numpy"}, {"matplotlib-base"}) == set()
    assert unprovided({"pandas", "scipy"}, {"numpy"}) == {"pandas", "scipy"}
    assert unprovided({"torch", "timm", "captum"}, {"pytorch"}) == {"timm", "captum"}


@pytest.fixture
def stage(tmp_path: Path) -> tuple[Path, Path]:
    """A script and a small package: module imports, lazy and TYPE_CHECKING imports, a subpackage."""
    package = tmp_path / "unit_ablation"
    files = {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/zoo.py": """
            from typing import TYPE_CHECKING
            import numpy as np

            if TYPE_CHECKING:
                import captum
                from unit_ablation.models import typed_only
            else:
                import tqdm

            def build(name):
                import timm  # lazy: only for timm: models
                from PIL import Image
                return timm.create_model(name)
            """,
        "models/typed_only.py": "import sklearn\n",
        "report.py": """
            import typing
            import json, os.path
            if typing.TYPE_CHECKING:
                import pandas
            """,
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text.replace("\n            ", "\n").lstrip())
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\nimport snakemake\nfrom unit_ablation.models.zoo import build\n"
        "from unit_ablation import report\nimport yaml.constructor\n"
    )
    return script, package


def test_closure_imports_count_lazy_ones_and_skip_type_checking(stage):
    script, package = stage
    assert third_party_imports(script, package) == {"numpy", "tqdm", "timm", "PIL", "yaml"}
    importers = third_party_importers(script, package)
    assert importers["timm"] == [package / "models" / "zoo.py"] and importers["yaml"] == [script]
