"""Resuming a killed ablation job: counts so far, saved atomically beside the job's output.

The counts are sums over images, so the counts of images [0, n) plus those of [n, N) equal the
counts of [0, N) exactly, whatever the batch boundaries. A job saves (images done, broken, fixed,
correct) every `every_seconds`, and a rerun of the same job (same fingerprint: inputs, units,
options and engine code) starts at image n. Progress is kept per block of images rather than per
group of units: a unit group would rerun the trunk over every image, the dominant cost at paper
scale, once per group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unit_ablation.io import atomic_path

log = logging.getLogger(__name__)


@dataclass
class PartialCounts:
    """Counts over the first `images_done` images of a job (arrays as in AblationCounts)."""

    images_done: int
    broken: np.ndarray
    fixed: np.ndarray
    correct: np.ndarray


def progress_path(output: str | Path) -> Path:
    """Where the job writing `output` keeps its progress: a hidden file beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.progress.npz")


def file_identity(path: str | Path) -> dict:
    """Size and modification time: a changed input gives a new fingerprint without hashing GBs."""
    stat = Path(path).stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint(**fields: object) -> str:
    """A digest of everything that determines the job's counts (JSON-able values)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def load_progress(path: str | Path, expected: str, shape: tuple[int, int]) -> PartialCounts | None:
    """The saved counts when they belong to this job (`expected` fingerprint, units x classes `shape`);
    None when there are none. A stale or unreadable file is logged and ignored."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            found = str(saved["fingerprint"])
            partial = PartialCounts(
                int(saved["images_done"]), saved["broken"], saved["fixed"], saved["correct"]
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log.warning("ignoring unreadable progress file %s (%s): starting from image 0", path, error)
        return None
    if found != expected:
        log.warning("ignoring progress file %s of another job configuration: starting from image 0", path)
        return None
    if partial.broken.shape != shape or partial.fixed.shape != shape or partial.correct.shape != shape[1:]:
        log.warning("ignoring progress file %s with counts of shape %s: starting from image 0", path, shape)
        return None
    return partial


class ProgressSaver:
    """Saves a job's partial counts atomically, at most every `every_seconds` (0: after every batch)."""

    def __init__(self, path: str | Path, job_fingerprint: str, every_seconds: float = 300.0) -> None:
        self.path, self.fingerprint, self.every_seconds = Path(path), job_fingerprint, every_seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_seconds

    def save(self, partial: PartialCounts) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                fingerprint=np.array(self.fingerprint),
                images_done=np.array(partial.images_done),
                broken=partial.broken,
                fixed=partial.fixed,
                correct=partial.correct,
            )
        self.last = time.monotonic()
        log.info("saved progress: %d images done (%s)", partial.images_done, self.path.name)

    def finish(self) -> None:
        """The job's output is written: its progress is no longer needed."""
        self.path.unlink(missing_ok=True)
