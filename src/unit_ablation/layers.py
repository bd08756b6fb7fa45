"""Names of analysed layers: a layer alias or module path, optionally in a rotated basis, and
optionally with its own ablation value.

`conv5` is the canonical basis of conv5; `conv5@rot0` is conv5 in the random orthogonal basis
drawn with seed 0; `conv5@rot0+mean` is the same units set to their mean instead of the run's
`ablation.value` (`analysis.compare_values`). The same string names output files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROTATION_SEPARATOR = "@rot"
VALUE_SEPARATOR = "+"
ABLATION_VALUES = ("zero", "mean")
_PATTERN = re.compile(r"^(?P<layer>[A-Za-z0-9_.]+?)(?:@rot(?P<seed>\d+))?(?:\+(?P<value>zero|mean))?$")


@dataclass(frozen=True)
class LayerSpec:
    """A layer and the basis its units are expressed in."""

    layer: str
    rotation_seed: int | None = None
    value: str | None = None  # None: the run's ablation.value

    @property
    def name(self) -> str:
        name = (
            self.layer
            if self.rotation_seed is None
            else f"{self.layer}{ROTATION_SEPARATOR}{self.rotation_seed}"
        )
        return name if self.value is None else f"{name}{VALUE_SEPARATOR}{self.value}"

    @property
    def attribute_spec(self) -> str:
        """The spec whose activations and attributes these units have (the value does not matter)."""
        return LayerSpec(self.layer, self.rotation_seed).name

    @property
    def label(self) -> str:
        """The layer as figures and claims name it: `conv5`, or `conv5 (mean ablation)`."""
        return self.layer if self.value is None else f"{self.layer} ({self.value} ablation)"

    @property
    def basis(self) -> str:
        return "canonical" if self.rotation_seed is None else f"rotation{self.rotation_seed}"


def parse_layer_spec(name: str) -> LayerSpec:
    """Parse `conv5`, `conv5@rot3` or `conv5@rot3+mean`."""
    match = _PATTERN.match(name)
    if not match:
        raise ValueError(
            f"bad layer name {name!r}: expected LAYER, LAYER@rotSEED or either with +zero or +mean,"
            " e.g. conv5@rot0"
        )
    seed = match.group("seed")
    return LayerSpec(match.group("layer"), None if seed is None else int(seed), match.group("value"))
