"""Atomic file writing: results appear under their final name only when complete."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the result normal permissions
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary files a killed writer of `target` left (one job writes each output)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


def write_tsv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a table as TSV atomically, with a fixed float format for reproducible bytes."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def concatenate_tsv(paths: Sequence[str | Path], output: str | Path) -> None:
    """Rows of several TSV tables with the same columns, in the given order, as one TSV."""
    import pandas as pd

    tables = [pd.read_csv(path, sep="\t") for path in paths]
    columns = [list(table.columns) for table in tables]
    for path, names in zip(paths, columns, strict=True):
        if names != columns[0]:
            raise ValueError(f"{path}: columns {names} differ from {paths[0]}'s {columns[0]}")
    write_tsv(pd.concat(tables, ignore_index=True), output)


def write_yaml(data: dict, path: str | Path) -> None:
    """Write plain data (dicts, lists, scalars) as YAML atomically, keys in their given order."""
    import yaml

    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
