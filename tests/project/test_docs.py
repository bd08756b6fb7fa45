"""The README and docs/: size, the two commands, links and anchors, and the configuration reference,
which is checked against schemas/config.schema.yaml (and config.yaml's values) both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIG_DOC = DOCS / "configuration.md"
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config.yaml"
MAKEFILE = ROOT / "Makefile"

MAX_README_LINES = 250
COMMANDS = ("make run", "make test")  # the project's contract: the README's two commands
WILDCARD = "<*>"  # a map's free key (a variant or model name, a module path); docs write `<name>`
NO_DEFAULT = "—"  # the default cell of a key that has none
# Phrases of references that point nowhere in the repository, or of project history. A phrase with a
# capital letter is matched as written (`SCIENCE.md` is not docs/science.md), the others in any case.
STALE = ("SCIENCE.md", "science spec", "Reading the summary", "no GPU was lent", "before issue", "previously")
# A dotted name ending in one of these is a file (`claims.tsv`, `plots.py`), not a config key.
FILE_SUFFIXES = {
    "csv", "gz", "html", "json", "log", "md", "npz", "pdf", "png", "pt", "pth", "py", "rst", "smk", "tar",
    "tsv", "txt", "yaml", "yml",
}  # fmt: skip

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
TABLE_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")
KEY_PATH = re.compile(r"^[a-z_]+(?:\.(?:[a-z0-9_]+|<[^<>]+>))+$")


# --- Markdown helpers ------------------------------------------------------------------------------------


def markdown_files() -> list[Path]:
    """The README and every page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def code_block_lines(text: str) -> list[str]:
    """The lines inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file (code blocks and code spans are not links)."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        targets += LINK.findall(CODE_SPAN.sub("", line))
    return targets


def is_external(target: str) -> bool:
    """Whether a link leaves the repository (a URL or a mail address)."""
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None


def link_problem(source: Path, target: str) -> str | None:
    """What is wrong with one relative link, or None when it resolves to a file (and anchor) in the repo."""
    file_part, _, anchor = target.partition("#")
    destination = (source.parent / file_part).resolve() if file_part else source
    if not destination.is_relative_to(ROOT):
        return f"{target}: outside the repository"
    if not destination.exists():
        return f"{target}: no such file"
    if anchor:
        if destination.suffix != ".md":
            return f"{target}: an anchor into a file that is not Markdown"
        if anchor not in anchors(destination):
            return f"{target}: {destination.name} has no heading with the anchor #{anchor}"
    return None


# --- Schema and configuration reference --------------------------------------------------------------


@dataclass(frozen=True)
class SchemaKey:
    """One key of the configuration schema, as a dotted path."""

    path: str
    leaf: bool
    required: bool
    has_default: bool
    default: Any = None


def resolve(node: dict, schema: dict) -> dict:
    """The node a `$ref` points to (local `#/...` references), else the node itself."""
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def alternatives(node: dict, schema: dict) -> list[dict]:
    """The forms a value may take: the node, or the branches of its oneOf/anyOf/allOf, recursively."""
    node = resolve(node, schema)
    branches = [branch for key in ("oneOf", "anyOf", "allOf") for branch in node.get(key, [])]
    if not branches:
        return [node]
    return [node] + [form for branch in branches for form in alternatives(branch, schema)]


def children(node: dict, schema: dict) -> dict[str, tuple[list[dict], bool]]:
    """The keys under a node (a map's free key as WILDCARD): their schema nodes and whether required."""
    result: dict[str, tuple[list[dict], bool]] = {}
    for form in alternatives(node, schema):
        required = set(form.get("required", []))
        named = list(form.get("properties", {}).items())
        if isinstance(form.get("additionalProperties"), dict):
            named.append((WILDCARD, form["additionalProperties"]))
        for name, child in named:
            nodes, was_required = result.get(name, ([], False))
            result[name] = (nodes + [child], was_required or name in required)
    return result


def schema_default(nodes: list[dict], schema: dict) -> tuple[bool, Any]:
    """Whether the schema gives a key a default, and the default."""
    for node in nodes:
        for form in [node, *alternatives(node, schema)]:
            if "default" in form:
                return True, form["default"]
    return False, None


def schema_keys() -> dict[str, SchemaKey]:
    """Every key path of the schema, nested objects and maps included (`variants.<*>.dropout`)."""
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    keys: dict[str, SchemaKey] = {}

    def walk(prefix: str, node: dict) -> None:
        for name, (nodes, required) in children(node, schema).items():
            path = f"{prefix}.{name}" if prefix else name
            below = {"oneOf": nodes}
            has_default, default = schema_default(nodes, schema)
            leaf = not children(below, schema)
            keys[path] = SchemaKey(path, leaf, required, has_default, default)
            walk(path, below)

    walk("", schema)
    return keys


def normalise(path: str) -> str:
    """A documented key path with every `<placeholder>` segment written as WILDCARD."""
    return re.sub(r"<[^<>]+>", WILDCARD, path)


def documented_rows() -> dict[str, list[str]]:
    """The rows of the configuration reference's tables: key path -> cells (type, default, meaning)."""
    rows: dict[str, list[str]] = {}
    for line in prose_lines(CONFIG_DOC.read_text(encoding="utf-8")):
        match = TABLE_ROW.match(line)
        if not match:
            continue
        key = normalise(match.group(1))
        assert key not in rows, f"docs/configuration.md documents `{key}` twice"
        rows[key] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def config_value(config: dict, path: str) -> tuple[bool, Any]:
    """Whether config.yaml sets a key path, and its value."""
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def parse_default(cell: str) -> tuple[bool, Any]:
    """A documented default: NO_DEFAULT, or one code span holding a YAML value."""
    if cell == NO_DEFAULT:
        return False, None
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"a default cell must be {NO_DEFAULT} or one `YAML value`, not {cell!r}"
    return True, yaml.safe_load(match.group(1))


# --- README ------------------------------------------------------------------------------------------------


def test_readme_has_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_gives_the_two_commands(command):
    commands = [line.split("#")[0].strip() for line in code_block_lines(README.read_text(encoding="utf-8"))]
    assert command in commands, f"README.md has no code block line `{command}`"
    target = command.removeprefix("make ")
    makefile = MAKEFILE.read_text(encoding="utf-8")
    assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"the Makefile has no target `{target}`"


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    missing = [page.name for page in pages if page.resolve() not in linked]
    assert not missing, f"README.md links no docs page {missing}"


# --- Links, anchors and stale references ------------------------------------------------------------------


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(path):
    problems = [link_problem(path, target) for target in links(path) if not is_external(target)]
    problems = [problem for problem in problems if problem]
    assert not problems, f"{path.relative_to(ROOT)}: dangling links:\n" + "\n".join(problems)


def test_slug_follows_github():
    assert slug("Running on SLURM") == "running-on-slurm"
    assert slug("`ablation.chunk_size`: auto, and `job_minutes`") == "ablationchunk_size-auto-and-job_minutes"
    assert slug("How each verdict is computed (claims.tsv)") == "how-each-verdict-is-computed-claimstsv"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_stale_references_or_history(path):
    text = path.read_text(encoding="utf-8")
    found = [
        phrase
        for phrase in STALE
        if re.search(re.escape(phrase), text, 0 if phrase != phrase.lower() else re.IGNORECASE)
    ]
    assert not found, f"{path.relative_to(ROOT)} mentions {found}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_config_keys_named_in_the_docs_exist(path):
    """Every `section.key` named in prose (also `key: value`) is a key of the schema."""
    keys = schema_keys()
    tops = {path for path in keys if "." not in path}
    unknown = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for span in CODE_SPAN.findall(line):
            name = re.sub(r"\[\d+\]$", "", span.split(":")[0].strip())
            if not KEY_PATH.match(name) or name.split(".")[0] not in tops:
                continue
            if name.split(".")[-1] in FILE_SUFFIXES:
                continue
            if normalise(name) not in keys:
                unknown.append(name)
    assert not unknown, f"{path.relative_to(ROOT)} names config keys the schema lacks: {unknown}"


# --- Configuration reference against the schema -----------------------------------------------------------


def test_schema_walk_finds_nested_and_map_keys():
    keys = schema_keys()
    assert keys["ablation.chunk_size"].leaf and keys["ablation.chunk_size"].required
    assert keys[f"variants.{WILDCARD}.dropout"].leaf
    assert keys[f"variants.{WILDCARD}.train.epochs"].leaf
    assert keys["data.images.heldout.class_names"].leaf
    assert not keys["data.images"].leaf and keys["data.images"].has_default
    assert keys["claims.alpha"].default == 0.05 and not keys["claims.alpha"].required


def test_every_schema_key_is_documented():
    documented = documented_rows()
    missing = [path for path, key in schema_keys().items() if key.leaf and path not in documented]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_documented_key_is_in_the_schema():
    keys = schema_keys()
    unknown = [path for path in documented_rows() if path not in keys]
    assert not unknown, f"docs/configuration.md documents keys the schema lacks: {unknown}"


def test_documented_defaults_match_the_schema_and_config_yaml():
    """The default is the schema's (optional keys), and config.yaml's value for the keys it sets."""
    keys = schema_keys()
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    wrong = []
    for path, cells in documented_rows().items():
        if path not in keys:
            continue  # reported by test_every_documented_key_is_in_the_schema
        assert len(cells) == 3, f"`{path}`: a row has the cells key | type | default | meaning"
        shown, value = parse_default(cells[1])
        key = keys[path]
        expected = [("the schema", key.default)] if key.has_default else []
        if key.leaf and WILDCARD not in path:
            in_config, default = config_value(config, path)
            expected += [("config.yaml", default)] if in_config else []
        if shown and not expected:
            wrong.append(f"`{path}`: documents default {value!r}; neither the schema nor config.yaml has one")
        for source, default in expected:
            if not shown or value != default:
                wrong.append(f"`{path}`: documents {cells[1]}, {source} has {default!r}")
    assert not wrong, "docs/configuration.md defaults drifted:\n" + "\n".join(wrong)


def test_documented_optional_keys_match_the_schema():
    """A key the schema does not require is marked optional in its type cell, and only such a key."""
    keys = schema_keys()
    wrong = []
    for path, cells in documented_rows().items():
        if path in keys and ("optional" in cells[0]) == keys[path].required:
            wrong.append(f"`{path}`: {'required' if keys[path].required else 'optional'} in the schema")
    assert not wrong, "docs/configuration.md marks keys wrongly:\n" + "\n".join(wrong)
