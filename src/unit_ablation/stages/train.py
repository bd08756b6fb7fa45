"""Stage `train`: one built-in model trained (`models.training`), its checkpoint and metadata JSON."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from unit_ablation.data.loading import load_dataset
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import atomic_path, written_together
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.models.training import TrainConfig, accuracy, train_model
from unit_ablation.runtime.device import software_versions
from unit_ablation.runtime.machine import machine_description

log = logging.getLogger(__name__)


def train_to_checkpoint(
    dataset_path: str | Path,
    checkpoint_path: str | Path,
    metadata_path: str | Path | None,
    model_name: str,
    variant: str,
    train: dict[str, Any],
    threads: int = 1,
) -> dict[str, Any]:
    """Train one model variant with the schedule `train` (`TrainConfig` fields: the config's `train`
    with the variant's overrides, its width, dropout, BN and seed) and write its checkpoint (which
    holds the metadata) and, unless `metadata_path` is None, the metadata JSON."""
    train_config = TrainConfig(**train)
    torch.set_num_threads(max(1, threads))
    dataset = load_dataset(dataset_path)
    log.info("training %s (%s) with %s on %d threads", model_name, variant, asdict(train_config), threads)
    start = time.monotonic()
    model = train_model(dataset.images["train"], dataset.labels["train"], dataset.num_classes, train_config)
    seconds = time.monotonic() - start
    # A channels-last copy evaluates about 1.5x faster on the CPU (same predictions); the
    # checkpoint keeps the contiguous weights.
    evaluated = copy.deepcopy(model).to(memory_format=torch.channels_last)
    test_accuracy = accuracy(evaluated, dataset.images["test"], dataset.labels["test"])
    heldout_accuracy = accuracy(evaluated, dataset.images["heldout"], dataset.labels["heldout"])
    log.info(
        "test accuracy %.2f%%, held-out accuracy %.2f%%, %.0fs", test_accuracy, heldout_accuracy, seconds
    )
    metadata = {
        "model": model_name,
        "architecture": model.config,
        "variant": variant,
        "training": asdict(train_config),
        "seed": train_config.seed,
        "data_checksum": dataset.checksum,
        "class_names": list(dataset.class_names),
        "test_accuracy": test_accuracy,
        "heldout_accuracy": heldout_accuracy,
        "train_seconds": round(seconds, 1),
        "threads": threads,
        **software_versions(),
        "machine": machine_description("cpu"),
    }
    metadata = stamped("model metadata", metadata)
    with written_together(checkpoint_path, *([metadata_path] if metadata_path else [])):
        save_checkpoint(model, checkpoint_path, metadata)
        if metadata_path is not None:
            with atomic_path(metadata_path) as tmp, open(tmp, "w") as handle:
                json.dump(metadata, handle, indent=2, sort_keys=True)
    return metadata
