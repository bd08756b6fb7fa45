"""Per-image unit statistics at a layer (in its basis) and the intact logits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from unit_ablation.engine.basis import to_basis
from unit_ablation.engine.graph_split import TraceFailed, resolve_layer, run_trunk, split_model
from unit_ablation.engine.layer_hooks import output_and_logits
from unit_ablation.engine.trunk_cache import TrunkCache, trunk_key
from unit_ablation.runtime.device import image_batches
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)


STATISTICS = ("mean", "max", "min", "zero_fraction")


def image_statistics(activation: torch.Tensor, rotation: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per image and unit: the spatial mean, max, min and fraction of zero positions of z = Q^T a
    (images x units each; a layer without spatial positions has one)."""
    z = to_basis(activation, rotation)
    z = z.flatten(2) if z.dim() > 2 else z.unsqueeze(2)
    return {"mean": z.mean(2), "max": z.amax(2), "min": z.amin(2), "zero_fraction": (z == 0).float().mean(2)}


def activation_and_logits(
    model: nn.Module, layer: str
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A function giving a batch's activation at `layer` and its logits: the traced trunk and head,
    or (for a model torch.fx cannot trace) the whole model with a hook."""
    try:
        split = split_model(model, layer)
    except TraceFailed as error:
        log.warning("%s: the layer's activations come from hooks", error)
        module = resolve_layer(model, layer)
        return lambda x: output_and_logits(model, module, x, layer)

    def traced(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activation, side = run_trunk(split, x)
        return activation, split.head(activation.clone(), *side)  # the head may work in place

    return traced


@torch.no_grad()
def layer_statistics(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: np.ndarray | None = None,
    batch_size: int = 1000,
    label: str = "",
    device: torch.device | None = None,
    cache: TrunkCache | None = None,
    code: str = "",
) -> dict[str, np.ndarray]:
    """Per image and unit: spatial mean, max, min and fraction of zero positions; plus logits.

    The coordinates are z = Q^T a (the canonical basis when `rotation` is None), as drawn: the
    sign of a rotated direction is arbitrary, and the attribute stage orients it (q_j^T mu >= 0).
    Flipping coordinate j maps its spatial max to minus its spatial min, so the min is kept too.
    Uses the same trunk/head split as the ablation engine; a model torch.fx cannot trace is run
    whole, with a hook that copies the layer's output.

    With a run's `cache` (and `code`, the calling stage's code hash) the activations and logits
    are shared by the layer's bases: the first job computes and stores them, the others load them.
    """
    device = device or torch.device("cpu")
    model = model.eval().to(device)

    def computed() -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        progress = Progress(log, f"extract {label}".strip(), len(images), "images")
        forward = activation_and_logits(model, layer)
        for x, _ in image_batches(images, None, batch_size, device):
            activation, logits = forward(x)
            progress.update(len(x))
            yield activation, [logits]

    batches: Iterable[tuple[torch.Tensor, list[torch.Tensor]]] | None = None
    if cache is not None:
        key = trunk_key(model, layer, images, batch_size, device, code, kind="activations and logits")
        batches = cache.batches(key, computed, -(-len(images) // batch_size))
    if batches is None:
        batches = computed()
    q = None if rotation is None else torch.from_numpy(rotation).float().to(device)
    outputs: dict[str, list[np.ndarray]] = {
        key: [] for key in ("mean", "max", "min", "zero_fraction", "logits")
    }
    for activation, (logits,) in batches:
        for key, value in image_statistics(activation, q).items():
            outputs[key].append(value.cpu().numpy())
        outputs["logits"].append(logits.cpu().numpy())
    return {key: np.concatenate(value) for key, value in outputs.items()}
