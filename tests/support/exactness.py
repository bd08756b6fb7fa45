"""The engine-versus-naive assertion: identical integer counts, no tolerance."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.naive import ablate_naive
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions

COUNT_ARRAYS = ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS)


def assert_matches_naive(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    labels: np.ndarray,
    units: list[int],
    num_classes: int = 10,
    *,
    rotation: torch.Tensor | None = None,
    options: AblationOptions = DEFAULT_OPTIONS,
    naive_batch_size: int = 64,
    every_kind: bool = True,
):
    """Run the engine with `options` and the naive reference on the same device and value; assert
    that every count array is identical and return the engine's counts.

    The case must change some predictions; with `every_kind`, it must also newly predict some class
    and change predictions in the second evaluation half, so that those arrays are tested too.
    """
    engine = ablate_units(
        model, layer, images, labels, units, num_classes, rotation=rotation, options=options
    )
    reference = AblationOptions(
        value=options.value, batch_size=naive_batch_size, device=options.device, precision=options.precision
    )
    naive = ablate_naive(
        model, layer, images, labels, units, num_classes, rotation=rotation, options=reference
    )
    assert naive.broken.sum() + naive.fixed.sum() > 0, "the case must change some predictions"
    if every_kind:
        assert naive.newly.sum() > 0 and naive.broken_half[1].sum() + naive.fixed_half[1].sum() > 0
    for name in COUNT_ARRAYS:
        np.testing.assert_array_equal(getattr(engine, name), getattr(naive, name), err_msg=name)
    np.testing.assert_array_equal(engine.n, np.bincount(labels, minlength=num_classes))
    halves = evaluation_halves(labels)
    for h in range(2):
        np.testing.assert_array_equal(
            engine.n_half[h], np.bincount(labels[halves == h], minlength=num_classes)
        )
    for name in ("broken", "fixed", "n", "correct"):
        np.testing.assert_array_equal(getattr(engine, f"{name}_half").sum(0), getattr(engine, name))
    return engine
