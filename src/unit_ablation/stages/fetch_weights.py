"""Stage `fetch_weights`: torchvision's weights of one architecture and enum, downloaded once."""

from __future__ import annotations

from pathlib import Path

from unit_ablation.models.fetch_weights import fetch_weights, weights_url


def fetch_weights_to_file(
    arch: str, enum: str, output: str | Path, weights_mirror: str | None = None
) -> Path:
    """Download the weights `torchvision:<enum>` of `arch` to `output`, from `weights_mirror` (a base
    URL serving torchvision's file names) when given."""
    return fetch_weights(weights_url(arch, enum), output, mirror=weights_mirror)
