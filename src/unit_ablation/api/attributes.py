"""`attributes`: the workflow's unit attribute tables (selectivity, class correlation, activation
statistics, weight norms) for one layer of any classifier, over a torch Dataset or DataLoader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from unit_ablation.analysis.attributes import unit_attributes
from unit_ablation.api.ablate import choose_class_names
from unit_ablation.api.inputs import Data, batches, evaluated, resolve_device
from unit_ablation.engine.activations import STATISTICS, image_statistics
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.layer_hooks import output_and_logits
from unit_ablation.files.writing import write_tsv
from unit_ablation.spec.layer_spec import LayerSpec


@dataclass
class AttributeResult:
    """`units`: one row per unit, the columns of the workflow's `attributes/{layer}.tsv`;
    `classes`: one row per (unit, class), those of `attributes/per_class/{layer}.tsv`."""

    units: pd.DataFrame
    classes: pd.DataFrame
    layer_spec: str

    def to_tsv(self, folder: str | Path) -> tuple[Path, Path]:
        """Write `{layer_spec}.tsv` and `per_class/{layer_spec}.tsv` into `folder`, as the workflow does."""
        units, classes = (
            Path(folder) / f"{self.layer_spec}.tsv",
            Path(folder) / "per_class" / f"{self.layer_spec}.tsv",
        )
        classes.parent.mkdir(parents=True, exist_ok=True)
        write_tsv(self.units, units)
        write_tsv(self.classes, classes)
        return units, classes


def _layer_weights(model: nn.Module, layer: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The weights producing and reading the layer's units where the model defines them (the
    built-in and torchvision models do); otherwise a Conv2d or Linear layer's own filters in, none out."""
    weights: list[np.ndarray | None] = []
    for method in ("incoming_weight", "outgoing_weight"):
        try:
            weights.append(getattr(model, method)(layer).detach().cpu().double().numpy())
        except (AttributeError, ValueError, KeyError):
            weights.append(None)
    module = resolve_layer(model, layer)
    if weights[0] is None and isinstance(module, nn.Conv2d | nn.Linear):
        weights[0] = module.weight.detach().cpu().double().numpy()
    return weights[0], weights[1]


@torch.no_grad()
def attributes(
    model: nn.Module,
    layer: str,
    data: Data,
    *,
    rotation_seed: int | None = None,
    class_names: list[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 500,
    precision: str = "exact",
) -> AttributeResult:
    """Unit attributes of `layer` over `data`: activation statistics, class selectivity and gap,
    class correlation, and the L1 norms of the weights into and out of each unit (NaN where the
    model does not define them). Arguments as for `ablate`.

    Attributes that will rank or select units should come from other images than those the
    ablation is evaluated on (docs/science.md).

    Example:
        >>> import torch, unit_ablation as ua
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        >>> data = TensorDataset(torch.rand(30, 1, 8, 8), torch.arange(30) % 3)
        >>> table = ua.attributes(model, "1", data).units
        >>> len(table), "class_selectivity" in table
        (4, True)
    """
    torch_device = resolve_device(model, device)
    module = resolve_layer(model, layer)
    outputs: dict[str, list[np.ndarray]] = {key: [] for key in (*STATISTICS, "logits", "labels")}
    with evaluated(model, torch_device, precision):
        rotation = q = None
        for x, y in batches(data, batch_size, torch_device):
            activation, logits = output_and_logits(model, module, x, layer)
            if rotation_seed is not None and q is None:
                rotation = basis_matrix(activation.shape[1], rotation_seed)
                q = torch.from_numpy(rotation).float().to(torch_device)
            for key, value in image_statistics(activation, q).items():
                outputs[key].append(value.cpu().numpy())
            outputs["logits"].append(logits.cpu().numpy())
            outputs["labels"].append(y.cpu().numpy())
        weight_in, weight_out = _layer_weights(model, layer)
    arrays = {key: np.concatenate(value) for key, value in outputs.items()}
    names = choose_class_names(class_names, data, arrays["logits"].shape[1])
    per_unit, per_class = unit_attributes(
        mean=arrays["mean"].astype(np.float64),
        maximum=arrays["max"].astype(np.float64),
        zero_fraction=arrays["zero_fraction"],
        logits=arrays["logits"].astype(np.float64),
        labels=arrays["labels"],
        class_names=names,
        weight_in=weight_in,
        weight_out=weight_out,
        rotation=rotation,
        minimum=arrays["min"].astype(np.float64),
    )
    return AttributeResult(per_unit, per_class, LayerSpec(layer, rotation_seed).name)
