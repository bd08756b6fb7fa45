"""Content hashes of a stage's code: its script and the package modules it imports (no torch).

Snakemake notices a script edit only through the script's mtime and never sees the modules the
script imports. Each rule therefore gets `params: code=stage_code_hash(...)`: a library edit reruns
exactly the stages whose import closure contains the module, and an edit to comments or layout
changes no hash, so it reruns nothing.

Reading a file's tokens and imports costs about 1 s over the package at each parse of the Snakefile
(every dry run, every SLURM job). Like Python's own bytecode, these facts are kept in a
`__pycache__` folder, by path, modification time and size, and read again when either changes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import tempfile
import tokenize
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

PACKAGE = "unit_ablation"
# Tokens that carry no behaviour: comments, blank lines, and the indentation text itself.
_LAYOUT_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}


def normalized_source(source: str) -> str:
    """The source's tokens without comments or layout, one per line (INDENT/DEDENT kept as markers)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    kept = []
    for token in tokens:
        if token.type in _LAYOUT_TOKENS:
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            kept.append(tokenize.tok_name[token.type])
        else:
            kept.append(token.string)
    return "\n".join(kept)


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING` (True only for type checkers, never at run time)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that can run: at any depth (function-level and lazy imports too), but
    not those in the body of an `if TYPE_CHECKING:` block (its `else:` does run)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path) -> set[str]:
    """Names of the package's modules that the file imports (at any depth of the file, except in
    `if TYPE_CHECKING:` blocks)."""
    return set(_facts(path)[1])


def _imports_in(source: str, path: Path) -> list[str]:
    names = set()
    for node in runtime_imports(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from unit_ablation.spec import cost` imports the module spec/cost.py;
            # `from unit_ablation.spec.cost import x` imports spec/cost.py (x is no module).
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        names.update(name for name in candidates if name.startswith(f"{PACKAGE}."))
    return sorted(names)


# ------------------------------------------------------------------ file facts, kept between parses
STORE = Path(__file__).resolve().parent / "__pycache__" / "code-hashes.json"
_changed: dict[str, list] = {}  # entries this process computed and has not stored yet


def _facts(path: Path) -> tuple[str, tuple[str, ...]]:
    """The file's digest (tokens without comments or layout) and the package modules it imports."""
    stat = path.stat()
    return _facts_of_version(path.resolve(), stat.st_mtime_ns, stat.st_size)


@cache
def _facts_of_version(path: Path, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    # keyed by mtime and size so that an edited file is read again, in this process and on disk
    stored = _stored().get(str(path))
    if stored is not None and stored[:2] == [mtime_ns, size]:
        return stored[2], tuple(stored[3])
    source = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(normalized_source(source).encode()).hexdigest()
    imports = _imports_in(source, path)
    _changed[str(path)] = [mtime_ns, size, digest, imports]
    return digest, tuple(imports)


@cache
def _stored() -> dict[str, list]:
    try:
        entries = json.loads(STORE.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _store_changes() -> None:
    """Write the store with this process's new entries (atomically; best effort: a read-only checkout
    only loses the speed-up)."""
    if not _changed:
        return
    entries = {key: value for key, value in _stored().items() if os.path.exists(key)} | _changed
    try:
        STORE.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=STORE.parent, suffix=".tmp", delete=False) as file:
            json.dump(entries, file)
        os.replace(file.name, STORE)
    except OSError:
        return
    _stored().update(_changed)
    _changed.clear()


def module_file(name: str, package_dir: Path) -> Path | None:
    """The file of a dotted module name of the package: a module or a subpackage's __init__.py."""
    parts = name.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.exists():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    """`a.b.c` and the packages that importing it runs first: `a.b`, `a`."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(len(parts), 0, -1)]


def module_closure(script: Path, package_dir: Path, extra_modules: Sequence[str] = ()) -> list[Path]:
    """The package files the script needs, directly or through other modules, sorted (subpackage
    __init__ files included: importing a module runs its packages' __init__ first).

    `extra_modules` are dotted names of modules the script imports by name at run time (the model
    class of a checkpoint: `spec.model_classes`), followed like the script's own imports."""
    seen: set[Path] = {package_dir / "__init__.py"}
    pending = [script]
    for name in extra_modules:
        module = module_file(name, package_dir)
        if module is None:
            raise ValueError(f"{name}: no such module under {package_dir}")
        pending.append(module)
    resolved: set[str] = set()
    while pending:
        path = pending.pop()
        names = [f"{PACKAGE}.{_dotted(path, package_dir)}"] if path.is_relative_to(package_dir) else []
        for imported in [*names, *imported_modules(path)]:
            for name in _with_parents(imported):
                if name in resolved:
                    continue
                resolved.add(name)
                module = module_file(name, package_dir)
                if module is not None and module not in seen:
                    seen.add(module)
                    pending.append(module)
    return sorted(path for path in seen if path.exists())


def _dotted(path: Path, package_dir: Path) -> str:
    """`spec/cost.py` -> `spec.cost`; `spec/__init__.py` -> `spec`."""
    parts = path.relative_to(package_dir).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_code_hash(
    script: str | Path,
    package_dir: str | Path,
    extra_modules: Sequence[str] = (),
    extra_files: Sequence[str | Path] = (),
) -> str:
    """16 hex digits over the script and every package module it needs (comments and layout ignored).

    `extra_files`: files outside the package the stage runs, e.g. a `python:` model or data set
    file of the config (named as given: the file, not what it imports, is covered)."""
    script, package_dir = Path(script), Path(package_dir)
    digest = hashlib.sha256()
    for path in [script, *module_closure(script, package_dir, extra_modules)]:
        name = path.name if path == script else path.relative_to(package_dir).as_posix()
        digest.update(f"{name}\0{_facts(path)[0]}\0".encode())
    for path in extra_files:
        digest.update(f"file:{path}\0{_facts(Path(path))[0]}\0".encode())
    _store_changes()
    return digest.hexdigest()[:16]
