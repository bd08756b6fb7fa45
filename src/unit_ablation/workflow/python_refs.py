"""Config checks of `python:` references (a model's `arch`, an image set's `python`) without running
the user's code: the file exists, parses, and defines the callable at its top level (`ast`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from unit_ablation.workflow.config_schema import show


def top_level_names(tree: ast.Module) -> list[str]:
    """Names a module binds at its top level: functions, classes, assignments and imports."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [target.id for target in targets if isinstance(target, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    return names


def python_ref_problems(key: str, value: str, path: str, name: str) -> Iterator[str]:
    """Faults of the reference `value` (the config text) to `name` in the file `path` (relative to
    the working directory), each naming the key, the file and the reason."""
    file = Path(path)
    if not file.is_file():
        state = "is not a file" if file.exists() else "does not exist"
        yield f"{key}: {show(value)}: the file {path} {state} (relative paths: from the working directory)"
        return
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (OSError, UnicodeDecodeError) as error:
        yield f"{key}: {show(value)}: cannot read {path}: {error}"
        return
    except SyntaxError as error:
        yield f"{key}: {show(value)}: {path} line {error.lineno}: syntax error: {error.msg}"
        return
    defined = top_level_names(tree)
    if name not in defined:
        functions = [
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        yield (
            f"{key}: {show(value)}: {path} defines no {name!r} at its top level"
            f" (it defines: {', '.join(functions) or 'no functions'})"
        )
