"""Architecture strings of `pretrained.<name>.arch` and `python:` references, parsed without torch.

Three forms name a model:
- `NAME` or `torchvision:NAME`: a `torchvision.models` classification architecture;
- `timm:NAME`: a timm model (timm is an optional extra, imported only for such models);
- `python:PATH.py:CALLABLE`: a function in a Python file (relative to the workflow's working
  directory) that returns the `nn.Module` and accepts `num_classes=`.
Image sets use the same `PATH.py:CALLABLE` reference (`data.images.<split>.python`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TORCHVISION, TIMM, PYTHON = "torchvision", "timm", "python"
ARCH_KINDS: tuple[str, ...] = (TORCHVISION, TIMM, PYTHON)
ACCEPTED_ARCH = (
    "a torchvision architecture (`resnet18` or `torchvision:resnet18`), `timm:NAME` (e.g. timm:resnet10t),"
    " or `python:PATH.py:CALLABLE` (a function in a file of the working directory that returns the model)"
)
# any name: torchvision's own list (the config check's layer tables, then the model build) judges it
_TORCHVISION_NAME = re.compile(r"[^\s:]+")
_TIMM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture string: `kind` (torchvision, timm or python), `name` (the model name;
    for python models the callable), and for python models the file `path` and `callable`."""

    kind: str
    name: str
    path: str | None = None
    callable: str | None = None

    @property
    def text(self) -> str:
        """The canonical string: `torchvision:alexnet`, `timm:resnet10t`, `python:net.py:make`."""
        if self.kind == PYTHON:
            return f"{PYTHON}:{self.path}:{self.callable}"
        return f"{self.kind}:{self.name}"


def parse_python_ref(text: str, what: str = "python reference") -> tuple[str, str]:
    """`PATH.py:CALLABLE` -> (PATH.py, CALLABLE); ValueError naming `what` and the accepted form."""
    path, colon, name = str(text).rpartition(":")
    if not colon or not path:
        raise ValueError(f"{what} {text!r} is not PATH.py:CALLABLE (a file and a function in it)")
    if not path.endswith(".py"):
        raise ValueError(
            f"{what} {text!r}: the file {path!r} does not end in .py (accepted: PATH.py:CALLABLE)"
        )
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{what} {text!r}: {name!r} is not a Python name (accepted: PATH.py:CALLABLE)")
    return path, name


def parse_arch(arch: str) -> ArchSpec:
    """Parse `pretrained.<name>.arch`; ValueError with the reason and the accepted forms."""
    if not isinstance(arch, str) or not arch.strip():
        raise ValueError(f"{arch!r} is not an architecture (accepted: {ACCEPTED_ARCH})")
    kind, colon, rest = arch.partition(":")
    if not colon:
        kind, rest = TORCHVISION, arch
    if kind == PYTHON:
        path, name = parse_python_ref(rest, f"{arch!r}:")
        return ArchSpec(PYTHON, name, path=path, callable=name)
    if kind == TORCHVISION:
        if not _TORCHVISION_NAME.fullmatch(rest):
            raise ValueError(
                f"{arch!r}: {rest!r} is not a torchvision model name (accepted: {ACCEPTED_ARCH})"
            )
        return ArchSpec(TORCHVISION, rest)
    if kind == TIMM:
        if not _TIMM_NAME.fullmatch(rest):
            raise ValueError(
                f"{arch!r}: {rest!r} is not a timm model name (letters, digits, _, - and .; models from"
                " the Hugging Face hub are not accepted: nothing is downloaded)"
            )
        return ArchSpec(TIMM, rest)
    raise ValueError(f"{arch!r}: unknown kind {kind!r} (accepted: {ACCEPTED_ARCH})")


def needs_units(arch: str) -> bool:
    """Whether the config must give `units:` for every layer (timm and python models: their layers'
    widths are only known by building the model, and chunks are planned without torch)."""
    return parse_arch(arch).kind != TORCHVISION
