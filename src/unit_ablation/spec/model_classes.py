"""Which module builds the model a checkpoint holds, by the checkpoint's `arch` (no torch import).

The checkpoint loader imports that module by name rather than by an import statement, so that a
stage's code hash covers a model class only in the studies that use it: the workflow adds the
module of each job's model to the hash (`workflow.code_hash.stage_code_hash`, `extra_modules`).
Each module named here has a function `model_from_config(config)`.
"""

from __future__ import annotations

from unit_ablation.spec.arch_spec import PYTHON, TIMM
from unit_ablation.spec.architecture import ARCH_NAME
from unit_ablation.spec.zoo_layers import TORCHVISION_ARCH

MODEL_MODULES: dict[str, str] = {
    ARCH_NAME: "unit_ablation.models.fashion_alexnet",
    TORCHVISION_ARCH: "unit_ablation.models.torchvision_classifier",
    # timm models and the user's own (`python:`): the checkpoint records the arch string
    TIMM: "unit_ablation.models.module_classifier",
    PYTHON: "unit_ablation.models.module_classifier",
}


def model_module(arch: str) -> str:
    """The module that builds models of architecture `arch` (KeyError naming the known ones)."""
    try:
        return MODEL_MODULES[arch]
    except KeyError:
        raise KeyError(f"architecture {arch!r} is none of {sorted(MODEL_MODULES)}") from None
