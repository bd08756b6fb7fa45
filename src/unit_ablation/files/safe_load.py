"""Reading untrusted files: one error type that names the file and says what is wrong with it.

Every array file is read with `allow_pickle=False` and read in full, so truncation and bad CRCs
surface here, not later. Checkpoints are read by `files.torch_files`, apart: arrays need no torch.
"""

from __future__ import annotations

import json
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CorruptFileError",
    "UnsafeCheckpointError",
    "check_shapes",
    "load_npy",
    "load_npz",
    "read_json_array",
]


# what numpy / zipfile / zlib / pickle raise for a truncated, corrupt or wrong-format file
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
)


class CorruptFileError(ValueError):
    """A file that is missing, truncated, corrupt or not what its reader expects; the message names it."""


class UnsafeCheckpointError(CorruptFileError):
    """A checkpoint that carries pickled code or objects, which `torch.load(weights_only=True)` refuses."""


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()).split(" This is an internal miniz error")[0]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _starts_as_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _corrupt(path: Path, what: str, error: BaseException) -> CorruptFileError:
    """The error for a file whose reader failed; says so when a zip archive lost its end."""
    reason = _describe(error)
    if isinstance(error, zipfile.BadZipFile) and _starts_as_zip(path) and not zipfile.is_zipfile(path):
        reason = f"a zip archive without its central directory at the end, {reason}"
    return CorruptFileError(f"{path}: {what} is truncated or corrupt ({reason})")


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise CorruptFileError(f"{path}: {what} does not exist")
    if not path.is_file():
        raise CorruptFileError(f"{path}: {what} is not a regular file")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path}: {what} is empty (0 bytes; truncated or never written)")


def load_npz(
    path: str | Path, required: Iterable[str], optional: Iterable[str] = (), what: str = "array archive"
) -> dict[str, np.ndarray]:
    """The `required` (and present `optional`) arrays of an .npz, read in full with allow_pickle=False.

    Raises CorruptFileError naming the file when it is missing, empty, truncated, corrupt (bad
    CRC), not an .npz, holds pickled objects, or lacks a required array.
    """
    path = Path(path)
    required, optional = list(required), list(optional)
    _require_file(path, what)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CorruptFileError(f"{path}: {what} is a single .npy array, not an .npz archive")
        with loaded as archive:
            present = set(archive.files)
            missing = [key for key in required if key not in present]
            if missing:
                raise CorruptFileError(
                    f"{path}: {what} lacks the array(s) {', '.join(missing)} "
                    f"(has {', '.join(sorted(present)) or 'none'}; truncated or written by other code?)"
                )
            return {key: archive[key] for key in required + [k for k in optional if k in present]}
    except CorruptFileError:
        raise
    except _READ_ERRORS as error:
        raise _corrupt(path, what, error) from error


def load_npy(path: str | Path, what: str = "array file") -> np.ndarray:
    """One .npy array, read in full with allow_pickle=False; CorruptFileError naming the file otherwise."""
    path = Path(path)
    _require_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except _READ_ERRORS as error:
        raise _corrupt(path, what, error) from error
    if not isinstance(array, np.ndarray):
        array.close()
        raise CorruptFileError(f"{path}: {what} is an .npz archive, not a single .npy array")
    return array


def check_shapes(
    path: str | Path,
    arrays: Mapping[str, np.ndarray],
    shapes: Mapping[str, Sequence[int | str]],
    what: str = "array archive",
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Check each named array's shape against a pattern; returns the sizes the names stand for.

    A pattern entry is an int (that size) or a name that must take the same size wherever it
    appears, e.g. {"broken": ("units", "classes"), "n": ("classes",)}. `sizes` fixes names
    beforehand. Arrays absent from `arrays` are skipped. Raises CorruptFileError naming the file.
    """
    bound = dict(sizes or {})
    source = {name: "the expected sizes" for name in bound}
    for key, pattern in shapes.items():
        if key not in arrays:
            continue
        shape = tuple(np.shape(arrays[key]))
        wanted = " x ".join(str(dim) for dim in pattern) or "a scalar"
        if len(shape) != len(pattern):
            raise CorruptFileError(f"{path}: {what} array {key!r} has shape {shape}, expected {wanted}")
        for dim, size in zip(pattern, shape, strict=True):
            if isinstance(dim, str):
                if bound.setdefault(dim, size) != size:
                    raise CorruptFileError(
                        f"{path}: {what} array {key!r} has shape {shape}, expected {wanted} with "
                        f"{dim} = {bound[dim]} as in {source[dim]}"
                    )
                source.setdefault(dim, repr(key))
            elif size != dim:
                raise CorruptFileError(f"{path}: {what} array {key!r} has shape {shape}, expected {wanted}")
    return bound


def read_json_array(path: str | Path, array: np.ndarray, key: str, what: str = "array archive") -> Any:
    """The JSON text a 0-d string array holds (metadata of an .npz); CorruptFileError naming the file."""
    try:
        return json.loads(str(array.item() if np.ndim(array) == 0 else array))
    except (ValueError, TypeError) as error:
        reason = _describe(error)
        raise CorruptFileError(f"{path}: {what} array {key!r} is not valid JSON ({reason})") from error
