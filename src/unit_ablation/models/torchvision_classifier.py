"""Paper-scale models: torchvision classifiers (AlexNet, VGG, ResNet, ...) with the built-in interface.

`TorchvisionClassifier` reads float images in [0, 1] and normalises inside the model, like
FashionAlexNet, so checkpoints are self-contained. Layers are named by alias (`conv5`, `conv5_3`,
`layer4`; see `zoo_layers`) or by a module path of the torchvision model (`features.11`).
Pretrained weights (ImageNet or Places365 files) are loaded from local files only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from unit_ablation.engine.layer_hooks import output_channels
from unit_ablation.models.normalize import Normalize
from unit_ablation.models.weights_file import load_state_dict_file
from unit_ablation.spec.zoo_layers import (
    CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE,
    TORCHVISION_ARCH,
    layer_aliases,
)

__all__ = ["TorchvisionClassifier", "build_torchvision", "layer_aliases", "load_weights"]

_MIXING = (nn.Conv2d, nn.Linear)


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
Reader = tuple[nn.Module, nn.BatchNorm1d | nn.BatchNorm2d | None]  # a mixing layer and the BN after it


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d | None) -> torch.Tensor:
    """Weights scaled per output channel (dim 0) by gamma / sqrt(running_var + eps) of the BN
    after them: the linear map the layer and its BN apply in eval mode (BN's shift is a bias)."""
    if bn is None:
        return weight
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    return weight * scale.view(-1, *([1] * (weight.dim() - 1)))


def _as_filters(module: nn.Module) -> torch.Tensor:
    """(units, in, kh, kw) weights of a Conv2d, or a Linear as 1 x 1 filters."""
    weight = module.weight
    return weight if weight.dim() == 4 else weight.view(*weight.shape, 1, 1)


def _reading_weights(readers: list[Reader], units: int) -> torch.Tensor:
    """(out, units, positions) weights of the layers reading the units, stacked along `out`.

    Each reader's weights are folded with the BatchNorm that follows it (`_fold_bn`), if any.
    Kernels smaller than the largest (a ResNet 1 x 1 downsample beside a BasicBlock's 3 x 3
    conv1) are zero-padded to its centre; with the same stride and paddings 0 vs 1 the stacked
    bank is exactly one conv computing both.
    """
    if isinstance(readers[0][0], nn.Linear):
        weight = _fold_bn(readers[0][0].weight, readers[0][1])
        return weight.view(weight.shape[0], units, -1)
    kh = max(m.weight.shape[2] for m, _ in readers)
    kw = max(m.weight.shape[3] for m, _ in readers)
    padded = []
    for module, bn in readers:
        weight = _fold_bn(module.weight, bn)
        dh, dw = kh - weight.shape[2], kw - weight.shape[3]
        padded.append(nn.functional.pad(weight, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)))
    return torch.cat(padded).flatten(2)


