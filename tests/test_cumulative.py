"""Cumulative ablation: unit sets, ranking, class choice, and predictions against a hook reference."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_images

from unit_ablation.ablation import ablate_naive
from unit_ablation.cumulative import (
    choose_classes,
    cumulative_table,
    ranked_units,
    set_predictions,
    unit_counts,
    unit_sets,
)
from unit_ablation.models import resolve_layer


def class_damage_table() -> pd.DataFrame:
    # unit 2 hurts "b" most, unit 0 and 1 tie on "b"; "c" has the largest single-unit drop
    rows = [
        (0, "a", 1.0), (0, "b", 3.0), (0, "c", 0.0),
        (1, "a", 0.5), (1, "b", 3.0), (1, "c", 9.0),
        (2, "a", 2.0), (2, "b", 5.0), (2, "c", -1.0),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["unit", "class", "drop"])


def test_unit_counts_are_zero_then_powers_of_two_up_to_the_limit():
    assert unit_counts(32, 64) == [0, 1, 2, 4, 8, 16, 32]
    assert unit_counts(32, 20) == [0, 1, 2, 4, 8, 16]
    assert unit_counts(1, 5) == [0, 1]


def test_units_are_ranked_by_class_drop_with_ties_by_unit():
    assert ranked_units(class_damage_table(), "b") == [2, 0, 1]
    assert ranked_units(class_damage_table(), "c") == [1, 0, 2]


def test_classes_are_named_or_the_most_damaged():
    assert choose_classes(class_damage_table(), 2) == ["c", "b"]
    assert choose_classes(class_damage_table(), ["a"]) == ["a"]
    with pytest.raises(ValueError, match="'z'"):
        choose_classes(class_damage_table(), ["z"])


def test_random_sets_are_seeded_and_top_sets_are_prefixes():
    ks = [0, 1, 2]
    first = unit_sets(class_damage_table(), ["b"], ks, random_draws=2, seed=4, unit_count=3)
    again = unit_sets(class_damage_table(), ["b"], ks, random_draws=2, seed=4, unit_count=3)
    assert first == again
    top = [s["units"] for s in first if s["order"] == "top"]
    assert top == [[], [2], [2, 0]]
    assert sum(s["order"] == "random" for s in first) == 2 * len(ks)


def hook_predictions(model, layer, images, units):
    """Reference: a full forward pass with a hook zeroing the units at the layer."""
    module = resolve_layer(model, layer)

    def zero(_module, _inputs, output):
        output = output.clone()
        output[:, list(units)] = 0
        return output

    hook = module.register_forward_hook(zero)
    try:
        with torch.no_grad():
            return model(torch.from_numpy(images).float() / 255).argmax(1).numpy()
    finally:
        hook.remove()


@pytest.mark.parametrize("layer", ["conv5", "conv3"])
def test_set_predictions_match_a_hook_reference(small_model, layer):
    images, _ = synthetic_images(70, seed=41)
    sets = [[], [0], [1, 3, 5], list(range(small_model.unit_count(layer)))]
    values = torch.zeros(small_model.unit_count(layer))
    predictions = set_predictions(small_model, layer, images, sets, values, 32, torch.device("cpu"))
    for row, units in enumerate(sets):
        np.testing.assert_array_equal(predictions[row], hook_predictions(small_model, layer, images, units))
    assert (predictions[-1] != predictions[0]).any(), "removing every unit must change something"


def test_single_unit_sets_agree_with_single_unit_ablation(small_model):
    images, labels = synthetic_images(80, seed=42)
    units = list(range(small_model.unit_count("conv5")))
    naive = ablate_naive(small_model, "conv5", images, labels, units, 10)
    values = torch.zeros(len(units))
    sets = [[]] + [[u] for u in units]
    predictions = set_predictions(small_model, "conv5", images, sets, values, 25, torch.device("cpu"))
    intact_ok = predictions[0] == labels
    for u in units:
        ablated_ok = predictions[1 + u] == labels
        broken = np.bincount(labels[intact_ok & ~ablated_ok], minlength=10)
        np.testing.assert_array_equal(broken, naive.broken[u])


def test_cumulative_table_accuracies_and_drops_by_hand():
    labels = np.array([0, 0, 1, 1])
    sets = [
        {"class": "x", "order": "top", "draw": 0, "k": 0, "units": []},
        {"class": "x", "order": "top", "draw": 0, "k": 1, "units": [3]},
    ]
    predictions = np.array([[0, 0, 1, 0], [0, 1, 1, 0]])
    table = cumulative_table(sets, predictions, labels, ["x", "y"])
    assert table.class_accuracy.tolist() == [100.0, 50.0]
    assert table.overall_accuracy.tolist() == [75.0, 50.0]
    assert table.class_drop.tolist() == [0.0, 50.0]
    assert table.overall_drop.tolist() == [0.0, 25.0]
    assert table.units.tolist() == ["", "3"]
