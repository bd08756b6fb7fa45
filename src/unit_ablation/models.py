"""The AlexNet-shaped CNN for 28x28 gray images, checkpoints and layer lookup.

A model maps images scaled to [0, 1] (float N x C x H x W) to logits; the input
normalisation is part of the model so a checkpoint is self-contained.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unit_ablation.architecture import (
    ARCH_NAME,
    BASE_FC_UNITS,
    CONV_LAYERS,
    canonical_layer,
    layer_units,
    scaled,
)
from unit_ablation.io import atomic_path
from unit_ablation.safe_load import CorruptFileError, load_torch_file
from unit_ablation.zoo_layers import TORCHVISION_ARCH

if TYPE_CHECKING:
    from unit_ablation.zoo import TorchvisionClassifier

# Fashion-MNIST training-set pixel statistics.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, stored as buffers so checkpoints carry it."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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

    def _feature_index(self, layer: str) -> int:
        names = [name for name, _ in self.features.named_children()]
        return names.index(canonical_layer(layer))

    def incoming_weight(self, layer: str) -> torch.Tensor:
        """Effective filter bank producing the layer's units, shape (units, in, kh, kw).

        With BatchNorm the conv weights are scaled by gamma / sqrt(running_var + eps), the
        filter the unit really applies in eval mode (raw conv weights have an arbitrary scale).
        """
        return _folded_conv_weight(resolve_layer(self, layer))

    def outgoing_weight(self, layer: str) -> torch.Tensor:
        """Weights of the next mixing layer that read each unit, shape (out, units, positions).

        The next conv's filters, scaled per output channel by gamma / sqrt(running_var + eps)
        of the BatchNorm after it (the linear map the units feed in eval mode), or fc6's
        weights, reshaped per unit over the 3 x 3 pool5 positions.
        """
        index = CONV_LAYERS.index(canonical_layer(layer))
        if index + 1 < len(CONV_LAYERS):
            return _folded_conv_weight(resolve_layer(self, CONV_LAYERS[index + 1])).flatten(2)
        fc6 = self.classifier.get_submodule("fc6").weight
        return fc6.view(fc6.shape[0], self.unit_count(layer), -1)

    def unit_count(self, layer: str) -> int:
        """Number of units (channels) of a conv layer."""
        return resolve_layer(self, layer).get_submodule("conv").out_channels


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


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module whose output is the ablation point: an alias (`conv5`) or a module path."""
    if hasattr(model, "layer_module"):  # zoo.TorchvisionClassifier resolves its own aliases and paths
        return model.layer_module(name)
    if isinstance(model, FashionAlexNet):
        try:
            return model.features.get_submodule(canonical_layer(name))
        except KeyError:
            pass
    try:
        return model.get_submodule(name)
    except AttributeError as error:
        aliases = f"an alias {list(CONV_LAYERS)} or " if isinstance(model, FashionAlexNet) else ""
        raise KeyError(
            f"layer {name!r} not found; use {aliases}a module path from named_modules()"
        ) from error


def save_checkpoint(
    model: FashionAlexNet | TorchvisionClassifier, path: str | Path, metadata: dict[str, Any]
) -> None:
    """Write weights, `model.config` and metadata (variant, training config, ...) atomically."""
    payload = {
        "model_config": dict(model.config),
        "state_dict": model.state_dict(),
        "metadata_json": json.dumps(metadata, sort_keys=True),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[FashionAlexNet | TorchvisionClassifier, dict[str, Any]]:
    """Model in eval mode and its metadata; loads with weights_only=True (no pickled code).

    Raises CorruptFileError (a ValueError) naming the file when it is missing, truncated or
    corrupt, carries pickled objects (UnsafeCheckpointError), is not a checkpoint written by
    `save_checkpoint`, or its weights do not fit its architecture (layers, shapes, class count).
    """
    payload = load_torch_file(path, "checkpoint")
    expected = "a dict with model_config, state_dict and metadata_json (written by save_checkpoint)"
    if not isinstance(payload, Mapping):
        raise CorruptFileError(f"{path}: checkpoint holds a {type(payload).__name__}, not {expected}")
    missing = [key for key in ("model_config", "state_dict") if key not in payload]
    if missing:
        found = ", ".join(sorted(map(str, payload))[:8]) or "nothing"
        raise CorruptFileError(
            f"{path}: checkpoint lacks {', '.join(missing)} (holds {found}); expected {expected}"
        )
    config, state = payload["model_config"], payload["state_dict"]
    if not isinstance(config, Mapping):
        raise CorruptFileError(f"{path}: checkpoint model_config is a {type(config).__name__}, not a dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path}: checkpoint state_dict is not a mapping of names to tensors")
    arch = config.get("arch")
    if arch not in (ARCH_NAME, TORCHVISION_ARCH):
        raise CorruptFileError(
            f"{path}: checkpoint has architecture {arch!r}, expected {ARCH_NAME!r} or {TORCHVISION_ARCH!r}"
        )
    try:
        if arch == ARCH_NAME:
            model = build_model(
                num_classes=config["num_classes"],
                width=config["width"],
                dropout=config["dropout"],
                batchnorm=config["batchnorm"],
            )
        else:
            from unit_ablation.zoo import TorchvisionClassifier  # lazy: zoo imports this module

            model = TorchvisionClassifier.from_config(config)
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptFileError(
            f"{path}: checkpoint model_config {dict(config)} does not describe a {arch} model ({error!r})"
        ) from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 800 else f"{reason[:800]} ..."
        raise CorruptFileError(
            f"{path}: checkpoint weights do not fit its model_config ({_config_text(config)}): {reason}"
        ) from error
    metadata = payload.get("metadata_json", "{}")
    try:
        metadata = json.loads(metadata)
    except (TypeError, ValueError) as error:
        raise CorruptFileError(f"{path}: checkpoint metadata_json is not valid JSON ({error})") from error
    model.eval()
    return model, metadata


def _config_text(config: Mapping[str, Any]) -> str:
    keys = ("arch", "name", "num_classes", "width", "batchnorm")
    return ", ".join(f"{key} {config[key]}" for key in keys if key in config)


def num_classes(model: nn.Module) -> int:
    """The number of classes (logits) a checkpoint's model predicts."""
    return int(model.config["num_classes"])


def check_num_classes(
    model: nn.Module, model_path: str | Path, expected: int, source: str | Path, what: str = "data set"
) -> None:
    """Raise ValueError naming both files when the model predicts another number of classes than
    `source` (a data set or activation file) has."""
    found = num_classes(model)
    if found != expected:
        raise ValueError(
            f"{model_path}: checkpoint predicts {found} classes, but the {what} {source} has {expected}"
            " (a checkpoint of another data set?)"
        )


def load_model(path: str | Path) -> FashionAlexNet | TorchvisionClassifier:
    """The checkpoint's model, in eval mode."""
    return load_checkpoint(path)[0]
