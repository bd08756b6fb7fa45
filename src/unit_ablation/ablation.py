"""Single-unit ablation: paired per-class counts of images broken and fixed by removing a unit.

Two implementations with one contract:
- `ablate_units`: the engine (`unit_ablation.engine`): trunk once per image batch, then the
  cheapest exact plan (closed form, delta or head replay) for many units at once;
- `ablate_naive`: the reference, one full forward pass per unit with a hook that edits the
  layer's output, its counts written out class by class (`counts_from_predictions`).
Both count per fixed half of the images (`halves.evaluation_halves`) too, and the changes of
predicted class (`newly`, `no_longer`) that balanced single-class accuracy needs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unit_ablation.basis import basis_matrix, to_basis
from unit_ablation.code_hash import stage_code_hash
from unit_ablation.data import load_dataset, to_float
from unit_ablation.device import choose_device, device_batch, image_batches, set_precision, software_versions
from unit_ablation.engine import AblationEngine, ablate_directions, is_out_of_memory
from unit_ablation.graph_split import run_trunk, split_model
from unit_ablation.halves import evaluation_halves
from unit_ablation.io import atomic_path
from unit_ablation.layers import parse_layer_spec
from unit_ablation.models import check_num_classes, load_model, resolve_layer
from unit_ablation.progress import Progress
from unit_ablation.resume import (
    PartialCounts,
    ProgressSaver,
    file_identity,
    fingerprint,
    load_progress,
    progress_path,
)

log = logging.getLogger(__name__)

ABLATION_VALUES = ("zero", "mean")


@dataclass
class AblationCounts:
    """Paired counts of one ablation run; `plan`: how it was computed.

    Totals: broken/fixed (units x classes), n/correct (per class, intact model). Per fixed half
    of the images (`halves.evaluation_halves`; the totals are their sums): broken_half,
    fixed_half, newly, no_longer (2 x units x classes) and n_half, correct_half, predicted_half
    (2 x classes). `newly[h, u, k]`: images of half h (of any label) the intact model does not
    predict as k and the ablated model does; `no_longer[h, u, k]`: images it predicts as k and
    the ablated model does not; `predicted_half[h, k]`: images the intact model predicts as k.
    """

    units: np.ndarray
    broken: np.ndarray
    fixed: np.ndarray
    n: np.ndarray
    correct: np.ndarray
    broken_half: np.ndarray
    fixed_half: np.ndarray
    newly: np.ndarray
    no_longer: np.ndarray
    n_half: np.ndarray
    correct_half: np.ndarray
    predicted_half: np.ndarray
    plan: str = "naive"
    head_seconds: float = 0.0  # engine only: time on the ablated copies, trunk excluded
    head_flops: float = 0.0  # engine only: Linear/Conv2d FLOPs executed on the ablated copies

    @property
    def predicted(self) -> np.ndarray:
        """Images the intact model predicts as each class."""
        return self.predicted_half.sum(axis=0)


# the arrays of AblationCounts (and of a chunk file) that are counts per half of the images
UNIT_HALF_ARRAYS = ("broken_half", "fixed_half", "newly", "no_longer")  # 2 x units x classes
HALF_ARRAYS = (*UNIT_HALF_ARRAYS, "n_half", "correct_half", "predicted_half")


def count_changes(
    intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (copy, class) counts of broken and fixed images; ablated is K x B predictions."""
    intact_ok = (intact == labels).unsqueeze(0)
    ablated_ok = ablated == labels.unsqueeze(0)
    offsets = torch.arange(ablated.shape[0], device=labels.device).unsqueeze(1) * num_classes
    cell = (offsets + labels.unsqueeze(0)).flatten()
    size = ablated.shape[0] * num_classes
    broken = torch.bincount(cell[(intact_ok & ~ablated_ok).flatten()], minlength=size)
    fixed = torch.bincount(cell[(~intact_ok & ablated_ok).flatten()], minlength=size)
    return broken.view(-1, num_classes), fixed.view(-1, num_classes)


