"""Torch-free cost model of an ablate job on the built-in model, for sizing chunks at parse time.

FLOPs count multiply-adds as 2 FLOPs, of Linear and Conv2d layers only (ReLU, pooling,
BatchNorm and dropout are free), the convention of `unit_ablation.engine.plans.Plan.flops`.
The counts follow from `unit_ablation.spec.architecture` alone: FashionAlexNet on 1 x 28 x 28 images
with 10 classes; 3x3 convolutions with padding 1; 2x2 max-pools after conv1, conv2 and conv5
(28 -> 14 -> 7 -> 3); fc6 (conv5 x 3 x 3 -> fc), fc7 (fc -> fc), fc8 (fc -> 10).

An ablate job runs the trunk (input -> ablation point) once per image and the head once per
ablated copy (unit) and image, so it costs about
`images * (trunk_flops_per_image + units * head_flops_per_copy)` FLOPs. Not counted: the
intact pass of the head (one copy's worth per image), the trunk pass over the mean images of
mean ablation, loading and writing.

This module imports only the standard library and torch-free project modules.
"""

from __future__ import annotations

import math
import numbers

from unit_ablation.spec.architecture import BASE_FC_UNITS, CONV_LAYERS, canonical_layer, layer_units, scaled
from unit_ablation.spec.layer_spec import parse_layer_spec
from unit_ablation.spec.plans import PLAN_CHOICES, PLANS

NUM_CLASSES = 10
IN_CHANNELS = 1
IMAGE_SIZE = 28
KERNEL_AREA = 3 * 3
POOLED_AFTER = ("conv1", "conv2", "conv5")  # 2x2 max-pool (floor) after these layers


