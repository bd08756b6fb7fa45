"""Models from timm or from the user's own code (`timm:NAME`, `python:PATH.py:CALLABLE`) behind the
interface the workflow's stages use: [0, 1] images in, logits out, layers by module path.

A timm model is wrapped with its own `pretrained_cfg` mean and std; a `python:` model receives the
[0, 1] images as they are and normalises inside itself. A checkpoint records the architecture
string, so loading it builds the network again: timm's, or the user's function, imported from its
file (relative to the working directory) anew.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from unit_ablation.engine.layer_hooks import output_channels
from unit_ablation.models import layer_weights
from unit_ablation.models.normalize import Normalize
from unit_ablation.models.python_files import python_callable
from unit_ablation.spec.arch_spec import PYTHON, TIMM, parse_arch

DEFAULT_INPUT_SIZE = (3, 224, 224)


def import_timm(arch: str) -> Any:
    """The timm package; ImportError saying how to install it."""
    try:
        import timm
    except ImportError as error:
        raise ImportError(f"timm is not installed: pip install timm (needed by arch {arch!r})") from error
    return timm


def create_timm(name: str, num_classes: int) -> nn.Module:
    """timm's model `name`, randomly initialised (`pretrained=False`: nothing is downloaded);
    ValueError with timm's nearest model names when it has no such model."""
    timm = import_timm(f"timm:{name}")
    if not timm.is_model(name):
        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=5) or timm.list_models(f"*{name[:4]}*")[:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"timm has no model {name!r}{hint} (timm.list_models() lists {len(known)})")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def call_python_model(path: str, name: str, num_classes: int, arch: str) -> nn.Module:
    """The module the user's function returns for `num_classes=`; TypeError naming what is wrong."""
    function = python_callable(path, name, f"arch {arch!r}")
    try:
        net = function(num_classes=num_classes)
    except TypeError as error:
        raise TypeError(f"arch {arch!r}: {name}(num_classes={num_classes}) failed: {error}") from error
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"arch {arch!r}: {name}(num_classes=...) returned a {type(net).__name__}, not an nn.Module"
        )
    return net


class ModuleClassifier(nn.Module):
    """A timm or user network that reads float images in [0, 1] (N x 3 x H x W) and returns logits.

    Layers are module paths of the network (`layer4`, `features.3`); a unit is one channel of the
    module's output. `config` is what a checkpoint records to build it again.
    """

    def __init__(self, arch: str, num_classes: int, input_size: tuple[int, ...] | None = None) -> None:
        super().__init__()
        spec = parse_arch(arch)
        if spec.kind == TIMM:
            net = create_timm(spec.name, num_classes)
            cfg = getattr(net, "pretrained_cfg", {}) or {}
            mean, std = cfg.get("mean"), cfg.get("std")
            default_size = tuple(cfg.get("input_size") or DEFAULT_INPUT_SIZE)
        elif spec.kind == PYTHON:
            net = call_python_model(spec.path, spec.callable, num_classes, arch)
            mean = std = None
            default_size = DEFAULT_INPUT_SIZE
        else:
            raise ValueError(f"arch {arch!r}: torchvision models are TorchvisionClassifier's")
        self.config: dict[str, Any] = {
            "arch": spec.kind,
            "source": spec.text,
            "num_classes": int(num_classes),
            "mean": None if mean is None else [float(v) for v in mean],
            "std": None if std is None else [float(v) for v in std],
            "input_size": [int(v) for v in (input_size or default_size)],
        }
        self.normalize = nn.Identity() if mean is None else Normalize(self.config["mean"], self.config["std"])
        self.net = net
        self._unit_counts: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModuleClassifier:
        """The (randomly initialised) model a checkpoint's `config` describes."""
        return cls(config["source"], config["num_classes"], tuple(config["input_size"]))

    @property
    def name(self) -> str:
        return self.config["source"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    # --- layers ---------------------------------------------------------------------------

    def layer_path(self, layer: str) -> str:
        """The module path inside `net` of a layer (a `net.`-prefixed path works too); KeyError
        with the nearest module paths when there is none."""
        path = layer[len("net.") :] if layer.startswith("net.") else layer
        names = [name for name, _ in self.net.named_modules() if name]
        if path in names:
            return path
        close = difflib.get_close_matches(path, names, n=5)
        hint = f"nearest: {', '.join(close)}" if close else f"top level: {', '.join(names[:12])}"
        raise KeyError(f"layer {layer!r} is no module of {self.name} ({hint})")

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is the ablation point (engine.graph_split.resolve_layer)."""
        return self.net.get_submodule(self.layer_path(layer))

    def unit_count(self, layer: str) -> int:
        """Channels of the layer's output, from one forward pass on a blank image of `input_size`."""
        path = self.layer_path(layer)
        if path not in self._unit_counts:
            self._unit_counts[path] = self._measured_channels(path)
        return self._unit_counts[path]

    def incoming_weight(self, layer: str) -> torch.Tensor:
        """Filters producing the units, (units, in, kh, kw) (`layer_weights.incoming_weight`)."""
        try:
            return layer_weights.incoming_weight(self.net, self.layer_path(layer))
        except ValueError as error:
            raise ValueError(f"{self.name}: the incoming weights (l1_in) of {layer!r}: {error}") from error

    def outgoing_weight(self, layer: str) -> torch.Tensor:
        """Weights reading the units, (out, units, positions) (`layer_weights.outgoing_weight`)."""
        try:
            return layer_weights.outgoing_weight(self.net, self.layer_path(layer), self.unit_count(layer))
        except ValueError as error:
            raise ValueError(f"{self.name}: the outgoing weights (l1_out) of {layer!r}: {error}") from error

    def _measured_channels(self, path: str) -> int:
        """Channels of a module's output, from one forward pass on a blank image."""
        device = next(self.parameters()).device
        example = torch.zeros(1, *self.config["input_size"], device=device)
        return output_channels(self, self.net.get_submodule(path), example, f"layer {path!r} of {self.name}")


def model_from_config(config: Mapping[str, Any]) -> ModuleClassifier:
    """The (randomly initialised) model a checkpoint's `model_config` describes."""
    return ModuleClassifier.from_config(config)