def count_batch(
    intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor, halves: torch.Tensor, num_classes: int
) -> dict[str, torch.Tensor]:
    """Counts of one batch per half: broken_half, fixed_half, newly, no_longer (2 x K x classes)
    and correct_half, predicted_half (2 x classes) of the intact model.

    intact, labels, halves: B; ablated: K x B predictions.
    """
    copies = ablated.shape[0]
    size = 2 * copies * num_classes
    # cell (half, copy, class) of every (copy, image), less the class
    copy = torch.arange(copies, device=labels.device).unsqueeze(1)
    base = (halves.unsqueeze(0) * copies + copy) * num_classes
    intact_ok = (intact == labels).unsqueeze(0)
    ablated_ok = ablated == labels.unsqueeze(0)
    changed = ablated != intact.unsqueeze(0)

    def tally(cells: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return torch.bincount(cells[where], minlength=size).view(2, copies, num_classes)

    def tally_intact(cells: torch.Tensor) -> torch.Tensor:
        return torch.bincount(cells, minlength=2 * num_classes).view(2, num_classes)

    by_label = base + labels.unsqueeze(0)
    return {
        "broken_half": tally(by_label, intact_ok & ~ablated_ok),
        "fixed_half": tally(by_label, ~intact_ok & ablated_ok),
        "newly": tally(base + ablated, changed),
        "no_longer": tally(base + intact.unsqueeze(0), changed),
        "correct_half": tally_intact((halves * num_classes + labels)[intact == labels]),
        "predicted_half": tally_intact(halves * num_classes + intact),
    }


def counts_from_predictions(
    intact: np.ndarray, ablated: np.ndarray, labels: np.ndarray, halves: np.ndarray, num_classes: int
) -> dict[str, np.ndarray]:
    """The same counts as `count_batch`, written out class by class in numpy: the reference.

    intact, labels, halves: N; ablated: K x N predictions.
    """
    shape = (2, ablated.shape[0], num_classes)
    counts = {key: np.zeros(shape, np.int64) for key in UNIT_HALF_ARRAYS}
    counts |= {key: np.zeros((2, num_classes), np.int64) for key in ("correct_half", "predicted_half")}
    intact_ok, ablated_ok = intact == labels, ablated == labels
    for h in range(2):
        half = halves == h
        for k in range(num_classes):
            in_class = half & (labels == k)
            counts["broken_half"][h, :, k] = (in_class & intact_ok & ~ablated_ok).sum(axis=1)
            counts["fixed_half"][h, :, k] = (in_class & ~intact_ok & ablated_ok).sum(axis=1)
            counts["newly"][h, :, k] = (half & (intact != k) & (ablated == k)).sum(axis=1)
            counts["no_longer"][h, :, k] = (half & (intact == k) & (ablated != k)).sum(axis=1)
            counts["correct_half"][h, k] = (in_class & intact_ok).sum()
            counts["predicted_half"][h, k] = (half & (intact == k)).sum()
    return counts


def class_sizes_per_half(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n_half: images of each class in each half (2 x classes)."""
    halves = evaluation_halves(labels)
    return np.stack([np.bincount(labels[halves == h], minlength=num_classes) for h in range(2)])


def finished_counts(
    units: list[int], labels: np.ndarray, num_classes: int, half_counts: dict[str, np.ndarray], **run: object
) -> AblationCounts:
    """AblationCounts from the per-half counts (numpy), with the totals as their sums."""
    n_half = class_sizes_per_half(labels, num_classes)
    return AblationCounts(
        units=np.array(units),
        broken=half_counts["broken_half"].sum(axis=0),
        fixed=half_counts["fixed_half"].sum(axis=0),
        n=n_half.sum(axis=0),
        correct=half_counts["correct_half"].sum(axis=0),
        n_half=n_half,
        **{key: half_counts[key] for key in HALF_ARRAYS if key != "n_half"},
        **run,
    )


@torch.no_grad()
def channel_means(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Dataset mean of every unit's coordinate (over images and positions), for mean ablation."""
    split = split_model(model, layer)
    total, count = None, 0
    for x, _ in image_batches(images, None, batch_size, device):
        activation = run_trunk(split, x)[0].double()
        z = to_basis(activation, None if rotation is None else rotation.double())
        batch_sum = z.sum(dim=[0, *range(2, z.dim())])
        total = batch_sum if total is None else total + batch_sum
        count += z.numel() // z.shape[1]
    return (total / count).float()


def ablation_values(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: torch.Tensor | None,
    value: str,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """What each unit's coordinate is set to: 0, or its mean over `images`."""
    if value == "mean":
        return channel_means(model, layer, images, rotation, batch_size, device).to(device)
    if value == "zero":
        units = run_trunk(split_model(model, layer), torch.from_numpy(to_float(images[:1])).to(device))[0]
        return torch.zeros(units.shape[1], device=device)
    raise ValueError(f"ablation value {value!r} not in {ABLATION_VALUES}")


def prepare_ablation(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    rotation: np.ndarray | None,
    value: str,
    batch_size: int,
    device: str | torch.device,
    mean_images: np.ndarray | None,
    precision: str = "exact",
) -> tuple[torch.device, torch.Tensor | None, torch.Tensor]:
    """Device (in `precision` mode) with the model on it, the rotation as a tensor, and each unit's
    ablation value. Shared by the engine, the naive reference and cumulative ablation.

    `exact` (TF32 off) is the mode in which the engine matches the naive reference on CUDA."""
    device = torch.device(device)
    set_precision(precision)
    model.eval().to(device)
    q = None if rotation is None else torch.from_numpy(rotation).float().to(device)
    reference = images if mean_images is None else mean_images
    return device, q, ablation_values(model, layer, reference, q, value, batch_size, device)


@torch.no_grad()
def ablate_units(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int,
    rotation: np.ndarray | None = None,
    value: str = "zero",
    batch_size: int = 500,
    units_per_pass: int | None = None,
    device: str | torch.device = "cpu",
    mean_images: np.ndarray | None = None,
    plan: str = "auto",
    memory_budget_mb: float | None = None,
    precision: str = "exact",
    resume: PartialCounts | None = None,
    saver: ProgressSaver | None = None,
) -> AblationCounts:
    """The engine: counts for every unit in `units`, with the plan chosen for (model, layer, basis).

    Mean ablation uses each unit's mean over `mean_images` (default: the evaluated images).
    `units_per_pass` fixes K, the ablated copies per pass; by default K follows the memory budget.
    `precision` is `exact` (fp32, TF32 off) or `fast` (TF32 on GPUs that have it).
    `resume` continues from the counts of a killed run's first images; `saver` saves the counts
    so far when it is due (the counts are sums over images, so the result is the same).
    """
    device, q, values = prepare_ablation(
        model, layer, images, rotation, value, batch_size, device, mean_images, precision
    )
    engine = AblationEngine(model, layer, q, plan, units_per_pass, memory_budget_mb)
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


@torch.no_grad()
def ablate_naive(
    model: nn.Module,
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
    precision: str = "exact",
) -> AblationCounts:
    """Reference: a full forward pass per unit, with a hook that ablates the layer's output.

    Mean ablation uses each unit's mean over `mean_images` (default: the evaluated images).
    """
    device, q, values = prepare_ablation(
        model, layer, images, rotation, value, batch_size, device, mean_images, precision
    )
    module = resolve_layer(model, layer)
    labels = np.asarray(labels).astype(np.int64)

    def predict() -> torch.Tensor:
        # batch by batch: a paper-scale split as float32 would not fit in memory
        return torch.cat([model(x).argmax(1) for x, _ in image_batches(images, None, batch_size, device)])

    intact = predict().cpu().numpy()
    ablated = np.empty((len(units), len(labels)), dtype=np.int64)  # K x N: 8 bytes per unit and image
    for k, unit in enumerate(units):
        hook = module.register_forward_hook(
            lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
        )
        try:
            ablated[k] = predict().cpu().numpy()
        finally:
            hook.remove()
    half_counts = counts_from_predictions(intact, ablated, labels, evaluation_halves(labels), num_classes)
    return finished_counts(units, labels, num_classes, half_counts)


def ablate_chunk_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    output: str | Path,
    layer: str,
    units: list[int],
    eval_split: str = "test",
    value: str = "zero",
    batch_size: int = 500,
    units_per_pass: int | None = None,
    device: str = "auto",
    threads: int = 1,
    mean_split: str | None = None,
    plan: str = "auto",
    memory_mb: float | None = None,
    precision: str = "exact",
    save_seconds: float = 300.0,
) -> None:
    """Ablate one chunk of units of one (model, layer spec) and write the counts to .npz.

    With `value="mean"` each unit is set to its mean over the images of `mean_split`.
    `plan` is "auto" (the engine's choice), a plan name, or "naive" (the reference).
    The engine saves its progress every `save_seconds` beside the output; a rerun of the same
    job after a kill resumes from there and writes the same counts.
    """
    torch.set_num_threads(max(1, threads))
    spec = parse_layer_spec(layer)
    torch_device = choose_device(device)
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    check_num_classes(model, model_path, dataset.num_classes, dataset_path)
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
    common = dict(
        rotation=rotation,
        value=value,
        batch_size=batch_size,
        device=torch_device,
        mean_images=None if mean_split is None else dataset.images[mean_split],
        precision=precision,
    )
    images, labels = dataset.images[eval_split], dataset.labels[eval_split]
    saver = resumed = None
    if plan == "naive":
        counts = ablate_naive(model, spec.layer, images, labels, units, dataset.num_classes, **common)
    else:
        job = fingerprint(
            model=file_identity(model_path), dataset=file_identity(dataset_path), layer=layer, units=units,
            eval_split=eval_split, value=value, mean_split=mean_split, plan=plan, precision=precision,
            device=torch_device.type, torch=torch.__version__,
            code=stage_code_hash(Path(__file__), Path(__file__).parent),
        )  # fmt: skip
        saver = ProgressSaver(progress_path(output), job, save_seconds)
        resumed = load_progress(saver.path, job, (len(units), dataset.num_classes))
        counts = ablate_units(
            model, spec.layer, images, labels, units, dataset.num_classes,
            units_per_pass=units_per_pass, plan=plan, memory_budget_mb=memory_mb,
            resume=resumed, saver=saver, **common,
        )  # fmt: skip
    seconds = time.monotonic() - start
    metadata = {
        "plan": counts.plan,
        "device": str(torch_device),
        "precision": precision,
        "value": value,
        "mean_split": mean_split,
        "layer": layer,
        "seconds": round(seconds, 2),
        "eval_split": eval_split,
        "resumed_at_image": 0 if resumed is None else resumed.images_done,
        **software_versions(),
    }
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
