"""Reading untrusted torch files: `torch.load(..., weights_only=True)`, so that a file that carries
pickled code or objects is refused before anything in it runs."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from unit_ablation.files.safe_load import (
    _READ_ERRORS,
    CorruptFileError,
    UnsafeCheckpointError,
    _corrupt,
    _describe,
    _require_file,
    _starts_as_zip,
)

_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)`, with its failures as one error type.

    A file that carries pickled code or objects (anything but tensors and plain containers)
    raises UnsafeCheckpointError: the unpickler refuses it before it calls anything. A missing,
    empty, truncated or corrupt file (zip CRCs are checked) raises CorruptFileError. Both name
    the file.
    """
    import torch

    path = Path(path)
    _require_file(path, what)
    if _starts_as_zip(path):  # torch's zip reader does not check CRCs: flipped bytes load silently
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except _READ_ERRORS as error:
            raise _corrupt(path, what, error) from error
        if bad is not None:
            part = bad.split("/", 1)[-1]  # torch prefixes every part with the archive's name
            raise CorruptFileError(f"{path}: {what} is corrupt (bad CRC-32 of its part {part!r})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _GLOBAL.search(str(error))
        if found:
            raise UnsafeCheckpointError(
                f"{path}: {what} carries pickled code or objects (global {found.group(1)}) that "
                "torch.load(weights_only=True) refuses; nothing in it was run. Use a file of plain "
                "tensors (a state_dict) from a source you trust"
            ) from None  # torch's own message advises weights_only=False: not for untrusted files
        raise CorruptFileError(f"{path}: {what} is truncated or corrupt ({_torch_reason(error)})") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises IndexError etc. on garbage
        raise CorruptFileError(f"{path}: {what} is truncated or corrupt ({_describe(error)})") from error


def _torch_reason(error: BaseException) -> str:
    """The unpickler's own reason from torch's weights_only message, without its advice."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return f"{type(error).__name__}: {' '.join(reason.split())}"
    return _describe(error)
