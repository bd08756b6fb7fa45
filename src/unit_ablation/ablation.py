"""Single-unit ablation: paired per-class counts of images broken and fixed by removing a unit.

Two implementations with one contract:
- `ablate_naive`: one full forward pass per unit with a hook that edits the layer's output
  (the reference);
- `ablate_units` (plan "head-replay"): runs the trunk up to the layer once per image batch,
  then replays only the rest of the network for several ablated copies at once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unit_ablation.basis import basis_matrix, to_basis
from unit_ablation.data import load_dataset, to_float
from unit_ablation.io import atomic_path
from unit_ablation.layers import parse_layer_spec
from unit_ablation.models import FashionAlexNet, load_model, resolve_layer
from unit_ablation.progress import Progress

log = logging.getLogger(__name__)

ABLATION_VALUES = ("zero", "mean")


@dataclass
class AblationCounts:
    """broken/fixed: units x classes; n/correct: per class (intact model)."""

    units: np.ndarray
    broken: np.ndarray
    fixed: np.ndarray
    n: np.ndarray
    correct: np.ndarray


def choose_device(name: str = "auto") -> torch.device:
    """'auto' or 'cuda' use CUDA when it is available; otherwise (with a warning for 'cuda') the CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"ablation device {name!r} not in ('auto', 'cpu', 'cuda')")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        log.warning("ablation.device is 'cuda' but CUDA is not available: running on the CPU")
    return torch.device("cpu")


def ablate_directions(
    activation: torch.Tensor, units: list[int], rotation: torch.Tensor | None, values: torch.Tensor
) -> torch.Tensor:
    """K ablated copies (K x B x U x H x W) of a B x U x H x W activation, one per unit.

    Canonical basis: channel u is set to values[u]. Rotated basis: the coordinate along
    direction q_u is replaced by values[u], i.e. a <- a - q_u (q_u^T a - values[u]).
    """
    copies = activation.unsqueeze(0).repeat(len(units), 1, 1, 1, 1)
    index = torch.tensor(units, device=activation.device)
    if rotation is None:
        for k, unit in enumerate(units):
            copies[k, :, unit] = values[unit]
        return copies
    directions = rotation[:, index].T  # K x U
    projection = torch.einsum("kbuhw,ku->kbhw", copies, directions) - values[index].view(-1, 1, 1, 1)
    return copies - directions.view(len(units), 1, -1, 1, 1) * projection.unsqueeze(2)


