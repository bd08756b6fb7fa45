"""The engine's entry point: ablate many units over a whole image set, trunk once per image batch
and the cheapest exact plan (closed form, delta or head replay) for many units at once, with
progress saved for resuming."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import torch
from torch import nn

from unit_ablation.engine.ablation_engine import AblationEngine, is_out_of_memory
from unit_ablation.engine.counts import AblationCounts, CountTotals
from unit_ablation.engine.hooked import HookedEngine
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions
from unit_ablation.engine.resume import (
    PartialCounts,
    ProgressSaver,
    save_or_stop,
)
from unit_ablation.engine.selection import CHECK_IMAGES, choose_engine
from unit_ablation.engine.trunk_cache import TrunkBatch, TrunkSource
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.runtime import termination
from unit_ablation.runtime.device import device_batch, image_batches
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)


class _Engine(Protocol):
    plan: str
    head_seconds: float
    executed_flops: float

    def predictions(
        self, x: torch.Tensor, units: list[int], values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def batch_predictions(
    engine: _Engine,
    x: torch.Tensor,
    units: list[int],
    values: torch.Tensor,
    limit: list[int],
    trunk: TrunkBatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`engine.predictions` on a batch, split into parts of at most `limit[0]` images; on running
    out of memory (the head already at one copy per pass, or the trunk itself) the limit halves.
    `trunk`: the batch's trunk outputs, when they are known (an `AblationEngine` only)."""
    intact, ablated, start = [], [], 0
    while start < len(x):
        part = x[start : start + limit[0]]
        try:
            if trunk is None:
                result = engine.predictions(part, units, values)
            else:
                window = slice(start, start + len(part))
                part_trunk = (trunk[0][window], [value[window] for value in trunk[1]])
                result = engine.predictions(part, units, values, trunk=part_trunk)
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error) or limit[0] == 1:
                raise
            limit[0] = max(1, min(limit[0], len(part)) // 2)
            log.warning("out of memory with a batch of %d images: halving to %d", len(part), limit[0])
            del part
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        intact.append(result[0])
        ablated.append(result[1])
        start += len(part)
    if len(intact) == 1:
        return intact[0], ablated[0]
    return torch.cat(intact), torch.cat(ablated, dim=1)


def count_batches(
    engine: _Engine,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    units: list[int],
    values: torch.Tensor,
    totals: CountTotals,
    progress: Progress,
    trunks: Iterable[TrunkBatch] | None = None,
) -> Iterator[int]:
    """Count every batch (images, labels on the engine's device) into `totals`; yields the images
    done after each batch, so that the caller can save progress. `trunks`: the batches' trunk
    outputs, when they are known."""
    limit = [max(1, 1 << 62)]
    known = iter(trunks) if trunks is not None else None
    for x, y in batches:
        trunk = None if known is None else next(known)
        intact, ablated = batch_predictions(engine, x, units, values, limit, trunk)
        totals.add(intact, ablated, y)
        progress.update(len(x), note=f"{len(units)} units")
        yield totals.images


def _engine(
    model: nn.Module,
    layer: str,
    rotation: torch.Tensor | None,
    options: AblationOptions,
    example: np.ndarray,
    device: torch.device,
) -> AblationEngine | HookedEngine:
    """The requested plan; for "auto" the fastest exact plan, or the hook-based fallback where
    torch.fx cannot trace the model (`selection.choose_engine`, checked on the first batch)."""
    if options.plan != "auto":
        return AblationEngine(model, layer, rotation, options.plan, options.units_per_pass, options.memory_mb)
    x, _ = device_batch(example, None, device)
    choice = choose_engine(model, layer, rotation, x, "auto", options.units_per_pass, options.memory_mb)
    if choice.fallback_reason:
        log.warning(
            "%s: ablating with the exact hook-based fallback (plan %r)",
            choice.fallback_reason,
            choice.engine.plan,
        )
    return choice.engine


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
    cached_trunk: TrunkSource | None = None,
) -> AblationCounts:
    """The engine: counts for every unit in `units`, with the plan chosen for (model, layer, basis).

    `rotation` is the basis (None: the layer's own units). Mean ablation uses each unit's mean over
    `mean_images` (default: the evaluated images). `options.units_per_pass` fixes K, the ablated
    copies per pass; by default K follows `options.memory_mb`. `resume` continues from the counts
    of a killed run's first images; `saver` saves the counts so far when it is due (the counts are
    sums over images, so the result is the same). `cached_trunk` gives the trunk's outputs for a set
    of images in batches of `options.batch_size` (`trunk_cache.TrunkCache.source`), where a traced
    plan runs; they are the bits the engine's own trunk would give.
    """
    device, q, values = prepare_ablation(
        model, layer, images, rotation, options.value, options.batch_size, options.device, mean_images,
        options.precision, cached_trunk,
    )  # fmt: skip
    engine = _engine(model, layer, q, options, images[:CHECK_IMAGES], device)
    labels = np.asarray(labels)
    totals = CountTotals(len(units), num_classes, device)
    done = 0
    progress = Progress(log, f"ablate {layer} ({engine.plan})", len(images), "images")
    if resume is not None:
        done = resume.images_done
        totals.resume(resume, labels[:done])
        log.info("resuming at image %d of %d", done, len(images))
        progress.update(done, note="from the saved progress")
    batches = image_batches(images[done:], labels[done:], options.batch_size, device)
    trunks = None
    if cached_trunk is not None and isinstance(engine, AblationEngine) and done % options.batch_size == 0:
        known = cached_trunk(images)
        trunks = None if known is None else known[done // options.batch_size :]
    with termination.deferred():  # SIGTERM: finish the batch, save, stop (a rerun resumes)
        for done in count_batches(engine, batches, units, values, totals, progress, trunks):
            if done == len(images):
                break  # the last batch: finish the job even when asked to stop
            save_or_stop(saver, done, len(images), totals.numpy)
    return totals.finished(
        units, plan=engine.plan, head_seconds=engine.head_seconds, head_flops=engine.executed_flops
    )
