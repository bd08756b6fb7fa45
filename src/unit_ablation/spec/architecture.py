"""Pure-Python description of the built-in architecture (no torch import).

Snakemake reads this at parse time to know how many units each layer has, so it
must stay cheap to import.
"""

from __future__ import annotations

ARCH_NAME = "fmnist_alexnet"
CONV_LAYERS: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5")
# Channel counts at width 1.0; AlexNet's 64-192-384-256-256 proportions, scaled down.
BASE_CHANNELS: dict[str, int] = {
    "conv1": 32,
    "conv2": 64,
    "conv3": 96,
    "conv4": 96,
    "conv5": 64,
}
BASE_FC_UNITS = 256


def scaled(count: int, width: float) -> int:
    """Channel count at a width multiplier (at least 1)."""
    return max(1, int(round(count * width)))


def layer_units(width: float) -> dict[str, int]:
    """Number of units (channels) of every conv layer at a width multiplier."""
    return {name: scaled(count, width) for name, count in BASE_CHANNELS.items()}


def canonical_layer(name: str) -> str:
    """The alias (`conv5`) of a built-in layer given as alias or module path (`features.conv5`)."""
    for prefix in ("", "features."):
        for alias in CONV_LAYERS:
            if name in (f"{prefix}{alias}", f"{prefix}{alias}.relu"):
                return alias
    raise KeyError(
        f"unknown layer {name!r}: the built-in model's layers are {', '.join(CONV_LAYERS)} "
        "(module paths features.conv1 ... features.conv5 also work)"
    )
