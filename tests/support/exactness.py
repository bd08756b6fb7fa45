"""The engine-versus-naive assertion: identical integer counts, except on float32 ties.

The engine sums in another order than the naive reference, so their float32 logits differ at
rounding level: by up to about 1e-4 on these models, as each differs from a float64 reference (6e-5
to 8e-5 measured on the torchvision cases). Where an image's top two logits lie closer than that,
float32 cannot order them and either prediction is right: which one a run gives depends on the
CPU's kernels. One such image (AlexNet, a rotated conv5 direction: top-two gap 2.2e-5 in float64)
split the counts on an AMD EPYC and not on an Intel Xeon. So when the counts differ, the images
whose top two logits lie within `TIE_TOLERANCE` in a float64 reference (intact, or with any of the
units ablated) are set aside, at most `MAX_TIED_SHARE` of them, and the counts on the rest must be
identical.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.ablation_engine import ablate_directions
from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.naive import ablate_naive
from unit_ablation.engine.options import DEFAULT_OPTIONS, AblationOptions
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.runtime.device import image_batches

COUNT_ARRAYS = ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS)
TIE_TOLERANCE = 1e-3  # logits: 10 x the float32 error measured above
MAX_TIED_SHARE = 0.1  # of the images: more ties than this fails the test rather than shrink it


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
    if not _same_counts(engine, naive):
        tied = float32_ties(model, layer, images, units, rotation, options)
        assert 0 < tied.sum() <= MAX_TIED_SHARE * len(images), (
            f"counts differ and {tied.sum()} of {len(images)} images are float32 ties"
        )
        # the same ablation values as on every image (mean ablation: the means over all of them)
        kept, kept_labels = images[~tied], np.asarray(labels)[~tied]
        engine = ablate_units(
            model, layer, kept, kept_labels, units, num_classes, rotation, options, mean_images=images
        )
        naive = ablate_naive(
            model, layer, kept, kept_labels, units, num_classes, rotation, reference, mean_images=images
        )
        labels = kept_labels
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


def _same_counts(engine, naive) -> bool:
    return all(np.array_equal(getattr(engine, name), getattr(naive, name)) for name in COUNT_ARRAYS)


@torch.no_grad()
def float32_ties(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    units: list[int],
    rotation: np.ndarray | None,
    options: AblationOptions,
) -> np.ndarray:
    """Per image: whether its top two logits lie within TIE_TOLERANCE in a float64 copy of the
    model, intact or with any one of `units` ablated (the values the float32 run used)."""
    device, q, values = prepare_ablation(
        model, layer, images, rotation, options.value, options.batch_size, options.device, None,
        options.precision,
    )  # fmt: skip
    wide = copy.deepcopy(model).double()
    module = resolve_layer(wide, layer)
    q = None if q is None else q.double()
    values = values.double()

    def gaps() -> torch.Tensor:
        logits = torch.cat([wide(x.double()) for x, _ in image_batches(images, None, 64, device)])
        top = logits.topk(2, dim=1).values
        return (top[:, 0] - top[:, 1]).cpu()

    tied = gaps() < TIE_TOLERANCE
    for unit in units:
        hook = module.register_forward_hook(
            lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
        )
        try:
            tied |= gaps() < TIE_TOLERANCE
        finally:
            hook.remove()
    return tied.numpy()
