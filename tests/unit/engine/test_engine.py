"""The engine's plans against the naive reference, on the built-in CNN and torchvision models."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from unit_ablation.engine.ablation_engine import AblationEngine
from unit_ablation.engine.basis import random_rotation
from unit_ablation.engine.counts import HALF_ARRAYS, count_changes
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.options import AblationOptions

from support.exactness import assert_matches_naive
from support.synthetic import synthetic_images


class GrayToRGB(nn.Module):
    """Feeds 1-channel images, upsampled, to a 3-channel torchvision model."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model(x.expand(-1, 3, -1, -1))


def slim_classifier(model: nn.Module, hidden: int = 256) -> None:
    """AlexNet's and VGG's fully connected head with `hidden` units instead of 4,096: the same layers
    in the same order (what the plans replay), at a small share of the naive reference's cost."""
    linears = [index for index, module in enumerate(model.classifier) if isinstance(module, nn.Linear)]
    for index in linears:
        old = model.classifier[index]
        inputs = old.in_features if index == linears[0] else hidden
        outputs = old.out_features if index == linears[-1] else hidden
        model.classifier[index] = nn.Linear(inputs, outputs)


def torchvision_model(name: str, size: int) -> nn.Module:
    """A fresh copy of the calibrated model: each test may change it."""
    return copy.deepcopy(_calibrated_torchvision_model(name, size))


