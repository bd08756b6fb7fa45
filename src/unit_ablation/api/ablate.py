"""`ablate`: every unit of one layer of any classifier ablated in turn, over a torch Dataset or
DataLoader, with the workflow's engine, counts and damage tables."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from unit_ablation.analysis.damage import class_table, unit_table
from unit_ablation.api.inputs import (
    Data,
    batches,
    dataset_class_names,
    evaluated,
    first_batch,
    image_count,
    resolve_device,
)
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.counts import AblationCounts, CountTotals
from unit_ablation.engine.driver import count_batches
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.hooked import HOOKED_PLAN, HookedEngine
from unit_ablation.engine.layer_hooks import layer_output
from unit_ablation.engine.selection import EngineChoice, choose_engine
from unit_ablation.engine.values import coordinate_means
from unit_ablation.files.writing import write_tsv
from unit_ablation.runtime.progress import Progress
from unit_ablation.spec.layer_spec import ABLATION_VALUES, LayerSpec

log = logging.getLogger(__name__)


class FallbackWarning(UserWarning):
    """The model could not be split by torch.fx: units are ablated by the exact, slower hook path."""


@dataclass
class AblationResult:
    """The counts of one layer's ablation and the workflow's damage tables built from them.

    `units`: one row per unit, the columns of `{layer}.units.tsv`; `classes`: one row per
    (unit, class), the columns of `{layer}.classes.tsv` (docs/outputs.md explains each column).
    """

    counts: AblationCounts
    class_names: list[str]
    layer_spec: str  # the layer, and `@rotSEED` in a rotated basis: the tables' file stem
    fallback_reason: str = ""  # why the hook-based fallback was used ("" when it was not)
    damage_thresholds: tuple[float, ...] = field(default=(2, 5, 10))
    fdr_alpha: float = 0.05
    fdr_method: str = "mid-p"

    @property
    def plan(self) -> str:
        return self.counts.plan

    def count_arrays(self) -> dict[str, np.ndarray]:
        """The counts as the gather stage reads them from chunk files."""
        arrays = {f.name: getattr(self.counts, f.name) for f in fields(self.counts) if f.name != "plan"}
        arrays["plan"] = np.array([self.counts.plan] * len(self.counts.units))
        return arrays

    @cached_property
    def units(self) -> pd.DataFrame:
        arrays = self.count_arrays()
        return unit_table(arrays, self.class_names, self.damage_thresholds, self.fdr_alpha, self.fdr_method)

    @cached_property
    def classes(self) -> pd.DataFrame:
        return class_table(self.count_arrays(), self.class_names, self.fdr_alpha, self.fdr_method)

    def to_tsv(self, folder: str | Path) -> tuple[Path, Path]:
        """Write `{layer_spec}.units.tsv` and `{layer_spec}.classes.tsv` into `folder`, as the
        workflow's gather stage does; returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        units, classes = folder / f"{self.layer_spec}.units.tsv", folder / f"{self.layer_spec}.classes.tsv"
        write_tsv(self.units, units)
        write_tsv(self.classes, classes)
        return units, classes


