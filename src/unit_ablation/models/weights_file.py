"""Local weights files loaded into a network: a state_dict read with `weights_only=True`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.files.torch_files import load_torch_file


def _strip_data_parallel(key: str) -> str:
    """Drop the `module` components nn.DataParallel inserts: `module.fc.weight`, and the legacy
    Places365 layout where only the features were wrapped, `features.module.0.weight`."""
    return ".".join(part for part in key.split(".") if part != "module")


def _preview(keys: list[str], count: int = 5) -> str:
    shown = ", ".join(sorted(keys)[:count])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > count else shown


def load_state_dict_file(net: nn.Module, path: str | Path, described: str, num_classes: int) -> None:
    """Load a local weights file into `net` (strict), with weights_only=True.

    Accepts a plain state_dict or a dict with a "state_dict" entry (the Places365 `.pth.tar`
    layout), with or without DataParallel `module.` components. Raises CorruptFileError (a
    ValueError) naming the file and `described` (the model, e.g. "torchvision resnet18") when it
    cannot be read, carries pickled objects (UnsafeCheckpointError), or does not match the
    network (keys, shapes, class count).
    """
    payload = load_torch_file(path, "weights file")  # CorruptFileError / UnsafeCheckpointError
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"weights file {path} holds no state_dict (a mapping of names to tensors)")
    state = {_strip_data_parallel(str(key)): value for key, value in state.items()}
    expected = net.state_dict()
    # BatchNorm fills a missing num_batches_tracked itself (files from before PyTorch 0.4.1)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        for key in mismatched:
            found, wanted = state[key].shape, expected[key].shape
            if (
                key.endswith("weight")
                and wanted[0] == num_classes
                and found[0] != num_classes
                and found[1:] == wanted[1:]
            ):
                problems.append(f"its classifier {key} has {found[0]} classes, the model has {num_classes}")
        if mismatched:
            details = [
                f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(mismatched)[:5]
            ]
            problems.append(
                f"shapes differ (file vs model) for {len(mismatched)} tensors: {'; '.join(details)}"
            )
        if missing:
            problems.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_preview(unexpected)}")
        raise CorruptFileError(
            f"weights file {path} does not fit {described} with {num_classes} classes: " + "; ".join(problems)
        )
    net.load_state_dict(state, strict=True)
