"""Auditing a run's writes: every file a Python process opens for writing, through a sitecustomize
that Python's audit events drive (they cover open() and os.open, so numpy, pandas, matplotlib and
json writes all show)."""

from __future__ import annotations

import os
from pathlib import Path

# Loaded by every Python process of the run (PYTHONPATH) when WRITE_AUDIT names the record file.
WRITE_AUDIT = """
import os, sys
record = os.environ.get("WRITE_AUDIT")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR
if record:
    def audit(event, args):
        if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
        if path == record:
            return
        if any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS):
            with open(record, "a") as handle:
                handle.write(os.path.abspath(path) + "\\n")
    sys.addaudithook(audit)
"""


def audit_environment(folder: Path, record: Path, extra_code: str = "") -> dict[str, str]:
    """Environment variables that make every Python process of a run append the files it opens for
    writing to `record`; `extra_code` runs in the same sitecustomize (a fault to inject)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(extra_code + WRITE_AUDIT)
    return {
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
        "WRITE_AUDIT": str(record),
    }


def writes_record(workdir: Path) -> Path:
    """Where the audit of the run in `workdir` is recorded: beside the folder, not in it."""
    return workdir.parent / f"{workdir.name}-writes.txt"


def written_in_place(workdir: Path, record: Path) -> list[str]:
    """Files under results/ (logs aside) that a job opened for writing under their final name."""
    results = str(workdir.resolve() / "results")
    found = set()
    for path in record.read_text().splitlines():
        parts = Path(path).parts
        if not path.startswith(results + os.sep) or "logs" in parts:
            continue
        if not any(part.startswith(".") and part.endswith(".tmp") for part in parts):
            found.add(path)
    return sorted(found)
