"""The plan objects on their own: which plan applies where, their logits against a per-unit
forward pass, their FLOPs against the torch-free cost model, and the refusal of a plan that does not
apply. Tiny random models and a few images: a few seconds in all."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from unit_ablation.data.dataset import to_float
from unit_ablation.engine.ablation_engine import ablate_directions
from unit_ablation.engine.basis import random_rotation
from unit_ablation.engine.closed_form import ClosedForm
from unit_ablation.engine.delta import Delta
from unit_ablation.engine.graph_split import SplitModel, resolve_layer, run_trunk, split_model
from unit_ablation.engine.head_replay import HeadReplay
from unit_ablation.engine.plans import PLAN_CLASSES, choose_plan, possible_plans
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.spec import cost
from unit_ablation.spec.architecture import CONV_LAYERS
from unit_ablation.spec.plans import ENGINE_PLANS

CLASSES = 10
IMAGES = 12


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is several times faster than contended threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GapLinearNet(nn.Module):
    """A ResNet-like last stage: conv block -> global average pool -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


@functools.cache
def tiny_model(name: str) -> nn.Module:
    """A random tiny model whose last layer is standardised on the test images, so that its
    predictions vary between images and ablating a unit changes some of them."""
    torch.manual_seed(0)
    if name == "gap":
        model = GapLinearNet()
        with torch.no_grad():  # non-trivial BN statistics
            model.block[1].running_mean.uniform_(-0.1, 0.1)
            model.block[1].running_var.uniform_(0.5, 1.5)
    else:
        model = build_model(width=0.25, batchnorm=name == "cnn-bn")
    model.eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        logits = model(torch.from_numpy(to_float(images()[0])))
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return model


@functools.cache
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (IMAGES, 1, 28, 28)).astype(np.uint8), rng.integers(0, CLASSES, IMAGES)


def split_of(name: str, layer: str) -> SplitModel:
    return split_model(tiny_model(name), layer)


def unit_count(name: str, layer: str) -> int:
    with torch.no_grad():
        return run_trunk(split_of(name, layer), torch.zeros(1, 1, 28, 28))[0].shape[1]


@pytest.mark.parametrize(
    ("name", "layer", "rotated", "plan"),
    [
        ("gap", "block", False, ClosedForm),
        ("gap", "block", True, ClosedForm),
        ("cnn", "conv5", False, Delta),
        ("cnn", "conv4", True, Delta),  # nothing between conv4 and conv5: commutes with Q
        ("cnn", "conv5", True, HeadReplay),  # the max-pool after conv5 does not commute with Q
    ],
)
def test_choose_plan_takes_the_fastest_plan_that_applies(name, layer, rotated, plan):
    split = split_of(name, layer)
    chosen = choose_plan(split, rotated=rotated)
    assert type(chosen) is plan and chosen.name == plan.name
    assert plan.applies(split, rotated) and HeadReplay.applies(split, rotated)
    assert possible_plans(split, rotated)[0] == plan.name


def test_the_plan_classes_follow_the_spec_names_in_order():
    assert tuple(PLAN_CLASSES) == ENGINE_PLANS
    assert all(cls.name == name for name, cls in PLAN_CLASSES.items())


def plan_logits(
    name: str, layer: str, rotation: np.ndarray | None, plan: str, value: str, units: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Intact logits (B x classes), the plan's ablated logits (K x B x classes), q and values."""
    model = tiny_model(name)
    _, q, values = prepare_ablation(model, layer, images()[0], rotation, value, 64, "cpu", None)
    split = split_model(model, layer)
    chosen = choose_plan(split, rotated=q is not None, requested=plan, rotation=q)
    with torch.no_grad():
        activation, side = run_trunk(split, torch.from_numpy(to_float(images()[0])))
        state = chosen.prepare(activation, side, values)
        logits = chosen.logits(state, activation, side, units, values)
    return state.intact_logits, logits.reshape(len(units), IMAGES, -1), q, values


def per_unit_logits(
    model: nn.Module, layer: str, units: list[int], q: torch.Tensor | None, values: torch.Tensor
) -> torch.Tensor:
    """K x B x classes: one full forward pass per unit, the layer's output edited by the naive
    reference's hook."""
    module = resolve_layer(model, layer)
    x = torch.from_numpy(to_float(images()[0]))
    result = []
    for unit in units:
        hook = module.register_forward_hook(
            lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
        )
        try:
            with torch.no_grad():
                result.append(model(x))
        finally:
            hook.remove()
    return torch.stack(result)


@pytest.mark.parametrize(
    ("name", "layer", "rotated", "plan"),
    [
        ("gap", "block", False, "closed-form"),
        ("gap", "block", True, "closed-form"),
        ("cnn-bn", "conv5", False, "delta"),  # BN before the ReLU: f(v) != 0 for v = 0
        ("cnn", "conv3", True, "delta"),
        ("cnn", "conv5", True, "head-replay"),
        ("cnn-bn", "conv2", False, "head-replay"),
    ],
)
@pytest.mark.parametrize("value", ["zero", "mean"])
def test_plan_logits_are_the_per_unit_forward_up_to_rounding(name, layer, rotated, plan, value):
    count = unit_count(name, layer)
    rotation = random_rotation(count, seed=3) if rotated else None
    units = list(range(0, count, 2))
    intact, logits, q, values = plan_logits(name, layer, rotation, plan, value, units)
    model = tiny_model(name)
    with torch.no_grad():
        assert torch.equal(intact, model(torch.from_numpy(to_float(images()[0]))))
    reference = per_unit_logits(model, layer, units, q, values)
    scale = float(reference.abs().max())
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-4 * scale)  # float rounding only
    # some predictions change; that they are exactly the naive reference's is the engine's test
    # (tests/unit/engine/test_engine.py, through tests/support/exactness.py)
    assert (logits.argmax(-1) != intact.argmax(1)).any()


@pytest.mark.parametrize("width", [1.0, 0.5])
@pytest.mark.parametrize("layer", CONV_LAYERS)
@pytest.mark.parametrize("rotated", [False, True], ids=["canonical", "rotated"])
def test_plan_flops_equal_the_torch_free_cost_model(layer, rotated, width):
    torch.manual_seed(0)
    split = split_model(build_model(width=width).eval(), layer)
    spec = f"{layer}@rot0" if rotated else layer
    with torch.no_grad():
        activation, side = run_trunk(split, torch.zeros(2, 1, 28, 28))
    names = possible_plans(split, rotated)
    assert names[0] == cost.engine_plan(spec)
    for name in names:
        plan = choose_plan(split, rotated=rotated, requested=name)
        assert plan.flops(activation, side) == cost.head_flops_per_copy(spec, width, name)  # exact
        assert plan.bytes_per_copy(activation, side) > 0


def test_a_plan_that_does_not_apply_is_refused_naming_the_possible_ones():
    split = split_of("cnn", "conv5")
    with pytest.raises(
        ValueError, match=r"'closed-form' does not apply here; possible: \['delta', 'head-replay'\]"
    ):
        choose_plan(split, rotated=False, requested="closed-form")
    with pytest.raises(ValueError, match=r"'delta' does not apply here; possible: \['head-replay'\]"):
        choose_plan(split, rotated=True, requested="delta")
    with pytest.raises(ValueError, match="'fastest' not in"):
        choose_plan(split, rotated=False, requested="fastest")
    with pytest.raises(ValueError, match="canonical basis"):
        choose_plan(split, rotated=False, rotation=torch.eye(unit_count("cnn", "conv5")))
    assert not ClosedForm.applies(split, False) and not Delta.applies(split, True)
