"""The AlexNet-shaped CNN for 28x28 gray images (the default study's model).

It maps images scaled to [0, 1] (float N x C x H x W) to logits; the input normalisation is
part of the model."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from unit_ablation.models.normalize import Normalize
from unit_ablation.spec.architecture import (
    ARCH_NAME,
    BASE_FC_UNITS,
    CONV_LAYERS,
    canonical_layer,
    layer_units,
    scaled,
)

# Fashion-MNIST training-set pixel statistics.
FMNIST_MEAN = 0.2860


FMNIST_STD = 0.3530


def conv_block(in_channels: int, out_channels: int, batchnorm: bool) -> nn.Sequential:
    """3x3 conv, optional BatchNorm, ReLU; the block's output is the unit's activation."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batchnorm))
    ]
    if batchnorm:
        layers.append(("bn", nn.BatchNorm2d(out_channels)))
    layers.append(("relu", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class FashionAlexNet(nn.Module):
    """AlexNet-shaped CNN: conv1-conv5 (max-pool after 1, 2, 5), fc6-fc8 with dropout before fc6 and fc7."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.5,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        units = layer_units(width)
        fc_units = scaled(BASE_FC_UNITS, width)
        self.config = {
            "arch": ARCH_NAME,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "width": width,
            "dropout": dropout,
            "batchnorm": batchnorm,
        }
        self.normalize = Normalize([FMNIST_MEAN] * in_channels, [FMNIST_STD] * in_channels)
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", conv_block(in_channels, units["conv1"], batchnorm)),
                    ("pool1", nn.MaxPool2d(2)),  # 28 -> 14
                    ("conv2", conv_block(units["conv1"], units["conv2"], batchnorm)),
                    ("pool2", nn.MaxPool2d(2)),  # 14 -> 7
                    ("conv3", conv_block(units["conv2"], units["conv3"], batchnorm)),
                    ("conv4", conv_block(units["conv3"], units["conv4"], batchnorm)),
                    ("conv5", conv_block(units["conv4"], units["conv5"], batchnorm)),
                    ("pool5", nn.MaxPool2d(2)),  # 7 -> 3
                ]
            )
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("drop6", nn.Dropout(dropout)),
                    ("fc6", nn.Linear(units["conv5"] * 3 * 3, fc_units)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(dropout)),
                    ("fc7", nn.Linear(fc_units, fc_units)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("fc8", nn.Linear(fc_units, num_classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.features(x)
        x = self.flatten(x)
        return self.classifier(x)

    def forward_to(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """Activation of a conv layer (the trunk up to the ablation point)."""
        return self.features[: self._feature_index(layer) + 1](self.normalize(x))

    def forward_from(self, layer: str, activation: torch.Tensor) -> torch.Tensor:
        """Logits from the activation of a conv layer (the head after the ablation point)."""
        x = self.features[self._feature_index(layer) + 1 :](activation)
        return self.classifier(self.flatten(x))

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is the ablation point: an alias (`conv5`) or a module path."""
        try:
            return self.features.get_submodule(canonical_layer(layer))
        except KeyError:
            pass
        try:
            return self.get_submodule(layer)
        except AttributeError as error:
            raise KeyError(
                f"layer {layer!r} not found; use an alias {list(CONV_LAYERS)} or a module path"
                " from named_modules()"
            ) from error

    def _feature_index(self, layer: str) -> int:
        names = [name for name, _ in self.features.named_children()]
        return names.index(canonical_layer(layer))

    def incoming_weight(self, layer: str) -> torch.Tensor:
        """Effective filter bank producing the layer's units, shape (units, in, kh, kw).

        With BatchNorm the conv weights are scaled by gamma / sqrt(running_var + eps), the
        filter the unit really applies in eval mode (raw conv weights have an arbitrary scale).
        """
        return _folded_conv_weight(self.layer_module(layer))

    def outgoing_weight(self, layer: str) -> torch.Tensor:
        """Weights of the next mixing layer that read each unit, shape (out, units, positions).

        The next conv's filters, scaled per output channel by gamma / sqrt(running_var + eps)
        of the BatchNorm after it (the linear map the units feed in eval mode), or fc6's
        weights, reshaped per unit over the 3 x 3 pool5 positions.
        """
        index = CONV_LAYERS.index(canonical_layer(layer))
        if index + 1 < len(CONV_LAYERS):
            return _folded_conv_weight(self.layer_module(CONV_LAYERS[index + 1])).flatten(2)
        fc6 = self.classifier.get_submodule("fc6").weight
        return fc6.view(fc6.shape[0], self.unit_count(layer), -1)

    def unit_count(self, layer: str) -> int:
        """Number of units (channels) of a conv layer."""
        return self.layer_module(layer).get_submodule("conv").out_channels


def batchnorm_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """Per-channel eval-mode scale gamma / sqrt(running_var + eps) of a BatchNorm (gamma 1 if not affine)."""
    root = torch.sqrt(bn.running_var + bn.eps)
    return 1 / root if bn.weight is None else bn.weight / root


def _folded_conv_weight(block: nn.Module) -> torch.Tensor:
    """A conv block's filters (out, in, kh, kw), scaled by its BatchNorm's eval-mode scale if it has one."""
    weight = block.get_submodule("conv").weight
    if hasattr(block, "bn"):
        weight = weight * batchnorm_scale(block.get_submodule("bn")).view(-1, 1, 1, 1)
    return weight


def build_model(
    num_classes: int = 10, width: float = 1.0, dropout: float = 0.5, batchnorm: bool = False
) -> FashionAlexNet:
    """A fresh, randomly initialised FashionAlexNet (seed torch beforehand for reproducibility)."""
    return FashionAlexNet(num_classes=num_classes, width=width, dropout=dropout, batchnorm=batchnorm)


def model_from_config(config: Mapping[str, Any]) -> FashionAlexNet:
    """The (randomly initialised) model a checkpoint's `model_config` describes."""
    return build_model(
        num_classes=config["num_classes"],
        width=config["width"],
        dropout=config["dropout"],
        batchnorm=config["batchnorm"],
    )
