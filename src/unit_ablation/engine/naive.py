"""The reference: one full forward pass per unit with a hook that edits the layer's output.

Its counts, written out class by class (`counts_from_predictions`), are what the engine must
equal exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.ablation_engine import ablate_directions
from unit_ablation.engine.counts import AblationCounts, counts_from_predictions, finished_counts
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.runtime.device import (
    image_batches,
)


@torch.no_grad()
def ablate_naive(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int,
    rotation: np.ndarray | None = None,
    options: AblationOptions = DEFAULT_OPTIONS,
    mean_images: np.ndarray | None = None,
) -> AblationCounts:
    """Reference: a full forward pass per unit, with a hook that ablates the layer's output.

    Mean ablation uses each unit's mean over `mean_images` (default: the evaluated images). Of
    the options, the plan, units_per_pass and memory_mb do not apply (one copy per pass).
    """
    batch_size = options.batch_size
    device, q, values = prepare_ablation(
        model, layer, images, rotation, options.value, batch_size, options.device, mean_images,
        options.precision,
    )  # fmt: skip
    module = resolve_layer(model, layer)
    labels = np.asarray(labels).astype(np.int64)

    def predict() -> torch.Tensor:
        # batch by batch: a paper-scale split as float32 would not fit in memory
        return torch.cat([model(x).argmax(1) for x, _ in image_batches(images, None, batch_size, device)])

    intact = predict().cpu().numpy()
    ablated = np.empty((len(units), len(labels)), dtype=np.int64)  # K x N: 8 bytes per unit and image
    for k, unit in enumerate(units):
        hook = module.register_forward_hook(
            lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
        )
        try:
            ablated[k] = predict().cpu().numpy()
        finally:
            hook.remove()
    half_counts = counts_from_predictions(intact, ablated, labels, evaluation_halves(labels), num_classes)
    return finished_counts(units, labels, num_classes, half_counts)
