"""unit-ablation: single-unit ablation studies of CNNs (Zhou et al. 2018).

The notebook API is at the top level: `ua.ablate`, `ua.attributes`, `ua.cumulative` and
`ua.describe_layers`. They import torch on first use, so that `import unit_ablation` (the
workflow's parse-time code) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# name -> module of the notebook API that defines it
_API = {
    "ablate": "unit_ablation.api.ablate",
    "AblationResult": "unit_ablation.api.ablate",
    "FallbackWarning": "unit_ablation.api.ablate",
    "attributes": "unit_ablation.api.attributes",
    "AttributeResult": "unit_ablation.api.attributes",
    "cumulative": "unit_ablation.api.cumulative",
    "describe_layers": "unit_ablation.api.describe",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'unit_ablation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
