"""The cropped tail on its own: which region each tail of the built-in CNN reads, its logits
against the fx tail's on the whole input, and the tails it leaves to fx. Random models, a few
images: a second or two."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unit_ablation.engine.cropped_tail import Span, compile_tail, take_region
from unit_ablation.engine.delta import Delta
from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.head_replay import HeadReplay
from unit_ablation.engine.winograd import nnpack_ready
from unit_ablation.models.fashion_alexnet import build_model

# fp32 logits of two orders of summation (channels-last or Winograd, cropped): these random
# models' logits are about 0.1-0.2 and differ by up to 3e-8 (measured); test_winograd.py bounds
# Winograd's rounding at realistic magnitudes
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
needs_nnpack = pytest.mark.skipif(not nnpack_ready(), reason="this torch build or CPU has no NNPACK")
CONV_PATHS = [False, pytest.param(True, marks=needs_nnpack)]


def _model(batchnorm: bool) -> nn.Module:
    torch.manual_seed(3)
    model = build_model(width=0.5, batchnorm=batchnorm).eval()
    if batchnorm:  # non-trivial running statistics, so that eval BN is not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
    return model


def _images(count: int = 6) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(5))


def _region(span_rows: tuple[int, int], span_cols: tuple[int, int], size: int):
    return Span(*span_rows, size), Span(*span_cols, size)


@pytest.mark.parametrize("winograd", CONV_PATHS, ids=["direct", "winograd"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_delta_tails_read_what_the_logits_need(batchnorm: bool, winograd: bool) -> None:
    model = _model(batchnorm)
    x = _images()
    # conv3: the tail after conv4 is conv5 on the 6 x 6 pool5 keeps: it reads rows -1..6 of conv4
    # conv4: the tail after conv5 starts with pool5, which reads 6 x 6
    for layer, expected in (("conv3", _region((-1, 7), (-1, 7), 7)), ("conv4", _region((0, 6), (0, 6), 7))):
        split = split_model(model, layer)
        plan = Delta(split)
        activation, side = run_trunk(split, x)
        mixed = plan.mixing(plan.chain(activation.clone()))
        cropped = compile_tail(plan.tail, mixed[:1].clone(), winograd)
        assert cropped is not None
        assert cropped.region == expected
        assert cropped.channels_last == (not winograd or layer == "conv4")  # conv4's tail: no conv
        region = take_region(mixed, cropped.region)
        if cropped.channels_last:
            region = region.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(cropped(region), plan.tail(mixed.clone()), **TOLERANCE)


@pytest.mark.parametrize("winograd", CONV_PATHS, ids=["direct", "winograd"])
def test_padding_rows_are_zeroed_before_the_convolution(winograd: bool) -> None:
    """The region's rows outside the map may hold anything (the delta plan computes them too)."""
    model = _model(batchnorm=True)
    split = split_model(model, "conv3")
    plan = Delta(split)
    activation, _ = run_trunk(split, _images())
    mixed = plan.mixing(activation.clone())
    cropped = compile_tail(plan.tail, mixed[:1].clone(), winograd)
    region = take_region(mixed, cropped.region)
    region[:, :, 0] = 1e3  # row -1
    region[:, :, :, 0] = -7.0  # column -1
    torch.testing.assert_close(cropped(region), plan.tail(mixed.clone()), **TOLERANCE)


def test_head_replay_crops_the_head_of_conv4_and_conv5_only() -> None:
    model = _model(batchnorm=False)
    x = _images()
    for layer, region in (("conv4", _region((-1, 7), (-1, 7), 7)), ("conv5", _region((0, 6), (0, 6), 7))):
        split = split_model(model, layer)
        activation, _ = run_trunk(split, x)
        cropped = compile_tail(split.head, activation[:1].clone())
        assert cropped is not None and cropped.region == region
        torch.testing.assert_close(
            cropped(take_region(activation, region)), split.head(activation.clone()), **TOLERANCE
        )
    # conv3's head: conv4's output would have to reach into conv5's padding: left to fx
    split = split_model(model, "conv3")
    activation, _ = run_trunk(split, x)
    assert compile_tail(split.head, activation[:1].clone()) is None


def test_cropped_flops_count_the_positions_computed() -> None:
    model = _model(batchnorm=False)
    split = split_model(model, "conv4")
    activation, _ = run_trunk(split, _images(1))
    cropped = compile_tail(split.head, activation[:1].clone())
    conv5, fc6, fc7, fc8 = (
        model.features.conv5.conv,
        model.classifier.fc6,
        model.classifier.fc7,
        model.classifier.fc8,
    )
    linear = sum(2.0 * fc.in_features * fc.out_features for fc in (fc6, fc7, fc8))
    assert cropped.flops() == 2.0 * conv5.in_channels * 9 * conv5.out_channels * 36 + linear


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.other = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(torch.flatten(self.other(y).relu() + y, 1))


class _Strided(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.down(self.conv(x).relu()), 1))


@pytest.mark.parametrize("model", [_Residual(), _Strided()], ids=["branch", "strided"])
def test_tails_it_cannot_crop_stay_fx(model: nn.Module) -> None:
    x = torch.rand(2, 4, 7, 7)
    split = split_model(model.eval(), "conv")
    activation, _ = run_trunk(split, x)
    assert compile_tail(split.head, activation[:1].clone()) is None
    plan = HeadReplay(split)  # the plan still runs, on the fx head
    state = plan.prepare(activation, [], torch.zeros(4))
    assert state.cropped is None
    assert plan.logits(state, activation, [], [0, 1], torch.zeros(4)).shape == (4, 3)
