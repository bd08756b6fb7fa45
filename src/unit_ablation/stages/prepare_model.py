"""Stage `prepare_model`: a pretrained (not trained here) torchvision model's checkpoint and metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from unit_ablation.data.loading import load_dataset
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import atomic_path
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.models.torchvision_classifier import build_torchvision
from unit_ablation.models.training import accuracy as test_accuracy
from unit_ablation.runtime.device import choose_device, set_precision, software_versions

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


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
) -> dict:
    """Build `arch` with the weights file `weights_path` (random init without), check it against the
    data set, measure its test accuracy, and write the workflow's checkpoint and metadata JSON;
    `weights` is where the weights came from (`pretrained.<name>.weights`), recorded in the metadata."""
    torch.set_num_threads(max(1, threads))
    set_precision(precision)
    start = time.monotonic()
    dataset = load_dataset(dataset_path)
    if dataset.num_classes != num_classes:
        raise ValueError(
            f"pretrained.{model_name}.num_classes is {num_classes}, but the data set {dataset_path} has"
            f" {dataset.num_classes} classes"
        )
    model = build_torchvision(arch, num_classes, weights_path)
    torch_device = choose_device(device)
    model = model.to(torch_device).eval()
    accuracy = test_accuracy(model, dataset.images["test"], dataset.labels["test"], batch_size, torch_device)
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
    }
    metadata = stamped("model metadata", metadata)
    save_checkpoint(model.cpu(), checkpoint_path, metadata)
    with atomic_path(metadata_path) as tmp, open(tmp, "w") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
    return metadata
