"""The package's shape: subpackages by concern, small modules, no import circles, a torch-free
engine boundary (function-level imports count; `if TYPE_CHECKING:` blocks do not)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unit_ablation.files.formats import FORMATS
from unit_ablation.spec.layer_spec import LAYER_PATTERN, LAYER_SPEC_PATTERN, parse_layer_spec
from unit_ablation.spec.model_names import seed_stem, trained_model_name
from unit_ablation.spec.plans import PLAN_CHOICES
from unit_ablation.workflow.code_hash import imported_modules, module_file
from unit_ablation.workflow.config_schema import RENAMED_KEYS

from support.workflow_runs import PROJECT_ROOT

PACKAGE_DIR = PROJECT_ROOT / "src" / "unit_ablation"
MAX_LINES = 450
SUBPACKAGES = {"analysis", "data", "engine", "files", "models", "report", "runtime", "spec", "stages"}
SUBPACKAGES |= {"api", "tools", "workflow"}
# `python -m unit_ablation.<name>`: command lines kept at the top level wherever their code lives
ENTRY_POINTS = {"bench", "describe", "plan_cost", "paper_rate", "fetch_data", "fetch_weights"}
# Subpackages imported at Snakefile parse time, on the submit host and in every cluster job
TORCH_FREE = ("spec", "workflow")


def modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(["unit_ablation", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of the file."""
    graph = {}
    for path in modules():
        targets = set()
        for name in imported_modules(path):
            found = module_file(name, PACKAGE_DIR)
            if found is not None:
                targets.add(dotted(found))
        graph[dotted(path)] = targets - {dotted(path)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_is_subpackages_by_concern_and_entry_points():
    top = {path.stem for path in PACKAGE_DIR.glob("*.py")} - {"__init__"}
    assert top == ENTRY_POINTS
    assert {path.name for path in PACKAGE_DIR.iterdir() if (path / "__init__.py").exists()} == SUBPACKAGES
    for name in ENTRY_POINTS:  # thin: the code lives in a subpackage
        assert len((PACKAGE_DIR / f"{name}.py").read_text().splitlines()) < 12


@pytest.mark.parametrize("path", modules(), ids=lambda path: path.relative_to(PACKAGE_DIR).as_posix())
def test_no_module_is_over_the_line_limit(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE_DIR)} has {lines} lines"


def test_no_import_circle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_engine_imports_nothing_from_the_models():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("unit_ablation.engine."):
            assert not {t for t in targets if t.startswith("unit_ablation.models")}, module


@pytest.mark.parametrize("subpackage", TORCH_FREE)
def test_parse_time_subpackages_never_import_torch(subpackage):
    names = [dotted(path) for path in sorted((PACKAGE_DIR / subpackage).rglob("*.py"))]
    code = (
        f"import sys, importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
        "heavy = ('torch', 'torchvision', 'pandas', 'scipy', 'matplotlib')\n"
        "heavy = sorted(name for name in heavy if name in sys.modules)\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# --- one source per fact ----------------------------------------------------------------------------


def test_the_schema_accepts_exactly_the_plan_names():
    schema = yaml.safe_load((PROJECT_ROOT / "schemas" / "config.schema.yaml").read_text())
    text = yaml.safe_dump(schema)
    assert text.count("closed-form") == 1, "the plan names appear once in the schema"
    enums = [node["enum"] for node in walk(schema) if isinstance(node, dict) and "enum" in node]
    found = [enum for enum in enums if "naive" in enum]
    assert found == [list(PLAN_CHOICES)]


def walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("conv5", True), ("features.11@rot3", True), ("layer4+mean", True), ("conv5@rot0+zero", True)]
    + [("conv5@rot", False), ("conv5+half", False), ("conv 5", False), ("conv5@rotx", False)],
)
def test_the_layer_spec_wildcard_and_the_parser_share_one_grammar(name, valid):
    assert (re.fullmatch(LAYER_SPEC_PATTERN, name) is not None) is valid
    if valid:
        assert parse_layer_spec(name).name == name
    else:
        with pytest.raises(ValueError):
            parse_layer_spec(name)
    common = (PROJECT_ROOT / "rules" / "common.smk").read_text()
    assert "layer_spec=LAYER_SPEC_PATTERN," in common and "layer=LAYER_PATTERN," in common


@pytest.mark.parametrize(
    ("name", "is_layer"), [("conv5", True), ("features.11", True), ("conv5@rot0", False)]
)
def test_the_layer_wildcard_takes_a_layer_and_no_spec(name, is_layer):
    assert (re.fullmatch(LAYER_PATTERN, name) is not None) is is_layer
    if is_layer:
        assert parse_layer_spec(name).layer == name


def test_renamed_config_keys_lead_from_a_gone_key_to_a_schema_key():
    schema = yaml.safe_load((PROJECT_ROOT / "schemas" / "config.schema.yaml").read_text())

    def in_schema(path: str) -> bool:
        node = schema
        for part in path.split("."):
            node = node.get("properties", {}).get(part)
            if node is None:
                return False
        return True

    for old, (new, version) in RENAMED_KEYS.items():
        assert not in_schema(old) and in_schema(new), (old, new)
        assert 1 < version <= FORMATS["study config"], f"{old}: renamed in a format the recorded config lacks"


# --- one rule, one script, one stage module ---------------------------------------------------------------


def script_rules() -> dict[str, Path]:
    """Rule name -> its script, from the rule files (every rule with a `script:`)."""
    rules = {}
    for path in [PROJECT_ROOT / "Snakefile", *sorted((PROJECT_ROOT / "rules").glob("*.smk"))]:
        for block in re.split(r"^\s*(?=rule \w+:)", path.read_text(), flags=re.M)[1:]:
            script = re.search(r"^\s*script:\s*\n\s*\"([^\"]+)\"", block, re.M)
            if script:
                rules[re.match(r"rule (\w+):", block)[1]] = (path.parent / script[1]).resolve()
    return rules


def test_every_rule_runs_its_own_stage_module():
    """rules/x.smk's rule `name` runs scripts/name.py, which calls unit_ablation.stages.name; every
    stage module is a rule's."""
    rules = script_rules()
    assert len(rules) >= 20
    for name, script in rules.items():
        assert script == PROJECT_ROOT / "scripts" / f"{name}.py", f"rule {name} runs {script.name}"
        modules = {module for module in imported_modules(script) if module_file(module, PACKAGE_DIR)}
        stages = {module for module in modules if module.startswith("unit_ablation.stages.")}
        assert stages == {f"unit_ablation.stages.{name}"}, f"scripts/{name}.py imports {stages}"
    stage_modules = {path.stem for path in (PACKAGE_DIR / "stages").glob("*.py")} - {"__init__"}
    assert stage_modules == set(rules)


def test_model_names_are_built_and_parsed_by_one_module():
    name = trained_model_name("bn", 12)
    assert name == "fmnist-alexnet-bn-s12" and seed_stem(name) == "fmnist-alexnet-bn"
    assert seed_stem("vgg16-places365") == "vgg16-places365"
