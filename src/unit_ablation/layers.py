"""Names of analysed layers: a layer alias or module path, optionally in a rotated basis.

`conv5` is the canonical basis of conv5; `conv5@rot0` is conv5 in the random
orthogonal basis drawn with seed 0. The same string names output files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROTATION_SEPARATOR = "@rot"
_PATTERN = re.compile(r"^(?P<layer>[A-Za-z0-9_.]+?)(?:@rot(?P<seed>\d+))?$")


@dataclass(frozen=True)
class LayerSpec:
    """A layer and the basis its units are expressed in."""

    layer: str
    rotation_seed: int | None = None

    @property
    def name(self) -> str:
        if self.rotation_seed is None:
            return self.layer
        return f"{self.layer}{ROTATION_SEPARATOR}{self.rotation_seed}"

    @property
    def basis(self) -> str:
        return "canonical" if self.rotation_seed is None else f"rotation{self.rotation_seed}"


def parse_layer_spec(name: str) -> LayerSpec:
    """Parse `conv5` or `conv5@rot3`."""
    match = _PATTERN.match(name)
    if not match:
        raise ValueError(f"bad layer name {name!r}: expected LAYER or LAYER@rotSEED, e.g. conv5@rot0")
    seed = match.group("seed")
    return LayerSpec(match.group("layer"), None if seed is None else int(seed))
