"""How units are ablated and counted: one typed set of options, named as the config's `ablation:`
keys (`value`, `batch_size`, `units_per_pass`, `memory_mb`, `plan`, `device`, `precision`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AblationOptions:
    """Options of `ablate_units` and `ablate_naive`; what is ablated is given separately.

    Example:
        >>> AblationOptions(value="mean", batch_size=200).plan
        'auto'
    """

    value: str = "zero"  # "zero", or "mean": each unit's mean over the mean images
    batch_size: int = 500  # images per trunk pass
    units_per_pass: int | None = None  # ablated copies per pass; None: as many as memory_mb allows
    memory_mb: float | None = None  # memory for ablated copies; None: 32 MB on CPU, half the free GPU memory
    plan: str = "auto"  # auto (the fastest exact plan), closed-form, delta or head-replay
    device: str | torch.device = "cpu"
    precision: str = "exact"  # exact (fp32, TF32 off) or fast (TF32 on GPUs that have it)


DEFAULT_OPTIONS = AblationOptions()
