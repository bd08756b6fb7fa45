"""What an ablated unit is set to: zero, or its mean over a set of images."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from unit_ablation.data.dataset import to_float
from unit_ablation.engine.basis import to_basis
from unit_ablation.engine.graph_split import TraceFailed, resolve_layer, run_trunk, split_model
from unit_ablation.engine.layer_hooks import layer_output
from unit_ablation.engine.trunk_cache import TrunkSource
from unit_ablation.runtime.device import (
    image_batches,
    set_precision,
)
from unit_ablation.spec.layer_spec import ABLATION_VALUES


@torch.no_grad()
def coordinate_means(activations: Iterable[torch.Tensor], rotation: torch.Tensor | None) -> torch.Tensor:
    """Mean of every unit's coordinate over a layer's activations (over images and positions)."""
    total, count = None, 0
    for activation in activations:
        z = to_basis(activation.double(), None if rotation is None else rotation.double())
        batch_sum = z.sum(dim=[0, *range(2, z.dim())])
        total = batch_sum if total is None else total + batch_sum
        count += z.numel() // z.shape[1]
    if total is None:
        raise ValueError("no images to take the unit means from")
    return (total / count).float()


@torch.no_grad()
def channel_means(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
    cached_trunk: TrunkSource | None = None,
) -> torch.Tensor:
    """Dataset mean of every unit's coordinate (over images and positions), for mean ablation.

    The trunk computes the activations (or `cached_trunk`, in the same batches); for a model
    torch.fx cannot trace, hooks do."""
    batches = image_batches(images, None, batch_size, device)
    try:
        split = split_model(model, layer)
    except TraceFailed:
        module = resolve_layer(model, layer)
        return coordinate_means((layer_output(model, module, x, layer) for x, _ in batches), rotation)
    known = None if cached_trunk is None else cached_trunk(images)
    if known is not None:
        return coordinate_means((activation for activation, _ in known), rotation)
    return coordinate_means((run_trunk(split, x)[0] for x, _ in batches), rotation)


def ablation_values(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: torch.Tensor | None,
    value: str,
    batch_size: int,
    device: torch.device,
    cached_trunk: TrunkSource | None = None,
) -> torch.Tensor:
    """What each unit's coordinate is set to: 0, or its mean over `images`."""
    if value == "mean":
        return channel_means(model, layer, images, rotation, batch_size, device, cached_trunk).to(device)
    if value == "zero":
        x = torch.from_numpy(to_float(images[:1])).to(device)
        return torch.zeros(layer_output(model, resolve_layer(model, layer), x, layer).shape[1], device=device)
    raise ValueError(f"ablation value {value!r} not in {ABLATION_VALUES}")


def prepare_ablation(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: np.ndarray | None,
    value: str,
    batch_size: int,
    device: str | torch.device,
    mean_images: np.ndarray | None,
    precision: str = "exact",
    cached_trunk: TrunkSource | None = None,
) -> tuple[torch.device, torch.Tensor | None, torch.Tensor]:
    """Device (in `precision` mode) with the model on it, the rotation as a tensor, and each unit's
    ablation value. Shared by the engine, the naive reference and cumulative ablation.

    `exact` (TF32 off) is the mode in which the engine matches the naive reference on CUDA."""
    device = torch.device(device)
    set_precision(precision)
    model.eval().to(device)
    q = None if rotation is None else torch.from_numpy(rotation).float().to(device)
    reference = images if mean_images is None else mean_images
    return device, q, ablation_values(model, layer, reference, q, value, batch_size, device, cached_trunk)
