"""Stage `prepare_model`: a pretrained (not trained here) model's checkpoint and metadata: torchvision,
timm or the user's own (`python:`), checked against the data and the config's unit counts."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from unit_ablation.data.loading import load_dataset
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import atomic_path, written_together
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.models.from_spec import build_from_spec
from unit_ablation.models.training import accuracy as test_accuracy
from unit_ablation.runtime.device import choose_device, set_precision, software_versions
from unit_ablation.runtime.machine import machine_description

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_layer_units(model: torch.nn.Module, model_name: str, units: dict[str, int]) -> None:
    """Each analysed layer exists and has the unit count the chunks were planned with (`units`:
    layer -> planned count); ValueError naming the config key, the layer and the true count."""
    problems = []
    for layer, planned in units.items():
        try:
            count = model.unit_count(layer)
        except KeyError as error:
            problems.append(f"pretrained.{model_name}.layers: {error.args[0]}")
            continue
        if count != planned:
            problems.append(
                f"pretrained.{model_name}.units.{layer}: {planned} planned, but layer {layer!r} of"
                f" {model.name} has {count} units (set units: {{{layer}: {count}}})"
            )
    if problems:
        raise ValueError("; ".join(problems))


def prepare_pretrained_to_file(
    model_name: str,
    arch: str,
    num_classes: int,
    weights_path: str | Path | None,
    weights: str | None,
    dataset_path: str | Path,
    checkpoint_path: str | Path,
    metadata_path: str | Path,
    batch_size: int = 250,
    device: str = "auto",
    threads: int = 1,
    precision: str = "exact",
    units: dict[str, int] | None = None,
) -> dict:
    """Build `arch` (`models.from_spec.build_from_spec`; `python:` files relative to the working
    directory) with the weights file `weights_path` (random init without), check it against the
    data set and the planned unit counts `units` (layer -> count), measure its test accuracy, and
    write the workflow's checkpoint and metadata JSON; `weights` is where the weights came from
    (`pretrained.<name>.weights`), recorded in the metadata."""
    torch.set_num_threads(max(1, threads))
    set_precision(precision)
    start = time.monotonic()
    dataset = load_dataset(dataset_path)
    if dataset.num_classes != num_classes:
        raise ValueError(
            f"pretrained.{model_name}.num_classes is {num_classes}, but the data set {dataset_path} has"
            f" {dataset.num_classes} classes"
        )
    images = dataset.images["test"]
    model = build_from_spec(arch, num_classes, weights_path=weights_path, input_size=tuple(images.shape[1:]))
    check_layer_units(model, model_name, units or {})
    torch_device = choose_device(device)
    model = model.to(torch_device).eval()
    accuracy = test_accuracy(model, images, dataset.labels["test"], batch_size, torch_device)
    log.info("%s (%s, weights %s): test accuracy %.2f%%", model_name, arch, weights, accuracy)
    metadata = {
        "model": model_name,
        "architecture": dict(model.config),
        "variant": model_name,
        "seed": 0,  # not trained here; 0 keeps it in the per-seed tables
        "weights": weights,
        "weights_sha256": None if weights_path is None else file_sha256(weights_path),
        "data_checksum": dataset.checksum,
        "class_names": list(dataset.class_names),
        "test_accuracy": accuracy,
        "prepare_seconds": round(time.monotonic() - start, 1),
        "device": str(torch_device),
        "precision": precision,
        **software_versions(),
        "machine": machine_description(torch_device),
    }
    metadata = stamped("model metadata", metadata)
    with written_together(checkpoint_path, metadata_path):
        save_checkpoint(model.cpu(), checkpoint_path, metadata)
        with atomic_path(metadata_path) as tmp, open(tmp, "w") as handle:
            json.dump(metadata, handle, indent=2, sort_keys=True)
    return metadata
