"""Reading untrusted torch files: `torch.load(..., weights_only=True)`, so that a file that carries
pickled code or objects is refused before anything in it runs."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
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
        refusal = _refusal(path, error)
        if refusal:
            raise UnsafeCheckpointError(
                f"{path}: {what} refused as unsafe, it is not plain weights: {refusal}; nothing in it "
                "was run. Use a file of plain tensors (a state_dict) from a source you trust"
            ) from None  # torch's own message advises weights_only=False: not for untrusted files
        raise CorruptFileError(f"{path}: {what} is truncated or corrupt ({_torch_reason(error)})") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises IndexError etc. on garbage
        raise CorruptFileError(f"{path}: {what} is truncated or corrupt ({_describe(error)})") from error


# torch's weights-only unpickler refusing what it found, rather than failing to read it
_REFUSALS = ("Can only build", "Can only create new object", "Only persistent_load", "persistent_load id")
_UNSUPPORTED = re.compile(r"Unsupported operand (\d+)")


def _refusal(path: Path, error: pickle.UnpicklingError) -> str | None:
    """Why the weights-only unpickler refused the file as unsafe, or None when the file is damaged.

    A global it does not allow, an object it may not build, or an opcode it does not accept
    (protocol 4 and 5's FRAME, STACK_GLOBAL, ...) found in a complete pickle of the file.
    """
    text = str(error)
    found = _GLOBAL.search(text)
    if found:
        return (
            f"it carries pickled code or objects (global {found.group(1)}) that "
            "torch.load(weights_only=True) refuses"
        )
    scan = _scan_pickles(path)
    unsupported = _UNSUPPORTED.search(text)
    if unsupported:
        code = int(unsupported.group(1))
        opcode = pickletools.code2op.get(chr(code)) if code < 256 else None
        if opcode is None or opcode.name not in scan.opcodes:
            return None  # a byte that is no opcode of a complete pickle here: damage, not a refusal
        unsafe = _disallowed(scan.globals)
        carries = f"it carries pickled code or objects (global {', '.join(unsafe)}) in" if unsafe else "it is"
        return (
            f"{carries} pickle protocol {scan.protocol}, whose opcode {opcode.name} "
            "torch.load(weights_only=True) does not accept, so it cannot be checked to hold only "
            "tensors (re-save plain weights with torch.save's default protocol)"
        )
    if any(marker in text for marker in _REFUSALS):
        unsafe = _disallowed(scan.globals)
        named = f" (global {', '.join(unsafe)})" if unsafe else ""
        return f"it carries pickled code or objects{named} that torch.load(weights_only=True) refuses"
    return None


def _disallowed(names: list[str]) -> list[str]:
    """The globals torch's weights-only unpickler does not allow (all of them if its list is unknown)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # a private function: other torch versions may lack it
        return names
    return [
        name
        for name in names
        if name not in allowed and name.replace("__builtin__.", "builtins.") not in allowed
    ]


@dataclass
class _PickleScan:
    """What the complete pickles of a file hold, read by `pickletools` (which runs nothing)."""

    protocol: int = 0
    opcodes: set[str] = field(default_factory=set)
    globals: list[str] = field(default_factory=list)


def _scan_pickles(path: Path) -> _PickleScan:
    """The opcodes and globals of the file's complete pickles: `data.pkl` of a zip checkpoint, or
    the successive pickles of a legacy or plain pickle file (up to the first that does not parse)."""
    if _starts_as_zip(path):
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("data.pkl")]
            data = archive.read(names[0]) if names else b""
    else:
        data = path.read_bytes()
    scan, stream = _PickleScan(), io.BytesIO(data)
    while stream.tell() < len(data):
        opcodes, names, protocol = set(), [], 0
        pushed: list[str | None] = []  # the strings pushed so far (None: something else), for STACK_GLOBAL
        memo: dict[int, str | None] = {}
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                opcodes.add(opcode.name)
                if opcode.name == "PROTO":
                    protocol = argument
                elif opcode.name in ("GLOBAL", "INST"):
                    names.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL":
                    module, name = pushed[-2:] if len(pushed) >= 2 else (None, None)
                    names.append(f"{module}.{name}" if module and name else "(a global named at run time)")
                elif opcode.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(argument)] = pushed[-1] if pushed else None
                elif opcode.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(argument)))
                elif isinstance(argument, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
                    pushed.append(argument)
                elif opcode.stack_after:
                    pushed.append(None)
        except ValueError:  # not a pickle (legacy storage bytes), or a truncated one: not counted
            break
        scan.protocol = max(scan.protocol, protocol)
        scan.opcodes |= opcodes
        scan.globals += [name for name in names if name not in scan.globals]
    return scan


def _torch_reason(error: BaseException) -> str:
    """The unpickler's own reason from torch's weights_only message, without its advice."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return f"{type(error).__name__}: {' '.join(reason.split())}"
    return _describe(error)
