"""The torch-free cost model against the engine's own FLOP counts on the built-in model."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.fashion_alexnet import FashionAlexNet, build_model
from unit_ablation.spec import cost
from unit_ablation.spec.architecture import CONV_LAYERS, layer_units
from unit_ablation.spec.layer_spec import parse_layer_spec

IMAGES = 4
UNITS = [0, 1]


@functools.cache
def random_model(width: float, batchnorm: bool) -> FashionAlexNet:
    torch.manual_seed(0)
    return build_model(width=width, batchnorm=batchnorm).eval()


@functools.cache
def random_images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(IMAGES, 1, 28, 28)).astype(np.uint8)
    return images, rng.integers(0, 10, size=IMAGES)


def engine_run(spec: str, width: float, batchnorm: bool, plan: str = "auto") -> tuple[str, float]:
    """The plan and FLOPs per ablated copy and image of `ablate_units`, the way an ablate job runs it."""
    layer = parse_layer_spec(spec)
    model = random_model(width, batchnorm)
    images, labels = random_images()
    rotation = basis_matrix(model.unit_count(layer.layer), layer.rotation_seed)
    counts = ablate_units(
        model, layer.layer, images, labels, UNITS, 10, rotation=rotation, options=AblationOptions(plan=plan)
    )
    # head_flops = flops per copy * copies * images: integer-valued floats, so the division is exact
    return counts.plan, counts.head_flops / (len(UNITS) * IMAGES)


SPECS = [f"{layer}{suffix}" for layer in CONV_LAYERS for suffix in ("", "@rot0")]


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("width", [1.0, 0.5])
@pytest.mark.parametrize("spec", SPECS)
def test_head_flops_match_the_engine(spec: str, width: float, batchnorm: bool) -> None:
    plan, flops = engine_run(spec, width, batchnorm)
    assert cost.engine_plan(spec) == plan
    assert cost.head_flops_per_copy(spec, width) == flops  # exact: integer-valued floats


@pytest.mark.parametrize("spec", SPECS)
def test_explicit_head_replay_matches_the_engine(spec: str) -> None:
    plan, flops = engine_run(spec, 1.0, False, plan="head-replay")
    assert plan == "head-replay"
    assert cost.head_flops_per_copy(spec, 1.0, plan="head-replay") == flops


@pytest.mark.parametrize("spec", ["conv1", "conv3@rot0", "conv5"])
def test_explicit_delta_matches_the_engine(spec: str) -> None:
    assert cost.head_flops_per_copy(spec, 0.5, plan="delta") == engine_run(spec, 0.5, True, "delta")[1]


def test_expected_plans() -> None:
    plans = {spec: cost.engine_plan(spec) for spec in SPECS}
    assert plans == {
        "conv1": "delta",
        "conv1@rot0": "head-replay",
        "conv2": "delta",
        "conv2@rot0": "head-replay",
        "conv3": "delta",
        "conv3@rot0": "delta",
        "conv4": "delta",
        "conv4@rot0": "delta",
        "conv5": "delta",
        "conv5@rot0": "head-replay",
    }
    assert cost.engine_plan("features.conv5@rot3") == "head-replay"


def test_conv5_delta_by_hand() -> None:
    # width 1: conv5 64 units, fc 256. fc6's change from one unit (3 x 3 inputs), fc7, fc8.
    assert cost.head_flops_per_copy("conv5", 1.0) == 2 * 256 * 9 + 2 * 256 * 256 + 2 * 256 * 10


def test_naive_is_the_whole_network() -> None:
    # nothing follows conv5 but pool5 and the classifier: its head is the same cropped or not
    whole = cost.trunk_flops_per_image("conv5", 1.0) + cost.head_flops_per_copy("conv5", 1.0, "head-replay")
    for spec in SPECS:
        assert cost.head_flops_per_copy(spec, 1.0, "naive") == whole
        replay = cost.trunk_flops_per_image(spec, 1.0) + cost.head_flops_per_copy(spec, 1.0, "head-replay")
        assert replay <= whole


def test_cropped_heads_by_hand() -> None:
    # width 1: conv3 96, conv4 96, conv5 64 units, fc 256. pool5 reads 6 x 6 of conv5's 7 x 7,
    # which reads 8 x 8 of conv4's output (its top and left padding included)
    fc = 2 * 576 * 256 + 2 * 256 * 256 + 2 * 256 * 10
    conv5_cropped = 2 * 96 * 9 * 64 * 36
    assert cost.head_flops_per_copy("conv4", 1.0, "head-replay") == conv5_cropped + fc
    assert cost.head_flops_per_copy("conv4", 1.0, "delta") == 2 * 9 * 64 * 36 + fc
    assert cost.head_flops_per_copy("conv3", 1.0, "delta") == 2 * 9 * 96 * 64 + conv5_cropped + fc
    # two convs after the layer: the first one's output would reach into the padding, not cropped
    assert (
        cost.head_flops_per_copy("conv3", 1.0, "head-replay")
        == 2 * 96 * 9 * 96 * 49 + 2 * 96 * 9 * 64 * 49 + fc
    )


@pytest.mark.parametrize(
    ("spec", "plan"),
    [("conv5@rot0", "delta"), ("conv1@rot2", "delta"), ("conv4", "closed-form"), ("conv4", "fastest")],
)
def test_unsupported_plans_raise(spec: str, plan: str) -> None:
    with pytest.raises(ValueError, match=plan):
        cost.head_flops_per_copy(spec, 1.0, plan)


def test_bad_layers_and_widths_raise() -> None:
    with pytest.raises(ValueError, match="fc6"):
        cost.head_flops_per_copy("fc6", 1.0)
    with pytest.raises(ValueError, match="bad layer name"):
        cost.trunk_flops_per_image("conv5@rot", 1.0)
    for width in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="width"):
            cost.trunk_flops_per_image("conv5", width)


def test_trunk_flops_conv1_by_hand() -> None:
    # conv1 at width 1: 1 input channel -> 32 units, 3x3 kernel, 28x28 outputs (padding 1),
    # 2 FLOPs per multiply-add: 2 * 1 * 9 * 32 * 784 = 451584.
    assert cost.trunk_flops_per_image("conv1", 1.0) == 2 * 1 * 9 * 32 * 28 * 28 == 451_584


@pytest.mark.parametrize("width", [1.0, 0.5, 0.3])
def test_trunk_flops_match_the_model(width: float) -> None:
    """Every Conv2d the model runs up to the layer, counted from its output shape."""
    model = random_model(width, False)
    for layer in CONV_LAYERS:
        flops = []

        def count(module: nn.Conv2d, _inputs, output: torch.Tensor, flops=flops) -> None:
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            flops.append(2.0 * per_output * output[0].numel())

        hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
        try:
            with torch.no_grad():
                model.forward_to(layer, torch.zeros(1, 1, 28, 28))
        finally:
            for hook in hooks:
                hook.remove()
        assert cost.trunk_flops_per_image(f"{layer}@rot1", width) == sum(flops)


def test_job_seconds() -> None:
    trunk = cost.trunk_flops_per_image("conv4", 1.0)
    head = cost.head_flops_per_copy("conv4", 1.0)
    assert cost.job_seconds(10, 1000, "conv4", 1.0, gflops=2.0) == pytest.approx(
        1000 * (trunk + 10 * head) / 2e9, rel=1e-12
    )
    assert cost.job_seconds(0, 1000, "conv4", 1.0, gflops=2.0) == pytest.approx(1000 * trunk / 2e9)
    bad = [
        dict(units=-1),
        dict(images=0),
        dict(gflops=0.0),
        dict(gflops=-3.0),
        dict(gflops=float("inf")),
    ]
    for override in bad:
        args = dict(units=1, images=10, layer_spec="conv4", width=1.0, gflops=1.0) | override
        with pytest.raises(ValueError, match=next(iter(override))):
            cost.job_seconds(**args)


@pytest.mark.parametrize("spec", ["conv3", "conv4", "conv5", "conv5@rot0"])
def test_units_per_job(spec: str) -> None:
    images, width, gflops = 10_000, 1.0, 5.0
    unit_count = layer_units(width)[parse_layer_spec(spec).layer]
    one = cost.job_seconds(1, images, spec, width, gflops)
    everything = cost.job_seconds(unit_count, images, spec, width, gflops)
    targets = np.geomspace(one / 10, everything * 10, 200)
    chosen = [cost.units_per_job(t, images, spec, width, gflops, unit_count) for t in targets]
    assert chosen == sorted(chosen)  # monotone in the target
    assert chosen[0] == 1 and chosen[-1] == unit_count
    for target, units in zip(targets, chosen, strict=True):
        assert 1 <= units <= unit_count
        if units < unit_count and target >= one:
            assert cost.job_seconds(units, images, spec, width, gflops) <= target
            assert cost.job_seconds(units + 1, images, spec, width, gflops) > target
    # exactly at a job's estimate, that many units fit
    seven = cost.job_seconds(7, images, spec, width, gflops)
    assert cost.units_per_job(seven, images, spec, width, gflops, unit_count) == 7


def test_units_per_job_validates() -> None:
    args = dict(target_seconds=60.0, images=1000, layer_spec="conv5", width=1.0, gflops=1.0, unit_count=64)
    for name, value in [("target_seconds", 0.0), ("images", -5), ("gflops", 0), ("unit_count", 0)]:
        with pytest.raises(ValueError, match=name):
            cost.units_per_job(**(args | {name: value}))
    with pytest.raises(ValueError, match="delta"):
        cost.units_per_job(**(args | {"layer_spec": "conv5@rot0"}), plan="delta")


def test_import_does_not_load_torch() -> None:
    code = "import sys, unit_ablation.spec.cost; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
