"""User code named in the config (`python:PATH.py:CALLABLE`): imported like any module, so it runs
with the workflow's rights. Paths are relative to the working directory (the workflow's)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULES: dict[tuple[str, int, int], ModuleType] = {}


def import_python_file(path: str | Path, what: str) -> ModuleType:
    """Import the file (once per version of it); FileNotFoundError or ImportError naming `what`.
    Its folder joins the end of `sys.path`, so that modules beside it can be imported."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist (relative paths: from {Path.cwd()})")
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key in _MODULES:
        return _MODULES[key]
    name = f"unit_ablation_user_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"{what}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    if str(file.parent) not in sys.path:
        sys.path.append(str(file.parent))  # modules beside the file import, as beside a script
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ImportError(f"{what}: importing {path} failed: {type(error).__name__}: {error}") from error
    _MODULES[key] = module
    return module


def python_callable(path: str | Path, name: str, what: str) -> Callable[..., Any]:
    """The function `name` of the file; AttributeError listing what the file defines."""
    module = import_python_file(path, what)
    function = getattr(module, name, None)
    if not callable(function):
        defined = sorted(
            key for key, value in vars(module).items() if callable(value) and not key.startswith("_")
        )
        state = "is not callable" if hasattr(module, name) else "is not defined"
        raise AttributeError(
            f"{what}: {name!r} {state} in {path} (it defines: {', '.join(defined) or 'nothing'})"
        )
    return function
