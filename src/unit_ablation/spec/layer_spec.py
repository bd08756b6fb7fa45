"""Names of analysed layers: a layer alias or module path, optionally in a rotated basis, and
optionally with its own ablation value.

`conv5` is the canonical basis of conv5; `conv5@rot0` is conv5 in the random orthogonal basis
drawn with seed 0; `conv5@rot0+mean` is the same units set to their mean instead of the run's
`ablation.value` (`analysis.compare_values`). The same string names output files.

Names: a *layer* is an alias or module path (`conv5`, `features.11`); a *layer spec* is the string
above (a layer, optionally a basis and a value). The workflow's `{layer_spec}` wildcard holds a
spec, its `{layer}` wildcard (cumulative ablation, canonical basis only) a layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ROTATION_SEPARATOR = "@rot"
VALUE_SEPARATOR = "+"
ABLATION_VALUES = ("zero", "mean")
LAYER_PATTERN = r"[A-Za-z0-9_.]+"  # a layer: an alias or a module path
_LAYER = LAYER_PATTERN + "?"  # lazy inside a spec
_SEED = r"[0-9]+"
_VALUE = "|".join(ABLATION_VALUES)
_ROTATION, _WITH_VALUE = re.escape(ROTATION_SEPARATOR), re.escape(VALUE_SEPARATOR)
# The grammar, once: the workflow's `{layer_spec}` wildcard constraint and the parser below.
LAYER_SPEC_PATTERN = rf"{_LAYER}(?:{_ROTATION}{_SEED})?(?:{_WITH_VALUE}(?:{_VALUE}))?"
_PATTERN = re.compile(
    rf"^(?P<layer>{_LAYER})(?:{_ROTATION}(?P<seed>{_SEED}))?(?:{_WITH_VALUE}(?P<value>{_VALUE}))?$"
)


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


def study_layer_specs(
    layers: Sequence[str], rotation_seeds: Sequence[int], compare_values: Sequence[str] = ()
) -> list[str]:
    """A model's analysed layer specs: each layer in its own basis and in each rotated basis, then
    all of these again with each of `compare_values` (`analysis.compare_values`) as the ablation value."""
    specs = []
    for value in [None, *compare_values]:
        for layer in layers:
            specs.append(LayerSpec(layer, None, value).name)
            specs.extend(LayerSpec(layer, seed, value).name for seed in rotation_seeds)
    return specs
