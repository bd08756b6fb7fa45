"""Atomic file writing: results appear under their final name only when complete."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


# a write that fails for lack of space: the disk is full, or the user's quota is used up
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A result could not be written for lack of space; the message names the output, the errno
    and the space left. Nothing was left under the output's name, and its temporary is removed."""

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    A write that fails with ENOSPC or EDQUOT raises DiskFullError naming `path`, the errno and the
    free space (statvfs); nothing is left under the final name and the temporary is removed.
    """
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
    except OSError as error:
        if error.errno in DISK_FULL and not isinstance(error, DiskFullError):
            raise disk_full_error(target, error) from error
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def disk_full_error(target: Path, error: OSError) -> DiskFullError:
    """The DiskFullError for a failed write of `target`: its path, the errno and the space left."""
    name = errno.errorcode.get(error.errno, str(error.errno))
    try:
        stat = os.statvfs(target.parent)
        free = f"{_size(stat.f_bavail * stat.f_frsize)} free of {_size(stat.f_blocks * stat.f_frsize)}"
    except OSError:
        free = "free space unknown"
    quota = " (a disk quota: see `quota -s`)" if error.errno == errno.EDQUOT else ""
    return DiskFullError(
        error.errno,
        f"{target}: cannot write the result: [Errno {error.errno}] {name} {os.strerror(error.errno)}"
        f"{quota}; {free} on the filesystem of {target.parent} (statvfs). Nothing was written under"
        " this name; free some space and rerun",
    )


def _size(count: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    while count >= 1024 and len(units) > 1:
        count, units = count / 1024, units[1:]
    return f"{count:.1f} {units[0]}"


@contextlib.contextmanager
def written_together(*paths: str | Path) -> Iterator[None]:
    """A stage's several outputs, each written atomically in the block: when the block fails (a full
    disk at the second file, say) the ones already written are removed, so none or all are left."""
    try:
        yield
    except BaseException:
        for path in paths:
            Path(path).unlink(missing_ok=True)
        raise


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
