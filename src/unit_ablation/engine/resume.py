"""Resuming a killed ablation job: counts so far, saved atomically beside the job's output.

The counts are sums over images, so the counts of images [0, n) plus those of [n, N) equal the
counts of [0, N) exactly, whatever the batch boundaries. A job saves (images done and the counts
per half of the images: broken, fixed, newly, no_longer, correct, predicted) every `every_seconds`,
and a rerun of the same job (same fingerprint: inputs, units, options and engine code) starts at
image n. Progress is kept per block of images rather than per group of units: a unit group would
rerun the trunk over every image, the dominant cost at paper scale, once per group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unit_ablation.files.writing import atomic_path
from unit_ablation.runtime import termination

log = logging.getLogger(__name__)


# the arrays a progress file holds beside its fingerprint and images_done, with their shapes
PARTIAL_SHAPES: dict[str, tuple[str, ...]] = {
    "broken_half": ("halves", "units", "classes"),
    "fixed_half": ("halves", "units", "classes"),
    "newly": ("halves", "units", "classes"),
    "no_longer": ("halves", "units", "classes"),
    "correct_half": ("halves", "classes"),
    "predicted_half": ("halves", "classes"),
}


@dataclass
class PartialCounts:
    """Counts over the first `images_done` images of a job, per half of the images (arrays as in
    AblationCounts: 2 x units x classes, or 2 x classes). The class sizes follow from the labels."""

    images_done: int
    broken_half: np.ndarray
    fixed_half: np.ndarray
    newly: np.ndarray
    no_longer: np.ndarray
    correct_half: np.ndarray
    predicted_half: np.ndarray

    @classmethod
    def of(cls, images_done: int, counts: object) -> PartialCounts:
        """The partial counts held by an object with the same array attributes (AblationCounts)."""
        return cls(images_done, *(getattr(counts, name) for name in PARTIAL_SHAPES))

    @property
    def broken(self) -> np.ndarray:
        return self.broken_half.sum(axis=0)

    @property
    def fixed(self) -> np.ndarray:
        return self.fixed_half.sum(axis=0)

    @property
    def correct(self) -> np.ndarray:
        return self.correct_half.sum(axis=0)


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
    """The saved counts when they belong to this job (`expected` fingerprint, units x classes `shape`,
    integer counts); None when there are none. A stale or unreadable file is logged and ignored."""
    sizes = {"halves": 2, "units": shape[0], "classes": shape[1]}
    shapes = {key: tuple(sizes[dim] for dim in dims) for key, dims in PARTIAL_SHAPES.items()}
    saved = load_saved_arrays(path, expected, shapes)
    return None if saved is None else PartialCounts(saved[0], *(saved[1][key] for key in PARTIAL_SHAPES))


def load_saved_arrays(
    path: str | Path, expected: str, shapes: dict[str, tuple[int, ...]]
) -> tuple[int, dict[str, np.ndarray]] | None:
    """(images done, arrays) of a progress file when it belongs to this job (`expected` fingerprint)
    and holds integer arrays of the given `shapes`; None otherwise, a stale or unreadable file logged."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            found = str(saved["fingerprint"])
            images_done = int(saved["images_done"])
            arrays = {key: saved[key] for key in shapes}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log.warning("ignoring unreadable progress file %s (%s): starting from image 0", path, error)
        return None
    if found != expected:
        log.warning("ignoring progress file %s of another job configuration: starting from image 0", path)
        return None
    for key, shape in shapes.items():
        array = arrays[key]
        if array.shape != shape or array.dtype.kind not in "iu":
            log.warning(
                "ignoring progress file %s whose %s is not %s integer counts: starting from image 0",
                path,
                key,
                " x ".join(str(size) for size in shape),
            )
            return None
    return images_done, arrays


class ProgressSaver:
    """Saves a job's partial counts atomically, at most every `every_seconds` (0: after every batch)."""

    def __init__(self, path: str | Path, job_fingerprint: str, every_seconds: float = 300.0) -> None:
        self.path, self.fingerprint, self.every_seconds = Path(path), job_fingerprint, every_seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_seconds

    def save(self, partial: PartialCounts) -> None:
        self.save_arrays(partial.images_done, {key: getattr(partial, key) for key in PARTIAL_SHAPES})

    def save_arrays(self, images_done: int, arrays: dict[str, np.ndarray]) -> None:
        """Save the arrays of the first `images_done` images (any job's progress, e.g. predictions)."""
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle, fingerprint=np.array(self.fingerprint), images_done=np.array(images_done), **arrays
            )
        self.last = time.monotonic()
        log.info("saved progress: %d images done (%s)", images_done, self.path.name)

    def finish(self) -> None:
        """The job's output is written: its progress is no longer needed."""
        self.path.unlink(missing_ok=True)


def save_or_stop(
    saver: ProgressSaver | None, done: int, total: int, arrays: Callable[[], dict[str, np.ndarray]]
) -> None:
    """After a batch of a resumable loop: save `arrays()` when the saver is due or SIGTERM arrived
    (`runtime.termination`, inside `deferred()`), then raise Terminated if it did."""
    stopping = termination.requested()
    if saver is not None and (saver.due() or stopping):
        saver.save_arrays(done, arrays())
    if stopping:
        saved = "its progress saved" if saver is not None else "nothing saved"
        termination.stop_if_requested(f"image {done} of {total}, {saved}")
