"""Stage `extract`: a layer spec's per-image unit statistics and logits on the attribute split.

Only the attribute split: nothing downstream reads statistics of the evaluation images (the
attributes are never computed on them), and extracting them too tripled the stage's time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from unit_ablation.data.loading import load_dataset
from unit_ablation.engine.activations import layer_statistics
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.trunk_cache import TrunkCache
from unit_ablation.files.writing import atomic_path
from unit_ablation.models.checkpoint import check_num_classes, load_model
from unit_ablation.runtime.device import choose_device, set_precision
from unit_ablation.spec.layer_spec import parse_layer_spec
from unit_ablation.spec.model_classes import model_module
from unit_ablation.workflow.code_hash import stage_code_hash

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parents[1]


def extract_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    output: str | Path,
    layer_spec: str,
    attribute_split: str,
    batch_size: int = 1000,
    threads: int = 1,
    device: str = "cpu",
    precision: str = "exact",
) -> None:
    """Write `attr_{mean,max,min,zero_fraction,logits,labels}` for one (model, layer spec) to .npz:
    the statistics of the `attribute_split` images.

    Also `class_names`, and `rotation` (Q, its columns as drawn, not oriented) for a rotated basis.
    Statistics are stored un-oriented; `attributes.orientation_signs` orients them.
    """
    torch.set_num_threads(max(1, threads))
    set_precision(precision)
    torch_device = choose_device(device)
    spec = parse_layer_spec(layer_spec)
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    check_num_classes(model, model_path, dataset.num_classes, dataset_path)
    units = model.unit_count(spec.layer)
    rotation = basis_matrix(units, spec.rotation_seed)
    # a layer's bases share its activations and logits: the first job computes them
    cache = TrunkCache.for_this_job() if torch_device.type == "cpu" else None
    code = ""
    if cache is not None:
        code = stage_code_hash(Path(__file__), PACKAGE_DIR, [model_module(model.config["arch"])])
    payload: dict[str, np.ndarray] = {"class_names": np.array(dataset.class_names)}
    stats = layer_statistics(
        model,
        spec.layer,
        dataset.images[attribute_split],
        rotation,
        batch_size,
        label=f"{layer_spec} {attribute_split}",
        device=torch_device,
        cache=cache,
        code=code,
    )
    if cache is not None:
        log.info(
            "activations and logits: %d loaded from the run's cache, %d computed", cache.hits, cache.misses
        )
    for key, value in stats.items():
        payload[f"attr_{key}"] = value
    payload["attr_labels"] = dataset.labels[attribute_split]
    if rotation is not None:
        payload["rotation"] = rotation
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **payload)
    log.info("wrote %s: %d units, %d attribute images", output, units, len(payload["attr_labels"]))