class TorchvisionClassifier(nn.Module):
    """A torchvision classification model with the input normalisation built in.

    forward: float images in [0, 1] (N x 3 x H x W) -> logits. Weight-based unit attributes
    (`incoming_weight`, `outgoing_weight`) are defined for AlexNet, VGG and ResNet-style models.
    """

    def __init__(
        self,
        name: str,
        num_classes: int = 1000,
        mean: list[float] | tuple[float, ...] = IMAGENET_MEAN,
        std: list[float] | tuple[float, ...] = IMAGENET_STD,
        resize: int = RESIZE,
        crop: int = CROP,
    ) -> None:
        super().__init__()
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise ValueError(f"unknown torchvision classification model {name!r}; known: {', '.join(known)}")
        self.config: dict[str, Any] = {
            "arch": TORCHVISION_ARCH,
            "name": name,
            "num_classes": int(num_classes),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "resize": int(resize),
            "crop": int(crop),
        }
        self.normalize = Normalize(self.config["mean"], self.config["std"])
        self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        self._unit_counts: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TorchvisionClassifier:
        """The (randomly initialised) model a checkpoint's `config` describes."""
        return cls(
            config["name"],
            config["num_classes"],
            mean=config.get("mean", IMAGENET_MEAN),
            std=config.get("std", IMAGENET_STD),
            resize=config.get("resize", RESIZE),
            crop=config.get("crop", CROP),
        )

    @property
    def name(self) -> str:
        return self.config["name"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        return self.net(x)

    # --- layers ---------------------------------------------------------------------------

    def layer_path(self, layer: str) -> str:
        """Module path inside `net` of an alias (`conv5`) or a module path (`features.11`)."""
        aliases = layer_aliases(self.name)
        if layer in aliases:
            return aliases[layer]
        # `net.`-prefixed paths (what graph_split.module_path returns for this wrapper) work too
        path = layer[len("net.") :] if layer.startswith("net.") else layer
        if path:
            try:
                self.net.get_submodule(path)
                return path
            except AttributeError:
                pass
        alias_text = f"an alias ({', '.join(aliases)}) or " if aliases else ""
        top = ", ".join(name for name, _ in self.net.named_children())
        raise KeyError(
            f"layer {layer!r} not found in torchvision {self.name}: use {alias_text}a module path of the "
            f"torchvision model from its named_modules() (top level: {top})"
        )

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is the ablation point (used by engine.graph_split.resolve_layer)."""
        return self.net.get_submodule(self.layer_path(layer))

    def unit_count(self, layer: str) -> int:
        """Number of units (channels) of a layer."""
        path = self.layer_path(layer)
        if path not in self._unit_counts:
            producer = self._producer_or_none(path)
            if producer is not None:
                count = producer[0].weight.shape[0]
            else:
                count = self._measured_channels(path)
            self._unit_counts[path] = int(count)
        return self._unit_counts[path]

    def incoming_weight(self, layer: str) -> torch.Tensor:
        """Effective filter bank producing the layer's units, shape (units, in, kh, kw).

        The conv (a Linear as 1 x 1 filters) that produces the units, scaled by
        gamma / sqrt(running_var + eps) when a BatchNorm follows it before the layer. For a
        ResNet block or stage output it is the last conv of the (last) block with its BN: the
        residual path (identity or downsample) that is added to it is not included.
        """
        producer = self._producer(self.layer_path(layer))
        return _fold_bn(_as_filters(producer[0]), producer[1])

    def outgoing_weight(self, layer: str) -> torch.Tensor:
        """Weights of the next mixing layer that read each unit, shape (out, units, positions).

        The next Conv2d flattened over kh * kw, or the first Linear reshaped per unit over the
        flattened spatial positions (AlexNet conv5 -> (4096, 256, 36)). When a BatchNorm follows
        that layer (VGG-BN, ResNet) its weights are scaled per output channel by
        gamma / sqrt(running_var + eps), as `incoming_weight` folds the unit's own BN. In a ResNet
        the next block's conv1 (with bn1) and downsample conv (with its BN) both read the units;
        they are stacked along `out`. The identity shortcut (weight 1) is not included.
        """
        path = self.layer_path(layer)
        readers = self._readers(path)
        if not readers:
            raise ValueError(f"layer {layer!r} of {self.name} is the output layer: no weights read it")
        return _reading_weights(readers, self.unit_count(layer))

    # --- structure: producer (conv, BN or None) and readers of a layer --------------------

    def _family(self) -> str:
        if isinstance(self.net, (torchvision.models.AlexNet, torchvision.models.VGG)):
            return "sequential"
        if isinstance(self.net, torchvision.models.ResNet):
            return "resnet"
        return "other"

    def _unsupported(self, path: str) -> ValueError:
        return ValueError(
            f"incoming/outgoing weights of {self.name} layer {path!r} are not supported: they are defined "
            "for AlexNet/VGG layers (features.*, avgpool, classifier.*) and ResNet stem, blocks, block "
            "convs/BNs and downsample"
        )

    def _producer(self, path: str) -> tuple[nn.Module, nn.BatchNorm2d | None]:
        producer = self._producer_or_none(path)
        if producer is None:
            raise self._unsupported(path)
        return producer

    def _producer_or_none(self, path: str) -> tuple[nn.Module, nn.BatchNorm2d | None] | None:
        family = self._family()
        if family == "sequential":
            order = self._sequential_order()
            index = self._sequential_index(order, path)
            if index is None:
                return None
            bn = None
            for _, module in reversed(order[: index + 1]):
                if isinstance(module, nn.BatchNorm2d):
                    bn = module
                elif isinstance(module, _MIXING):
                    return module, bn
            return None
        if family == "resnet":
            return self._resnet_structure(path)[0]
        return None

    def _readers(self, path: str) -> list[Reader]:
        family = self._family()
        if family == "sequential":
            order = self._sequential_order()
            index = self._sequential_index(order, path)
            if index is None:
                raise self._unsupported(path)
            for position in range(index + 1, len(order)):
                module = order[position][1]
                if isinstance(module, _MIXING):
                    following = order[position + 1][1] if position + 1 < len(order) else None
                    return [(module, following if isinstance(following, _NORMS) else None)]
            return []
        if family == "resnet":
            producer, readers = self._resnet_structure(path)
            if producer is None:
                raise self._unsupported(path)
            return readers
        raise self._unsupported(path)

    def _sequential_order(self) -> list[tuple[str, nn.Module]]:
        """AlexNet/VGG modules in forward order: features.*, avgpool, (flatten), classifier.*."""
        net = self.net
        order = [(f"features.{name}", module) for name, module in net.features.named_children()]
        order.append(("avgpool", net.avgpool))
        order += [(f"classifier.{name}", module) for name, module in net.classifier.named_children()]
        return order

    @staticmethod
    def _sequential_index(order: list[tuple[str, nn.Module]], path: str) -> int | None:
        paths = [name for name, _ in order]
        if path in paths:
            return paths.index(path)
        if path in ("features", "classifier"):  # a container: its last module's output
            return max(i for i, name in enumerate(paths) if name.startswith(f"{path}."))
        return None

    def _resnet_structure(
        self, path: str
    ) -> tuple[tuple[nn.Module, nn.BatchNorm2d | None] | None, list[Reader]]:
        """(producer, readers) of a ResNet layer, each reader with the BN after it; producer None
        when not supported."""
        net = self.net
        blocks = [
            (f"layer{k}.{j}", block)
            for k in range(1, 5)
            for j, block in enumerate(net.get_submodule(f"layer{k}"))
        ]

        def readers_after(position: int) -> list[Reader]:
            if position + 1 >= len(blocks):
                return [(net.fc, None)]
            block = blocks[position + 1][1]
            shortcut = block.downsample
            return [(block.conv1, block.bn1)] + (
                [(shortcut[0], shortcut[1] if isinstance(shortcut[1], _NORMS) else None)]
                if shortcut is not None
                else []
            )

        def last_conv(block: nn.Module) -> tuple[nn.Module, nn.BatchNorm2d]:
            if isinstance(block, Bottleneck):
                return block.conv3, block.bn3
            if isinstance(block, BasicBlock):
                return block.conv2, block.bn2
            raise self._unsupported(path)

        if path == "conv1":
            return (net.conv1, None), readers_after(-1)
        if path in ("bn1", "relu", "maxpool"):
            return (net.conv1, net.bn1), readers_after(-1)
        if path == "avgpool":
            return last_conv(blocks[-1][1]), [(net.fc, None)]
        if path == "fc":
            return (net.fc, None), []
        names = [name for name, _ in blocks]
        stage = [i for i, name in enumerate(names) if name.startswith(f"{path}.")]
        if stage:  # layer{k}: the output of its last block
            position = stage[-1]
            return last_conv(blocks[position][1]), readers_after(position)
        for position, (name, block) in enumerate(blocks):
            if path == name:
                return last_conv(block), readers_after(position)
            if not path.startswith(f"{name}."):
                continue
            part = path[len(name) + 1 :]
            if part in ("downsample", "downsample.1"):
                return (block.downsample[0], block.downsample[1]), readers_after(position)
            if part == "downsample.0":
                return (block.downsample[0], None), readers_after(position)
            for n in (1, 2, 3):
                if part in (f"conv{n}", f"bn{n}") and hasattr(block, f"conv{n}"):
                    conv = block.get_submodule(f"conv{n}")
                    bn = block.get_submodule(f"bn{n}") if part.startswith("bn") else None
                    following = getattr(block, f"conv{n + 1}", None)
                    if following is None:
                        return (conv, bn), readers_after(position)
                    return (conv, bn), [(following, block.get_submodule(f"bn{n + 1}"))]
        return None, []

    def _measured_channels(self, path: str) -> int:
        """Channels of a module's output, from one forward pass on a blank image."""
        device = next(self.parameters()).device
        example = torch.zeros(1, 3, self.config["crop"], self.config["crop"], device=device)
        return output_channels(self, self.net.get_submodule(path), example, f"layer {path!r} of {self.name}")


# --- weights ------------------------------------------------------------------------------


def load_weights(model: TorchvisionClassifier, path: str | Path) -> None:
    """Load a local weights file into `model.net` (strict), with weights_only=True
    (`weights_file.load_state_dict_file`: a plain state_dict or the Places365 `.pth.tar` layout,
    with or without DataParallel `module.` components; CorruptFileError naming the file)."""
    load_state_dict_file(model.net, path, f"torchvision {model.name}", model.config["num_classes"])


def build_torchvision(
    name: str, num_classes: int, weights_path: str | Path | None = None
) -> TorchvisionClassifier:
    """A torchvision classifier in eval mode: random init (seed torch first), or weights from a local file."""
    model = TorchvisionClassifier(name, num_classes)
    if weights_path is not None:
        load_weights(model, weights_path)
    return model.eval()


def model_from_config(config: Mapping[str, Any]) -> TorchvisionClassifier:
    """The (randomly initialised) model a checkpoint's `model_config` describes."""
    return TorchvisionClassifier.from_config(config)