def _check_width(width: float) -> None:
    if not (isinstance(width, numbers.Real) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")


def _layer_and_rotation(layer_spec: str) -> tuple[str, bool]:
    """The layer alias (`conv5`) and whether the spec names a rotated basis."""
    spec = parse_layer_spec(layer_spec)
    try:
        layer = canonical_layer(spec.layer)
    except KeyError as error:
        raise ValueError(f"layer spec {layer_spec!r}: {error.args[0]}") from error
    return layer, spec.rotation_seed is not None


def _input_sides() -> dict[str, int]:
    """Height (= width) of every conv layer's input and output (padding 1 keeps the size)."""
    sides, side = {}, IMAGE_SIZE
    for layer in CONV_LAYERS:
        sides[layer] = side
        if layer in POOLED_AFTER:
            side //= 2
    return sides


def _pooled_side() -> int:
    """Height of conv5's pooled output, the input of fc6 (3)."""
    return _input_sides()["conv5"] // 2


def _conv_flops(layer: str, width: float, side: int | None = None) -> float:
    """FLOPs of one conv layer (alias) for one image: 2 * in * 3 * 3 * out * H * W (H = W = `side`
    output positions if given, else the layer's own)."""
    _check_width(width)
    layer = canonical_layer(layer)
    units = layer_units(width)
    index = CONV_LAYERS.index(layer)
    in_channels = IN_CHANNELS if index == 0 else units[CONV_LAYERS[index - 1]]
    side = _input_sides()[layer] if side is None else side
    return 2.0 * in_channels * KERNEL_AREA * units[layer] * side * side


def _fc_flops(width: float) -> list[float]:
    """FLOPs of fc6, fc7 and fc8 for one image."""
    fc = scaled(BASE_FC_UNITS, width)
    fc6_in = layer_units(width)["conv5"] * _pooled_side() ** 2
    return [2.0 * fc6_in * fc, 2.0 * fc * fc, 2.0 * fc * NUM_CLASSES]


def engine_plan(layer_spec: str, plan: str = "auto") -> str:
    """The plan an ablate job uses for a layer spec: the engine's choice for "auto", else `plan`.

    Canonical layers use `delta` (only channel-wise ops lie between a layer and the next conv or
    fc6). A rotated layer uses `delta` only when nothing lies in between (conv3, conv4); a
    max-pool does not commute with a rotation, so rotated conv1, conv2 and conv5 use
    `head-replay`. `closed-form` never applies (no global average pool). `naive` is the
    per-unit reference, always possible. Raises ValueError for a plan that does not apply.
    """
    layer, rotated = _layer_and_rotation(layer_spec)
    possible = ["head-replay", "naive"]
    if not rotated or layer not in POOLED_AFTER:
        possible.insert(0, "delta")
    if plan == "auto":
        return possible[0]
    if plan not in PLANS:
        raise ValueError(f"ablation plan {plan!r} not in {PLAN_CHOICES}")
    if plan not in possible:
        raise ValueError(
            f"plan {plan!r} does not apply to layer {layer_spec!r} of the built-in model; "
            f"possible: {', '.join(['auto', *possible])}"
        )
    return plan


def trunk_flops_per_image(layer_spec: str, width: float) -> float:
    """Conv FLOPs from the input up to and including the layer, run once per image per job."""
    _check_width(width)
    layer, _ = _layer_and_rotation(layer_spec)
    stop = CONV_LAYERS.index(layer)
    return sum(_conv_flops(name, width) for name in CONV_LAYERS[: stop + 1])


def head_flops_per_copy(layer_spec: str, width: float, plan: str = "auto") -> float:
    """FLOPs per ablated copy (unit) and image, as the engine counts them for its plan.

    `head-replay`: every conv after the layer, fc6, fc7 and fc8. `delta`: the mixing layer's
    change from one channel (next conv: 2 * 3 * 3 * out per position; fc6: 2 * fc * 3 * 3) plus
    everything after the mixing layer. `naive` (the reference, not an engine plan): the whole
    network, as it runs one full forward pass per unit.

    Where at most one conv (conv5) follows the mixing layer (`delta`) or the layer
    (`head-replay`), the engine computes only the positions the logits read
    (`engine.cropped_tail`): conv5 the 6 x 6 that pool5 keeps of 7 x 7, and a mixing conv the
    positions its reader needs: conv5's 6 x 6 outputs read 8 x 8 (its top and left zero padding
    included), pool5 reads 6 x 6.
    """
    _check_width(width)
    layer, _ = _layer_and_rotation(layer_spec)
    chosen = engine_plan(layer_spec, plan)
    index = CONV_LAYERS.index(layer)
    fc = _fc_flops(width)
    if chosen == "naive":
        return trunk_flops_per_image(CONV_LAYERS[-1], width) + sum(fc)
    later = list(CONV_LAYERS[index + 1 :])
    if chosen == "head-replay":
        return _convs_flops(later, width, cropped=len(later) <= 1) + sum(fc)
    # delta
    if not later:
        change = 2.0 * scaled(BASE_FC_UNITS, width) * _pooled_side() ** 2
        return change + sum(fc[1:])
    mixing, tail = later[0], later[1:]
    cropped = len(tail) <= 1
    side = _input_sides()[mixing]
    if cropped:
        side = 2 * _pooled_side() + (2 if tail else 0)  # what conv5 or pool5 reads
    change = 2.0 * KERNEL_AREA * layer_units(width)[mixing] * side * side
    return change + _convs_flops(tail, width, cropped) + sum(fc)


def _convs_flops(layers: list[str], width: float, cropped: bool) -> float:
    """FLOPs of these conv layers for one image; `cropped`: conv5 on the 6 x 6 positions pool5 reads."""
    return sum(
        _conv_flops(layer, width, 2 * _pooled_side() if cropped and layer == CONV_LAYERS[-1] else None)
        for layer in layers
    )


def forward_flops_per_image(width: float) -> float:
    """FLOPs of one image through the whole network (conv1 to fc8)."""
    return trunk_flops_per_image(CONV_LAYERS[-1], width) + sum(_fc_flops(width))


TRAIN_STEP_PASSES = 3  # a training step: the forward pass, and a backward pass of about twice its FLOPs


def train_flops(images: int, epochs: int, width: float) -> float:
    """FLOPs of training on `images` images for `epochs` epochs (3 forward passes' worth per image)."""
    _check_positive(images=images, epochs=epochs)
    return TRAIN_STEP_PASSES * epochs * images * forward_flops_per_image(width)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def job_seconds(
    units: int, images: int, layer_spec: str, width: float, gflops: float, plan: str = "auto"
) -> float:
    """Estimated seconds of one ablate job: images * (trunk + units * head) FLOPs at `gflops` GFLOP/s."""
    _check_positive(images=images, gflops=gflops)
    if units < 0:
        raise ValueError(f"units must be >= 0, got {units!r}")
    trunk = trunk_flops_per_image(layer_spec, width)
    head = head_flops_per_copy(layer_spec, width, plan)
    return images * (trunk + units * head) / (gflops * 1e9)


def units_per_job(
    target_seconds: float,
    images: int,
    layer_spec: str,
    width: float,
    gflops: float,
    unit_count: int,
    plan: str = "auto",
) -> int:
    """The most units (1 to `unit_count`) whose `job_seconds` stays within `target_seconds`.

    Returns 1 when even one unit takes longer than the target.
    """
    _check_positive(target_seconds=target_seconds, images=images, gflops=gflops)
    if unit_count < 1:
        raise ValueError(f"unit_count must be >= 1, got {unit_count!r}")
    trunk = trunk_flops_per_image(layer_spec, width)
    head = head_flops_per_copy(layer_spec, width, plan)
    budget = target_seconds * gflops * 1e9 / images - trunk
    count = min(unit_count, max(1, math.floor(budget / head)))

    def fits(n: int) -> bool:
        return job_seconds(n, images, layer_spec, width, gflops, plan) <= target_seconds

    # The closed form may be one off from job_seconds by rounding: settle on job_seconds itself.
    while count < unit_count and fits(count + 1):
        count += 1
    while count > 1 and not fits(count):
        count -= 1
    return count
