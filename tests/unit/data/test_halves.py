"""The fixed, class-stratified split of the evaluation images into two halves."""

import numpy as np
import pytest

from unit_ablation.data.halves import evaluation_halves


def test_images_of_each_class_alternate_halves_in_their_order():
    labels = np.array([2, 0, 0, 2, 1, 0, 2, 2, 0])
    # class 0 at 1, 2, 5, 8 -> 0, 1, 0, 1; class 1 at 4 -> 0; class 2 at 0, 3, 6, 7 -> 0, 1, 0, 1
    assert evaluation_halves(labels).tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1]


def test_halves_are_stratified_deterministic_and_non_empty_per_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 30, 1000)
    halves = evaluation_halves(labels)
    assert halves.dtype.kind == "i" and set(np.unique(halves)) == {0, 1}
    np.testing.assert_array_equal(evaluation_halves(labels.copy()), halves)
    for k in np.unique(labels):
        members = halves[labels == k]
        np.testing.assert_array_equal(members, np.arange(len(members)) % 2)
        counts = np.bincount(members, minlength=2)
        assert counts[0] - counts[1] in (0, 1)  # half 0 takes the odd one out
        if len(members) >= 2:
            assert counts.min() >= 1


def test_the_halves_of_the_first_images_are_a_prefix_of_the_halves_of_all():
    """A job resumed at image m sees the same halves as an uninterrupted one."""
    labels = np.random.default_rng(1).integers(0, 5, 200)
    whole = evaluation_halves(labels)
    for m in (0, 1, 37, 199):
        np.testing.assert_array_equal(evaluation_halves(labels[:m]), whole[:m])


def test_labels_of_any_integer_type_and_an_empty_split():
    labels = np.array([3, 3, 1, 3], dtype=np.uint8)
    assert evaluation_halves(labels).tolist() == [0, 1, 0, 0]
    assert evaluation_halves(np.array([], dtype=np.int64)).tolist() == []
    with pytest.raises(ValueError, match="one-dimensional"):
        evaluation_halves(np.zeros((2, 2), dtype=np.int64))
