"""Names of the study's models (no torch import): a trained network is `{MODEL_PREFIX}-{variant}-s{seed}`;
a pretrained model is named by its key under `pretrained:`. The same string names output folders."""

from __future__ import annotations

import re

MODEL_PREFIX = "fmnist-alexnet"
SEED_SEPARATOR = "-s"
_SEED_SUFFIX = re.compile(rf"{re.escape(SEED_SEPARATOR)}(?P<seed>\d+)$")


def trained_model_name(variant: str, seed: int) -> str:
    """The name of the network trained as `variant` with `seed`: `fmnist-alexnet-bn-s2`."""
    return f"{MODEL_PREFIX}-{variant}{SEED_SEPARATOR}{seed}"


def seed_stem(model: str) -> str:
    """The model without its seed: the networks of one variant share it (a pretrained name is its own)."""
    return _SEED_SUFFIX.sub("", model)
