"""The engine-versus-naive assertion itself (`support.exactness`): it finds float32 ties, sets only
them aside, and still fails on any other difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.fashion_alexnet import FashionAlexNet

import support.exactness as exactness
from support.synthetic import synthetic_images

IMAGES, LABELS = synthetic_images(24, seed=3)
UNITS = [0, 5, 9]


def model_with_top_two_apart(gap: float) -> FashionAlexNet:
    """A random model whose classes 0 and 1 always score highest, `gap` apart (fc8's rows equal)."""
    torch.manual_seed(0)
    model = FashionAlexNet(dropout=0.0).eval()
    fc8 = model.classifier.fc8
    with torch.no_grad():
        fc8.weight[1] = fc8.weight[0]
        fc8.bias[0] = 100.0
        fc8.bias[1] = 100.0 - gap
    return model


@pytest.mark.parametrize(("gap", "tied"), [(1e-4, True), (1e-2, False)])
def test_float32_ties_are_the_images_whose_top_two_logits_are_closer_than_the_tolerance(gap, tied):
    assert 1e-4 < exactness.TIE_TOLERANCE < 1e-2
    found = exactness.float32_ties(
        model_with_top_two_apart(gap), "conv5", IMAGES, UNITS, None, AblationOptions()
    )
    assert found.shape == (len(IMAGES),) and (found == tied).all()


def _engine_off_by_one_on(image_count: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the engine's counts differ from the naive reference's when it sees `image_count` images;
    returns the image counts it was called with."""
    real = exactness.ablate_units
    seen: list[int] = []

    def ablate_units(model, layer, images, *args, **kwargs):
        seen.append(len(images))
        counts = real(model, layer, images, *args, **kwargs)
        if len(images) == image_count:
            counts.broken[0, 0] += 1
        return counts

    monkeypatch.setattr(exactness, "ablate_units", ablate_units)
    return seen


def _trained_enough_model() -> FashionAlexNet:
    """A random model with fc8 standardised on other images, so that ablations change predictions."""
    torch.manual_seed(1)
    model = FashionAlexNet(dropout=0.0).eval()
    calibration, _ = synthetic_images(64, seed=99)
    with torch.no_grad():
        logits = model(torch.from_numpy(calibration).float() / 255)
        std = logits.std(0).clamp_min(1e-6)
        fc8 = model.classifier.fc8
        fc8.weight.div_(std.unsqueeze(1))
        fc8.bias.copy_((fc8.bias - logits.mean(0)) / std)
    return model


def test_a_difference_without_ties_fails(monkeypatch):
    _engine_off_by_one_on(len(IMAGES), monkeypatch)
    monkeypatch.setattr(exactness, "float32_ties", lambda *a, **k: np.zeros(len(IMAGES), dtype=bool))
    with pytest.raises(AssertionError, match="counts differ and 0 of 24 images are float32 ties"):
        exactness.assert_matches_naive(
            _trained_enough_model(), "conv5", IMAGES, LABELS, UNITS, every_kind=False
        )


def test_too_many_ties_fail_rather_than_shrink_the_test(monkeypatch):
    _engine_off_by_one_on(len(IMAGES), monkeypatch)
    monkeypatch.setattr(exactness, "float32_ties", lambda *a, **k: np.arange(len(IMAGES)) < 3)
    with pytest.raises(AssertionError, match="counts differ and 3 of 24 images are float32 ties"):
        exactness.assert_matches_naive(
            _trained_enough_model(), "conv5", IMAGES, LABELS, UNITS, every_kind=False
        )


def test_a_difference_on_tied_images_only_is_set_aside_and_the_rest_must_agree(monkeypatch):
    seen = _engine_off_by_one_on(len(IMAGES), monkeypatch)
    monkeypatch.setattr(exactness, "float32_ties", lambda *a, **k: np.arange(len(IMAGES)) == 7)
    counts = exactness.assert_matches_naive(
        _trained_enough_model(), "conv5", IMAGES, LABELS, UNITS, every_kind=False
    )
    assert seen == [len(IMAGES), len(IMAGES) - 1]
    assert counts.n.sum() == len(IMAGES) - 1
    # a difference that remains on the other images still fails
    _engine_off_by_one_on(len(IMAGES) - 1, monkeypatch)
    with pytest.raises(AssertionError):
        exactness.assert_matches_naive(
            _trained_enough_model(), "conv5", IMAGES, LABELS, UNITS, every_kind=False
        )
