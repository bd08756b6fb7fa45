"""Captum's `LayerFeatureAblation` and `ua.ablate` count the same broken and fixed images.

Captum ablates groups of a layer's output (`layer_mask`, with `attribute_to_layer_input=False`)
by replacing them with `layer_baselines` (default 0: zero ablation) and attributes
forward(intact) - forward(ablated) to each group. With a forward function that returns each
image's correctness (1.0 or 0.0), a group's attribution is +1 where the ablation breaks the image
and -1 where it fixes it; summed per class of the image, these are our `broken` and `fixed`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import LayerFeatureAblation
from torch import nn
from torch.utils.data import TensorDataset

import unit_ablation as ua
from unit_ablation.data.dataset import to_float
from unit_ablation.engine.graph_split import resolve_layer

from support.synthetic import synthetic_images

CLASSES = 10


def channel_mask(channels: int, compared: int) -> torch.Tensor:
    """1 x C x 1 x 1 layer mask: channel c < `compared` is group c; the rest form group `compared`."""
    groups = torch.arange(channels).clamp(max=compared)
    return groups.view(1, channels, 1, 1)


def captum_counts(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    compared: int,
    baselines: torch.Tensor | None = None,
    perturbations_per_eval: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Broken and fixed counts (compared units x classes) from Captum's per-image attributions."""

    def correctness(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (model(x).argmax(1) == y).float()

    module = resolve_layer(model, layer)
    channels = layer_channels(model, module, images[:1])
    ablation = LayerFeatureAblation(correctness, module)
    attributions = ablation.attribute(
        images,
        layer_baselines=baselines,
        additional_forward_args=(labels,),
        layer_mask=channel_mask(channels, compared),
        attribute_to_layer_input=False,
        perturbations_per_eval=perturbations_per_eval,
    )
    per_group = attributions[:, :compared, 0, 0]  # N x units: every position of a channel is equal
    assert set(per_group.unique().tolist()) <= {-1.0, 0.0, 1.0}
    by_class = nn.functional.one_hot(labels, CLASSES).double()  # N x classes
    broken = (per_group == 1).double().T @ by_class
    fixed = (per_group == -1).double().T @ by_class
    return broken.long().numpy(), fixed.long().numpy()


def layer_channels(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int:
    """Channels of `module`'s output, by one forward pass."""
    shapes: list[torch.Size] = []
    handle = module.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return shapes[0][1]


def assert_parity(result: ua.AblationResult, broken: np.ndarray, fixed: np.ndarray) -> None:
    assert broken.sum() + fixed.sum() > 0, "the case must change some predictions"
    np.testing.assert_array_equal(result.counts.broken, broken, err_msg="broken")
    np.testing.assert_array_equal(result.counts.fixed, fixed, err_msg="fixed")


@pytest.fixture(scope="module")
def bars() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = synthetic_images(80, seed=31)
    return torch.from_numpy(to_float(images)), torch.from_numpy(labels)


def test_builtin_conv5_zero_ablation_matches_captum(small_model, bars) -> None:
    images, labels = bars
    result = ua.ablate(small_model, "conv5", TensorDataset(images, labels), batch_size=len(images))
    units = result.counts.broken.shape[0]
    broken, fixed = captum_counts(small_model, "conv5", images, labels, units)
    assert_parity(result, broken, fixed)


def test_builtin_conv5_mean_ablation_matches_captum_with_mean_baselines(small_model, bars) -> None:
    images, labels = bars
    module = resolve_layer(small_model, "conv5")
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out.clone()))
    with torch.no_grad():
        small_model.eval()(images)
    handle.remove()
    # each channel's mean over images and positions, computed as ua.ablate does (in float64)
    means = outputs[0].double().mean(dim=(0, 2, 3)).float()
    result = ua.ablate(
        small_model, "conv5", TensorDataset(images, labels), value="mean", batch_size=len(images)
    )
    broken, fixed = captum_counts(
        small_model, "conv5", images, labels, len(means), means.view(1, -1, 1, 1), perturbations_per_eval=4
    )
    assert_parity(result, broken, fixed)


class GrayToRGB(nn.Module):
    """Gray images as the 3 channels a torchvision model takes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


def calibrated_torchvision(name: str, size: int, calibration: torch.Tensor) -> nn.Module:
    """A random-init torchvision model on `size` px RGB inputs made from gray images, its last
    layer standardising each logit over `calibration`: predictions vary and single-channel
    ablations flip some of them."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(num_classes=CLASSES)
    if hasattr(net, "classifier"):  # AlexNet's 4,096-wide head at 256: same layers, less time
        linears = [i for i, m in enumerate(net.classifier) if isinstance(m, nn.Linear)]
        for i in linears:
            old = net.classifier[i]
            inputs = old.in_features if i == linears[0] else 256
            net.classifier[i] = nn.Linear(inputs, CLASSES if i == linears[-1] else 256)
    model = nn.Sequential(
        nn.Upsample(size=(size, size), mode="bilinear", align_corners=False), GrayToRGB(), net
    ).eval()
    with torch.no_grad():
        logits = model(calibration)
        last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return model


@pytest.mark.parametrize(
    ("name", "layer", "size", "plan", "perturbations_per_eval"),
    [("resnet18", "2.layer4", 32, "closed-form", 1), ("alexnet", "2.features.11", 64, "delta", 4)],
)
def test_torchvision_last_conv_subset_matches_captum(
    bars, name, layer, size, plan, perturbations_per_eval
) -> None:
    images, labels = bars[0][:60], bars[1][:60]
    model = calibrated_torchvision(name, size, images)
    units = 12  # channels 0..11; Captum ablates the remaining channels as one more group, not compared
    result = ua.ablate(model, layer, TensorDataset(images, labels), units=list(range(units)), batch_size=60)
    assert result.plan == plan
    broken, fixed = captum_counts(
        model, layer, images, labels, units, perturbations_per_eval=perturbations_per_eval
    )
    assert_parity(result, broken, fixed)
