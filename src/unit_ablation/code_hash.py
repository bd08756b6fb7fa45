"""Content hashes of a stage's code: its script and the package modules it imports (no torch).

Snakemake notices a script edit only through the script's mtime and never sees the modules the
script imports. Each rule therefore gets `params: code=stage_code_hash(...)`: a library edit reruns
exactly the stages whose import closure contains the module, and an edit to comments or layout
changes no hash, so it reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from functools import cache
from pathlib import Path

PACKAGE = "unit_ablation"
# Tokens that carry no behaviour: comments, blank lines, and the indentation text itself.
_LAYOUT_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}


def normalized_source(path: Path) -> str:
    """The file's tokens without comments or layout, one per line (INDENT/DEDENT kept as markers)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    kept = []
    for token in tokens:
        if token.type in _LAYOUT_TOKENS:
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            kept.append(tokenize.tok_name[token.type])
        else:
            kept.append(token.string)
    return "\n".join(kept)


def imported_modules(path: Path) -> set[str]:
    """Names of the package's modules that the file imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from unit_ablation import io` imports the module io; `from unit_ablation.io import x` io.
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        names.update(name for name in candidates if name.startswith(f"{PACKAGE}."))
    return names


def module_closure(script: Path, package_dir: Path) -> list[Path]:
    """The package modules the script needs, directly or through other modules, sorted."""
    seen: set[Path] = {package_dir / "__init__.py"}
    pending = [script]
    while pending:
        for name in imported_modules(pending.pop()):
            module = package_dir / (name.split(".", 1)[1].replace(".", "/") + ".py")
            if module.exists() and module not in seen:
                seen.add(module)
                pending.append(module)
    return sorted(path for path in seen if path.exists())


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest_of_version(path, stat.st_mtime_ns, stat.st_size)


@cache
def _digest_of_version(path: Path, mtime_ns: int, size: int) -> str:
    # keyed by mtime and size so that an edited file is read again in the same process
    return hashlib.sha256(normalized_source(path).encode()).hexdigest()


def stage_code_hash(script: str | Path, package_dir: str | Path) -> str:
    """16 hex digits over the script and every package module it needs (comments and layout ignored)."""
    script, package_dir = Path(script), Path(package_dir)
    digest = hashlib.sha256()
    for path in [script, *module_closure(script, package_dir)]:
        name = path.name if path == script else path.relative_to(package_dir).as_posix()
        digest.update(f"{name}\0{_file_digest(path)}\0".encode())
    return digest.hexdigest()[:16]