@functools.cache  # VGG's constructor initialises its 4,096-wide head before slim_classifier: 2.7 s
def _calibrated_torchvision_model(name: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    if hasattr(model, "classifier"):
        slim_classifier(model)
    with torch.no_grad():
        for module in model.modules():  # non-trivial BN statistics, so BN is not the identity
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
        wrapped = GrayToRGB(model, size).eval()
        # Random-init logits share large per-class offsets, so every image gets the same class.
        # Standardise the last layer on calibration images: predictions then vary between images
        # and single-unit ablations flip some of them.
        calibration, _ = synthetic_images(64, seed=99)
        logits = wrapped(torch.from_numpy(calibration).float() / 255)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return wrapped


# (model, layer, input size, units ablated, plan in the canonical basis, plan in a rotated basis);
# VGG ablates fewer units: each costs the naive reference a whole VGG forward
TORCHVISION_CASES = [
    ("alexnet", "model.features.11", 64, 12, "delta", "head-replay"),
    ("alexnet", "model.features.9", 64, 12, "delta", "delta"),  # conv4 -> conv5: Q commutes with the chain
    ("vgg11_bn", "model.features.27", 32, 6, "delta", "head-replay"),
    ("vgg11_bn", "model.features.25", 32, 6, "delta", "head-replay"),  # pre-BN conv: chain has f(0) != 0
    ("resnet18", "model.layer4", 32, 12, "closed-form", "closed-form"),
    ("resnet18", "model.layer3.1.bn2", 32, 12, "head-replay", "head-replay"),  # residual side input
]


def assert_same_counts(
    model, layer, images, labels, units, rotation=None, value="zero", device="cpu", **options
):
    """Engine (with `options`) and naive reference on the same device (exact mode): identical counts."""
    options = AblationOptions(value=value, device=device, **options)
    return assert_matches_naive(model, layer, images, labels, units, rotation=rotation, options=options)


@pytest.mark.parametrize(("name", "layer", "size", "ablated", "plan", "rotated_plan"), TORCHVISION_CASES)
@pytest.mark.parametrize("rotated", [False, True], ids=["canonical", "rotated"])
@pytest.mark.parametrize("value", ["zero", "mean"])
def test_torchvision_models_match_the_naive_reference(
    name, layer, size, ablated, plan, rotated_plan, rotated, value, compute_device
):
    model = torchvision_model(name, size)
    images, _ = synthetic_images(48, seed=31)
    # labels = the intact model's predictions on half the images, random on the rest: both
    # broken and fixed images occur
    with torch.no_grad():
        predicted = model(torch.from_numpy(images).float() / 255).argmax(1).numpy()
    labels = np.where(np.arange(48) % 2 == 0, predicted, np.random.default_rng(0).integers(0, 10, 48))
    with torch.no_grad():
        units_total = run_trunk(split_model(model, layer), torch.rand(1, 1, 28, 28))[0].shape[1]
    rotation = random_rotation(units_total, seed=5) if rotated else None
    units = list(range(0, units_total, max(1, units_total // ablated)))  # a spread of units
    counts = assert_same_counts(
        model,
        layer,
        images,
        labels,
        units,
        rotation=rotation,
        value=value,
        device=compute_device,
        batch_size=20,
        units_per_pass=7,
    )
    assert counts.plan == (rotated_plan if rotated else plan)


@pytest.mark.parametrize(
    ("layer", "rotated", "plan"),
    [
        ("conv5", False, "delta"),
        ("conv3", False, "delta"),
        ("conv5", True, "head-replay"),  # max-pool after conv5 does not commute with Q
        ("conv4", True, "delta"),
        ("conv3", True, "delta"),
    ],
)
@pytest.mark.parametrize("value", ["zero", "mean"])
def test_builtin_model_plans_match_the_naive_reference(
    small_model, layer, rotated, plan, value, compute_device
):
    images, labels = synthetic_images(90, seed=32)
    units_total = small_model.unit_count(layer)
    rotation = random_rotation(units_total, seed=6) if rotated else None
    counts = assert_same_counts(
        small_model,
        layer,
        images,
        labels,
        list(range(units_total)),
        rotation=rotation,
        value=value,
        device=compute_device,
        batch_size=1 if layer == "conv5" and not rotated else 40,
        units_per_pass=5,
    )
    assert counts.plan == plan


def test_every_applicable_plan_gives_the_same_counts(small_model):
    images, labels = synthetic_images(80, seed=33)
    units = list(range(small_model.unit_count("conv5")))
    replay = ablate_units(
        small_model, "conv5", images, labels, units, 10, options=AblationOptions(plan="head-replay")
    )
    delta = ablate_units(
        small_model, "conv5", images, labels, units, 10, options=AblationOptions(plan="delta")
    )
    assert replay.broken.sum() > 0
    for name in ("broken", "fixed", "correct", *HALF_ARRAYS):
        np.testing.assert_array_equal(getattr(delta, name), getattr(replay, name), err_msg=name)
    with pytest.raises(ValueError, match="closed-form"):
        ablate_units(
            small_model, "conv5", images, labels, units, 10, options=AblationOptions(plan="closed-form")
        )


def test_permuting_channels_with_their_weights_permutes_the_results(small_model):
    images, labels = synthetic_images(80, seed=34)
    units = list(range(small_model.unit_count("conv5")))
    before = ablate_units(small_model, "conv5", images, labels, units, 10)
    perm = torch.randperm(len(units), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        block = small_model.features.conv5
        for tensor in (block.conv.weight, block.conv.bias) + (
            (block.bn.weight, block.bn.bias, block.bn.running_mean, block.bn.running_var)
            if hasattr(block, "bn")
            else ()
        ):
            if tensor is not None:
                tensor.copy_(tensor[perm])
        fc6 = small_model.classifier.fc6.weight
        fc6.copy_(fc6.view(fc6.shape[0], len(units), -1)[:, perm].reshape(fc6.shape))
    after = ablate_units(small_model, "conv5", images, labels, units, 10)
    assert before.broken.sum() > 0
    np.testing.assert_array_equal(after.broken, before.broken[perm.numpy()])
    np.testing.assert_array_equal(after.fixed, before.fixed[perm.numpy()])
    for name in ("broken_half", "fixed_half", "newly", "no_longer"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name)[:, perm.numpy()])


def test_memory_budget_sets_the_copies_per_pass_and_oom_halves_them(small_model, monkeypatch):
    images, labels = synthetic_images(60, seed=35)
    units = list(range(small_model.unit_count("conv4")))
    reference = ablate_units(
        small_model,
        "conv4",
        images,
        labels,
        units,
        10,
        options=AblationOptions(plan="head-replay", batch_size=60),
    )
    engine = AblationEngine(small_model, "conv4", plan="head-replay", memory_mb=0.5)
    x = torch.from_numpy(images).float() / 255
    activation = engine.split.trunk(x)
    small = engine._group_size(activation, [], len(units))
    assert 1 <= small < len(units)
    big = AblationEngine(small_model, "conv4", plan="head-replay", memory_mb=4096)
    assert big._group_size(activation, [], len(units)) == len(units)

    original = engine.plan_object.logits

    def flaky_logits(state, activation, side, group, values):
        if len(group) > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(state, activation, side, group, values)

    monkeypatch.setattr(engine.plan_object, "logits", flaky_logits)
    engine.units_per_pass = 16
    intact, predictions = engine.predictions(x, units, torch.zeros(len(units)))
    assert engine.units_per_pass == 4  # 16 -> 8 -> 4 copies per pass
    b, f = count_changes(intact, predictions, torch.from_numpy(labels), 10)
    np.testing.assert_array_equal(b.numpy(), reference.broken)
    np.testing.assert_array_equal(f.numpy(), reference.fixed)


def test_fast_max_pool_is_exactly_max_pool():
    from unit_ablation.engine.graph_split import max_pool_2x2

    x = torch.randn(3, 4, 7, 9)
    assert torch.equal(max_pool_2x2(x), nn.functional.max_pool2d(x, 2))


def test_benchmark_runs_and_reports_every_key(idx_folder, tmp_path):
    from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
    from unit_ablation.tools.bench import main

    prepare_fashion_mnist(idx_folder, tmp_path / "d.npz", heldout_size=50, seed=0)
    out = tmp_path / "bench.json"
    code = main([
        "--dataset", str(tmp_path / "d.npz"), "--checkpoint", str(tmp_path / "missing.pt"),
        "--images", "60", "--naive-units", "2", "--threads", "1", "--output", str(out),
    ])  # fmt: skip
    result = json.loads(out.read_text())
    keys = {"model", "layer", "plan", "units", "images", "naive_s", "naive_units_measured", "engine_s"}
    keys |= {"speedup", "identical", "engine_gflop", "engine_gflops", "peak_gflops", "roofline_fraction"}
    assert keys <= set(result)
    assert result["identical"] is True and code == 0
    assert result["plan"] == "delta" and result["units"] == 64 and result["images"] == 60
    assert result["peak_gflops"] > 0 and result["engine_gflop"] > 0


def test_out_of_memory_in_the_trunk_halves_the_image_batch_and_the_counts_stay_exact(
    small_model, monkeypatch, caplog
):
    import logging

    from unit_ablation.engine import ablation_engine as engine_module

    images, labels = synthetic_images(70, seed=36)
    units = list(range(small_model.unit_count("conv5")))
    reference = ablate_units(
        small_model, "conv5", images, labels, units, 10, options=AblationOptions(batch_size=70)
    )
    assert reference.broken.sum() > 0
    trunk = engine_module.run_trunk
    sizes = []

    def small_memory_trunk(split, x):
        sizes.append(x.shape[0])
        if x.shape[0] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return trunk(split, x)

    monkeypatch.setattr(engine_module, "run_trunk", small_memory_trunk)
    with caplog.at_level(logging.WARNING):
        counts = ablate_units(
            small_model, "conv5", images, labels, units, 10, options=AblationOptions(batch_size=70)
        )
    assert "a batch of 70 images: halving to 35" in caplog.text
    assert "a batch of 35 images: halving to 17" in caplog.text
    assert "a batch of 17 images: halving to 8" in caplog.text
    assert sizes[:4] == [70, 35, 17, 8] and max(sizes[4:]) == 8 and sum(sizes[3:]) == 70
    for name in ("broken", "fixed", "correct", "n", *HALF_ARRAYS):
        np.testing.assert_array_equal(getattr(counts, name), getattr(reference, name))

    def no_memory_trunk(split, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(engine_module, "run_trunk", no_memory_trunk)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        ablate_units(small_model, "conv5", images, labels, units, 10, options=AblationOptions(batch_size=4))
