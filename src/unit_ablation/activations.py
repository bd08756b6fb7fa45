"""Extract per-image unit statistics at a layer (in its basis) and the intact logits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unit_ablation.basis import basis_matrix, to_basis
from unit_ablation.data import load_dataset
from unit_ablation.device import choose_device, image_batches, set_precision
from unit_ablation.graph_split import run_trunk, split_model
from unit_ablation.io import atomic_path
from unit_ablation.layers import parse_layer_spec
from unit_ablation.models import check_num_classes, load_model
from unit_ablation.progress import Progress

log = logging.getLogger(__name__)


@torch.no_grad()
def layer_statistics(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: np.ndarray | None = None,
    batch_size: int = 1000,
    label: str = "",
    device: torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Per image and unit: spatial mean, max, min and fraction of zero positions; plus logits.

    The coordinates are z = Q^T a (the canonical basis when `rotation` is None), as drawn: the
    sign of a rotated direction is arbitrary, and the attribute stage orients it (q_j^T mu >= 0).
    Flipping coordinate j maps its spatial max to minus its spatial min, so the min is kept too.
    Uses the same trunk/head split as the ablation engine, so any fx-traceable model works.
    """
    device = device or torch.device("cpu")
    split = split_model(model.eval().to(device), layer)
    q = None if rotation is None else torch.from_numpy(rotation).float().to(device)
    outputs: dict[str, list[np.ndarray]] = {
        key: [] for key in ("mean", "max", "min", "zero_fraction", "logits")
    }
    progress = Progress(log, f"extract {label}".strip(), len(images), "images")
    for x, _ in image_batches(images, None, batch_size, device):
        activation, side = run_trunk(split, x)
        logits = split.head(activation.clone(), *side)  # the head may work in place
        z = to_basis(activation, q).flatten(2)
        outputs["mean"].append(z.mean(2).cpu().numpy())
        outputs["max"].append(z.amax(2).cpu().numpy())
        outputs["min"].append(z.amin(2).cpu().numpy())
        outputs["zero_fraction"].append((z == 0).float().mean(2).cpu().numpy())
        outputs["logits"].append(logits.cpu().numpy())
        progress.update(len(x))
    return {key: np.concatenate(value) for key, value in outputs.items()}


def extract_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    output: str | Path,
    layer: str,
    attribute_split: str,
    eval_split: str = "test",
    batch_size: int = 1000,
    threads: int = 1,
    device: str = "cpu",
    precision: str = "exact",
) -> None:
    """Write `{eval,attr}_{mean,max,min,zero_fraction,logits,labels}` for one (model, layer spec) to .npz.

    Also `class_names`, and `rotation` (Q, its columns as drawn, not oriented) for a rotated basis.
    Statistics are stored un-oriented; `attributes.orientation_signs` orients them.
    """
    torch.set_num_threads(max(1, threads))
    set_precision(precision)
    torch_device = choose_device(device)
    spec = parse_layer_spec(layer)
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    check_num_classes(model, model_path, dataset.num_classes, dataset_path)
    units = model.unit_count(spec.layer)
    rotation = basis_matrix(units, spec.rotation_seed)
    payload: dict[str, np.ndarray] = {"class_names": np.array(dataset.class_names)}
    for prefix, split in (("eval", eval_split), ("attr", attribute_split)):
        stats = layer_statistics(
            model,
            spec.layer,
            dataset.images[split],
            rotation,
            batch_size,
            label=f"{layer} {split}",
            device=torch_device,
        )
        for key, value in stats.items():
            payload[f"{prefix}_{key}"] = value
        payload[f"{prefix}_labels"] = dataset.labels[split]
    if rotation is not None:
        payload["rotation"] = rotation
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **payload)
    log.info(
        "wrote %s: %d units, %d eval and %d attribute images",
        output,
        units,
        len(payload["eval_labels"]),
        len(payload["attr_labels"]),
    )
