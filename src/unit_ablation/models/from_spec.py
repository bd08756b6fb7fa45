"""Build the model an architecture string names (`pretrained.<name>.arch`), reading [0, 1] images."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from unit_ablation.models.module_classifier import ModuleClassifier
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier, load_weights
from unit_ablation.models.weights_file import load_state_dict_file
from unit_ablation.spec.arch_spec import PYTHON, TORCHVISION, parse_arch


def build_from_spec(
    arch: str,
    num_classes: int,
    workdir: str | Path = ".",
    weights_path: str | Path | None = None,
    input_size: tuple[int, ...] | None = None,
) -> nn.Module:
    """The model `arch` names, in eval mode, reading float images in [0, 1] (N x 3 x H x W):
    - `NAME` or `torchvision:NAME`: a `TorchvisionClassifier` (ImageNet normalisation inside);
    - `timm:NAME`: a `ModuleClassifier` around timm's model, normalising with its `pretrained_cfg`;
    - `python:PATH.py:CALLABLE`: a `ModuleClassifier` around what `CALLABLE(num_classes=...)`
      returns, the file taken relative to `workdir` (the user's model normalises inside).

    Random initialisation (seed torch first) unless `weights_path`, a local state_dict file loaded
    with weights_only=True. `input_size` (C, H, W): the images the unit counts are measured on.
    Raises ValueError for a bad arch string, ImportError when timm is missing.
    """
    spec = parse_arch(arch)
    if spec.kind == TORCHVISION:
        model = TorchvisionClassifier(spec.name, num_classes)
        if weights_path is not None:
            load_weights(model, weights_path)
        return model.eval()
    if spec.kind == PYTHON and not Path(spec.path).is_absolute() and Path(workdir).resolve() != Path.cwd():
        # the checkpoint records the path as given: it is found again from the working directory
        arch = f"{PYTHON}:{os.path.join(workdir, spec.path)}:{spec.callable}"
    model = ModuleClassifier(arch, num_classes, input_size)
    if weights_path is not None:
        load_state_dict_file(model.net, weights_path, spec.text, num_classes)
    return model.eval()
