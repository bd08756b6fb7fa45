"""`cumulative`: a class's most damaging units removed together (k = 1, 2, 4, ...), cross-fitted
on the two fixed halves of the images, against random sets of as many units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from unit_ablation.analysis.cumulative import cumulative_table, set_predictor, unit_counts, unit_sets
from unit_ablation.api.ablate import AblationResult, choose_class_names
from unit_ablation.api.inputs import Data, batches, evaluated, first_batch, resolve_device
from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.layer_hooks import layer_output
from unit_ablation.engine.values import coordinate_means
from unit_ablation.spec.layer_spec import ABLATION_VALUES


@torch.no_grad()
def cumulative(
    model: nn.Module,
    layer: str,
    data: Data,
    damage: AblationResult | pd.DataFrame,
    *,
    classes: list[str] | int = 3,
    max_units: int = 32,
    random_draws: int = 5,
    seed: int = 0,
    value: str = "zero",
    mean_data: Data | None = None,
    class_names: list[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 500,
    precision: str = "exact",
) -> pd.DataFrame:
    """Cumulative ablation curves of `layer` (canonical basis), as the workflow's `cumulative` rule.

    `damage` is `ablate`'s result on the same `data` in the same order (or its `classes` table):
    units are ranked, and `classes` chosen (names, or the N classes a single unit hurts most), by
    their drops on one fixed half of the images, and each set is evaluated on the other half;
    then the halves swap (`ranked_on`, `evaluated_on`), so that nothing is selected on the images
    it is evaluated on. The control removes k random units, `random_draws` draws per k.

    Example:
        >>> import torch, unit_ablation as ua
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        >>> data = TensorDataset(torch.rand(30, 1, 8, 8), torch.arange(30) % 3)
        >>> curves = ua.cumulative(model, "1", data, ua.ablate(model, "1", data), classes=1, max_units=2)
        >>> sorted(set(curves.k)), sorted(set(curves.ranked_on))
        ([0, 1, 2], [0, 1])
    """
    if value not in ABLATION_VALUES:
        raise ValueError(f"value {value!r} not in {ABLATION_VALUES}")
    class_damage = damage.classes if isinstance(damage, AblationResult) else damage
    if class_names is None and isinstance(damage, AblationResult):
        class_names = damage.class_names
    missing = {"drop_h0", "drop_h1", "unit", "class"} - set(class_damage.columns)
    if missing:
        raise ValueError(f"the damage table has no columns {sorted(missing)}: pass ua.ablate's result")
    torch_device = resolve_device(model, device)
    with evaluated(model, torch_device, precision):
        x, _ = first_batch(data, batch_size, torch_device)
        module = resolve_layer(model, layer)
        count = layer_output(model, module, x[:1], layer).shape[1]
        names = choose_class_names(class_names, data, model(x[:1]).shape[1])
        if value == "mean":
            reference = data if mean_data is None else mean_data
            activations = (
                layer_output(model, module, b, layer) for b, _ in batches(reference, batch_size, torch_device)
            )
            values = coordinate_means(activations, None)
        else:
            values = torch.zeros(count, device=torch_device)
        sets = unit_sets(class_damage, classes, unit_counts(max_units, count), random_draws, seed, count)
        distinct = list(dict.fromkeys(tuple(sorted(s["units"])) for s in sets))  # e.g. k = 0 once
        predict = set_predictor(model, layer)
        predictions, labels = [], []
        for x, y in batches(data, batch_size, torch_device):
            predictions.append(predict(x, distinct, values).cpu().numpy())
            labels.append(y.cpu().numpy())
    all_labels = np.concatenate(labels)
    row_of = {units: row for row, units in enumerate(distinct)}
    per_set = np.concatenate(predictions, axis=1)[[row_of[tuple(sorted(s["units"]))] for s in sets]]
    table = cumulative_table(sets, per_set, all_labels, names, evaluation_halves(all_labels))
    table.insert(0, "layer_spec", layer)
    return table