def check_units(units: list[int] | None, count: int, layer: str) -> list[int]:
    """The units to ablate: all of the layer's by default; raises naming one out of range."""
    if units is None:
        return list(range(count))
    chosen = [int(u) for u in units]
    bad = [u for u in chosen if not 0 <= u < count]
    if bad:
        raise ValueError(f"unit {bad[0]} is not one of layer {layer!r}'s units 0..{count - 1}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"units of layer {layer!r} are listed more than once")
    return chosen


def choose_class_names(class_names: list[str] | None, data: Data, num_classes: int) -> list[str]:
    """`class_names`, else the dataset's `classes`, else "0", "1", ...; one per logit."""
    names = class_names if class_names is not None else dataset_class_names(data)
    names = [str(k) for k in range(num_classes)] if names is None else [str(name) for name in names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names, but the model gives {num_classes} logits")
    return names


def warn_fallback(choice: EngineChoice) -> None:
    if isinstance(choice.engine, HookedEngine) and choice.fallback_reason:
        warnings.warn(
            f"{choice.fallback_reason}: ablating with the exact hook-based fallback, plan {HOOKED_PLAN!r} "
            "(full forward passes, one unit per forward or units stacked along the batch where a "
            "check on the first batch shows it exact), slower than the traced plans",
            FallbackWarning,
            stacklevel=3,
        )


@torch.no_grad()
def ablate(
    model: nn.Module,
    layer: str,
    data: Data,
    *,
    units: list[int] | None = None,
    value: str = "zero",
    rotation_seed: int | None = None,
    mean_data: Data | None = None,
    class_names: list[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 500,
    precision: str = "exact",
    plan: str = "auto",
    units_per_pass: int | None = None,
    memory_mb: float | None = None,
) -> AblationResult:
    """Ablate each unit (channel) of `layer` in turn and count, per class, the images it breaks
    and fixes, with the workflow's exact engine.

    `model` maps the data's images, as the data yields them, to logits; `layer` is a module path
    from `named_modules()` (or an alias of a model that has them). `data` is a torch Dataset of
    (image, label) or a DataLoader, read in batches (`batch_size` items for a Dataset). Options
    as the config's `ablation:` keys: `value` "zero" or "mean" (each unit's mean over
    `mean_data`, by default `data`), `rotation_seed` a random orthogonal basis, `device` (None:
    the model's own; "auto": CUDA when available), `precision` "exact" (TF32 off) or "fast",
    `plan` "auto", one of the engine's plans or "hooks" (the fallback). The model is evaluated in
    eval mode and left in the mode and on the device it had.

    Models that torch.fx cannot trace are ablated by full forward passes with a hook (exact,
    slower), with a `FallbackWarning` that names the reason.

    Example:
        >>> import torch, unit_ablation as ua
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        >>> data = TensorDataset(torch.rand(30, 1, 8, 8), torch.arange(30) % 3)
        >>> result = ua.ablate(model, "1", data)
        >>> result.plan, len(result.units), len(result.classes)
        ('delta', 4, 12)
    """
    if value not in ABLATION_VALUES:
        raise ValueError(f"value {value!r} not in {ABLATION_VALUES}")
    torch_device = resolve_device(model, device)
    with evaluated(model, torch_device, precision):
        x, _ = first_batch(data, batch_size, torch_device)
        example = layer_output(model, resolve_layer(model, layer), x[:1], layer)
        if rotation_seed is not None and example.dim() != 4:
            raise ValueError(
                f"a rotated basis needs a 4-d layer output (N x C x H x W); {layer!r} gives {example.dim()}-d"
            )
        chosen = check_units(units, example.shape[1], layer)
        rotation = basis_matrix(example.shape[1], rotation_seed)
        q = None if rotation is None else torch.from_numpy(rotation).float().to(torch_device)
        choice = choose_engine(model, layer, q, x, plan, units_per_pass, memory_mb)
        num_classes = model(x[:1]).shape[1]
        names = choose_class_names(class_names, data, num_classes)
        if value == "mean":
            reference = data if mean_data is None else mean_data
            values = coordinate_means(
                (choice.activation(b) for b, _ in batches(reference, batch_size, torch_device)), q
            )
        else:
            values = torch.zeros(example.shape[1], device=torch_device)
        warn_fallback(choice)
        totals = CountTotals(len(chosen), num_classes, torch_device)
        progress = Progress(log, f"ablate {layer} ({choice.engine.plan})", image_count(data), "images")
        for _ in count_batches(
            choice.engine, batches(data, batch_size, torch_device), chosen, values, totals, progress
        ):
            pass
        counts = totals.finished(
            chosen,
            plan=choice.engine.plan,
            head_seconds=choice.engine.head_seconds,
            head_flops=choice.engine.executed_flops,
        )
    return AblationResult(counts, names, LayerSpec(layer, rotation_seed).name, choice.fallback_reason)
