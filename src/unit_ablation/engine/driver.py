"""The engine's entry point: ablate many units over a whole image set, trunk once per image batch
and the cheapest exact plan (closed form, delta or head replay) for many units at once, with
progress saved for resuming."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.ablation_engine import AblationEngine, is_out_of_memory
from unit_ablation.engine.counts import UNIT_HALF_ARRAYS, AblationCounts, count_batch, finished_counts
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions
from unit_ablation.engine.resume import (
    PartialCounts,
    ProgressSaver,
)
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.runtime.device import (
    device_batch,
)
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)


@torch.no_grad()
def ablate_units(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int,
    rotation: np.ndarray | None = None,
    options: AblationOptions = DEFAULT_OPTIONS,
    mean_images: np.ndarray | None = None,
    resume: PartialCounts | None = None,
    saver: ProgressSaver | None = None,
) -> AblationCounts:
    """The engine: counts for every unit in `units`, with the plan chosen for (model, layer, basis).

    `rotation` is the basis (None: the layer's own units). Mean ablation uses each unit's mean over
    `mean_images` (default: the evaluated images). `options.units_per_pass` fixes K, the ablated
    copies per pass; by default K follows `options.memory_mb`. `resume` continues from the counts
    of a killed run's first images; `saver` saves the counts so far when it is due (the counts are
    sums over images, so the result is the same).
    """
    device, q, values = prepare_ablation(
        model, layer, images, rotation, options.value, options.batch_size, options.device, mean_images,
        options.precision,
    )  # fmt: skip
    engine = AblationEngine(model, layer, q, options.plan, options.units_per_pass, options.memory_mb)
    batch_size = options.batch_size
    shapes = {key: (2, len(units), num_classes) for key in UNIT_HALF_ARRAYS}
    shapes |= {"correct_half": (2, num_classes), "predicted_half": (2, num_classes)}
    totals = {key: torch.zeros(shape, dtype=torch.long, device=device) for key, shape in shapes.items()}
    halves = torch.from_numpy(evaluation_halves(labels)).to(device)
    done = 0
    progress = Progress(log, f"ablate {layer} ({engine.plan})", len(images), "images")
    if resume is not None:
        done = resume.images_done
        for key in totals:
            totals[key] += torch.from_numpy(np.asarray(getattr(resume, key))).to(device)
        log.info("resuming at image %d of %d", done, len(images))
        progress.update(done, note="from the saved progress")
    while done < len(images):
        x, y = device_batch(images[done : done + batch_size], labels[done : done + batch_size], device)
        try:
            intact, predictions = engine.predictions(x, units, values)
        except (RuntimeError, MemoryError) as error:
            # the head already went down to one copy per pass (or the trunk itself ran out)
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory with a batch of %d images: halving to %d", len(x), batch_size)
            del x, y
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        batch = count_batch(intact, predictions, y, halves[done : done + len(x)], num_classes)
        for key, value in batch.items():
            totals[key] += value
        done += len(x)
        progress.update(len(x), note=f"{len(units)} units")
        if saver is not None and saver.due() and done < len(images):
            saver.save(PartialCounts(done, **{key: value.cpu().numpy() for key, value in totals.items()}))
    return finished_counts(
        units,
        labels,
        num_classes,
        {key: value.cpu().numpy() for key, value in totals.items()},
        plan=engine.plan,
        head_seconds=engine.head_seconds,
        head_flops=engine.executed_flops,
    )
