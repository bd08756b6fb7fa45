"""Stage `ablate`: one chunk of a layer spec's units, counts written to an .npz chunk file."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unit_ablation.data.loading import load_dataset
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.naive import ablate_naive
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions
from unit_ablation.engine.resume import (
    ProgressSaver,
    file_identity,
    fingerprint,
    load_progress,
    progress_path,
)
from unit_ablation.engine.trunk_cache import TrunkCache
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import atomic_path
from unit_ablation.models.checkpoint import check_num_classes, load_model
from unit_ablation.runtime.device import (
    choose_device,
    software_versions,
)
from unit_ablation.runtime.machine import machine_description
from unit_ablation.spec.layer_spec import parse_layer_spec
from unit_ablation.spec.model_classes import model_module
from unit_ablation.workflow.code_hash import stage_code_hash

log = logging.getLogger(__name__)


PACKAGE_DIR = Path(__file__).parents[1]  # a resumed job must have run this stage's code and model class


def ablate_chunk_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    output: str | Path,
    layer_spec: str,
    units: list[int],
    options: AblationOptions = DEFAULT_OPTIONS,
    eval_split: str = "test",
    mean_split: str | None = None,
    threads: int = 1,
    save_seconds: float = 300.0,
) -> None:
    """Ablate one chunk of units of one (model, layer spec) and write the counts to .npz.

    With `options.value` "mean" each unit is set to its mean over the images of `mean_split`.
    `options.plan` is "auto" (the engine's choice), a plan name, or "naive" (the reference);
    `options.device` may be "auto".
    The engine saves its progress every `save_seconds` beside the output; a rerun of the same
    job after a kill resumes from there and writes the same counts.
    """
    value, plan, precision = options.value, options.plan, options.precision
    torch.set_num_threads(max(1, threads))
    spec = parse_layer_spec(layer_spec)
    torch_device = choose_device(options.device)
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    check_num_classes(model, model_path, dataset.num_classes, dataset_path)
    rotation = basis_matrix(model.unit_count(spec.layer), spec.rotation_seed)
    log.info(
        "ablating %d units of %s on %s (%s ablation, %d threads)",
        len(units),
        layer_spec,
        torch_device,
        value,
        threads,
    )
    start = time.monotonic()
    engine_options = replace(options, device=torch_device)
    mean_images = None if mean_split is None else dataset.images[mean_split]
    images, labels = dataset.images[eval_split], dataset.labels[eval_split]
    saver = resumed = None
    if plan == "naive":
        counts = ablate_naive(
            model, spec.layer, images, labels, units, dataset.num_classes, rotation, engine_options,
            mean_images,
        )  # fmt: skip
    else:
        code = stage_code_hash(Path(__file__), PACKAGE_DIR, [model_module(model.config["arch"])])
        job = fingerprint(
            model=file_identity(model_path), dataset=file_identity(dataset_path), layer=layer_spec,
            units=units,
            eval_split=eval_split, value=value, mean_split=mean_split, plan=plan, precision=precision,
            device=torch_device.type, torch=torch.__version__, code=code,
        )  # fmt: skip
        saver = ProgressSaver(progress_path(output), job, save_seconds)
        resumed = load_progress(saver.path, job, (len(units), dataset.num_classes))
        cache = TrunkCache.for_this_job() if torch_device.type == "cpu" else None
        counts = ablate_units(
            model, spec.layer, images, labels, units, dataset.num_classes, rotation, engine_options,
            mean_images, resume=resumed, saver=saver,
            cached_trunk=None if cache is None else cache.source(
                model, spec.layer, options.batch_size, torch_device, code
            ),
        )  # fmt: skip
        if cache is not None:
            log.info("trunk outputs: %d loaded from the run's cache, %d computed", cache.hits, cache.misses)
    seconds = time.monotonic() - start
    metadata = {
        "plan": counts.plan,
        "device": str(torch_device),
        "precision": precision,
        "value": value,
        "mean_split": mean_split,
        "layer": layer_spec,
        "seconds": round(seconds, 2),
        "eval_split": eval_split,
        "resumed_at_image": 0 if resumed is None else resumed.images_done,
        **software_versions(),
        "machine": machine_description(torch_device),
    }
    metadata = stamped("ablation chunk", metadata)
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            units=counts.units,
            broken=counts.broken,
            fixed=counts.fixed,
            n=counts.n,
            correct=counts.correct,
            **{key: getattr(counts, key) for key in HALF_ARRAYS},
            metadata=np.array(json.dumps(metadata)),
        )
    if saver is not None:
        saver.finish()
    log.info("wrote %s in %.1fs with plan %s", output, seconds, counts.plan)
