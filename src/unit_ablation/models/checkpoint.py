"""Checkpoints: weights, the model's config and metadata, loaded without pickled code."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.files.torch_files import load_torch_file
from unit_ablation.files.writing import atomic_path
from unit_ablation.spec.model_classes import MODEL_MODULES, model_module


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write weights, `model.config` and metadata (variant, training config, ...) atomically."""
    payload = {
        "model_config": dict(model.config),
        "state_dict": model.state_dict(),
        "metadata_json": json.dumps(metadata, sort_keys=True),
    }
    # through a Python file: a full disk then raises OSError (ENOSPC), not torch's RuntimeError
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
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
    if arch not in MODEL_MODULES:
        expected = " or ".join(repr(name) for name in MODEL_MODULES)
        raise CorruptFileError(f"{path}: checkpoint has architecture {arch!r}, expected {expected}")
    try:
        model = importlib.import_module(model_module(arch)).model_from_config(config)
    except (KeyError, TypeError, ValueError) as error:  # a python: model's own import errors pass
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
    keys = ("arch", "name", "source", "num_classes", "width", "batchnorm")
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


def load_model(path: str | Path) -> nn.Module:
    """The checkpoint's model, in eval mode."""
    return load_checkpoint(path)[0]