def count_changes(
    intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (copy, class) counts of broken and fixed images; ablated is K x B predictions."""
    intact_ok = (intact == labels).unsqueeze(0)
    ablated_ok = ablated == labels.unsqueeze(0)
    offsets = torch.arange(ablated.shape[0], device=labels.device).unsqueeze(1) * num_classes
    cell = (offsets + labels.unsqueeze(0)).flatten()
    size = ablated.shape[0] * num_classes
    broken = torch.bincount(cell, weights=(intact_ok & ~ablated_ok).flatten().double(), minlength=size)
    fixed = torch.bincount(cell, weights=(~intact_ok & ablated_ok).flatten().double(), minlength=size)
    return broken.view(-1, num_classes).long(), fixed.view(-1, num_classes).long()


@torch.no_grad()
def channel_means(
    model: FashionAlexNet,
    layer: str,
    images: np.ndarray,
    rotation: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Dataset mean of every unit's coordinate (over images and positions), for mean ablation."""
    total, count = None, 0
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(to_float(images[start : start + batch_size])).to(device)
        a = model.forward_to(layer, x).double()
        z = to_basis(a, None if rotation is None else rotation.double())
        batch_sum = z.sum(dim=(0, 2, 3))
        total = batch_sum if total is None else total + batch_sum
        count += z.shape[0] * z.shape[2] * z.shape[3]
    return (total / count).float()


def _prepare(model, layer, images, rotation, value, batch_size, device):
    """Model on the device, the rotation as a tensor, and the value each unit is set to."""
    model.eval().to(device)
    q = None if rotation is None else torch.from_numpy(rotation).float().to(device)
    units = model.unit_count(layer)
    if value == "zero":
        values = torch.zeros(units, device=device)
    elif value == "mean":
        values = channel_means(model, layer, images, q, batch_size, device).to(device)
    else:
        raise ValueError(f"ablation value {value!r} not in {ABLATION_VALUES}")
    return q, values


@torch.no_grad()
def ablate_units(
    model: FashionAlexNet,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int,
    rotation: np.ndarray | None = None,
    value: str = "zero",
    batch_size: int = 500,
    units_per_pass: int = 16,
    device: str | torch.device = "cpu",
    mean_images: np.ndarray | None = None,
) -> AblationCounts:
    """Head-replay ablation of every unit in `units`: trunk once per batch, K ablated copies per head pass.

    Mean ablation uses each unit's mean over `mean_images` (default: the evaluated images).
    """
    device = torch.device(device)
    reference = images if mean_images is None else mean_images
    q, values = _prepare(model, layer, reference, rotation, value, batch_size, device)
    broken = torch.zeros(len(units), num_classes, dtype=torch.long, device=device)
    fixed = torch.zeros_like(broken)
    n = np.bincount(labels, minlength=num_classes)
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    progress = Progress(log, f"ablate {layer}", len(images), "images")
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(to_float(images[start : start + batch_size])).to(device)
        y = torch.from_numpy(labels[start : start + batch_size].astype(np.int64)).to(device)
        activation = model.forward_to(layer, x)
        intact = model.forward_from(layer, activation).argmax(1)
        correct += torch.bincount(y[intact == y], minlength=num_classes)
        for group_start in range(0, len(units), units_per_pass):
            group = units[group_start : group_start + units_per_pass]
            copies = ablate_directions(activation, group, q, values)
            logits = model.forward_from(layer, copies.flatten(0, 1))
            predictions = logits.argmax(1).view(len(group), -1)
            b, f = count_changes(intact, predictions, y, num_classes)
            broken[group_start : group_start + len(group)] += b
            fixed[group_start : group_start + len(group)] += f
        progress.update(len(x), note=f"{len(units)} units")
    return AblationCounts(
        np.array(units), broken.cpu().numpy(), fixed.cpu().numpy(), n, correct.cpu().numpy()
    )


@torch.no_grad()
def ablate_naive(
    model: FashionAlexNet,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int,
    rotation: np.ndarray | None = None,
    value: str = "zero",
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    mean_images: np.ndarray | None = None,
) -> AblationCounts:
    """Reference: a full forward pass per unit, with a hook that ablates the layer's output."""
    device = torch.device(device)
    reference = images if mean_images is None else mean_images
    q, values = _prepare(model, layer, reference, rotation, value, batch_size, device)
    module = resolve_layer(model, layer)
    x_all = torch.from_numpy(to_float(images)).to(device)
    y_all = torch.from_numpy(labels.astype(np.int64)).to(device)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [model(batch[i : i + batch_size]).argmax(1) for i in range(0, len(batch), batch_size)]
        )

    intact = predict(x_all)
    broken = np.zeros((len(units), num_classes), dtype=np.int64)
    fixed = np.zeros_like(broken)
    for k, unit in enumerate(units):
        hook = module.register_forward_hook(
            lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
        )
        try:
            ablated = predict(x_all)
        finally:
            hook.remove()
        b, f = count_changes(intact, ablated.unsqueeze(0), y_all, num_classes)
        broken[k], fixed[k] = b[0].cpu().numpy(), f[0].cpu().numpy()
    correct = torch.bincount(y_all[intact == y_all], minlength=num_classes).cpu().numpy()
    return AblationCounts(np.array(units), broken, fixed, np.bincount(labels, minlength=num_classes), correct)


def ablate_chunk_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    output: str | Path,
    layer: str,
    units: list[int],
    eval_split: str = "test",
    value: str = "zero",
    batch_size: int = 500,
    units_per_pass: int = 16,
    device: str = "auto",
    threads: int = 1,
    mean_split: str | None = None,
) -> None:
    """Ablate one chunk of units of one (model, layer spec) and write the counts to .npz.

    With `value="mean"` each unit is set to its mean over the images of `mean_split`.
    """
    torch.set_num_threads(max(1, threads))
    spec = parse_layer_spec(layer)
    torch_device = choose_device(device)
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    rotation = basis_matrix(model.unit_count(spec.layer), spec.rotation_seed)
    log.info(
        "ablating %d units of %s on %s (%s ablation, %d threads)",
        len(units),
        layer,
        torch_device,
        value,
        threads,
    )
    start = time.monotonic()
    counts = ablate_units(
        model,
        spec.layer,
        dataset.images[eval_split],
        dataset.labels[eval_split],
        units,
        dataset.num_classes,
        rotation=rotation,
        value=value,
        batch_size=batch_size,
        units_per_pass=units_per_pass,
        device=torch_device,
        mean_images=None if mean_split is None else dataset.images[mean_split],
    )
    seconds = time.monotonic() - start
    metadata = {
        "plan": "head-replay",
        "device": str(torch_device),
        "value": value,
        "mean_split": mean_split,
        "layer": layer,
        "seconds": round(seconds, 2),
        "eval_split": eval_split,
    }
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            units=counts.units,
            broken=counts.broken,
            fixed=counts.fixed,
            n=counts.n,
            correct=counts.correct,
            metadata=np.array(json.dumps(metadata)),
        )
    log.info("wrote %s in %.1fs", output, seconds)
