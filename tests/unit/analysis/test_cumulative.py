"""Cumulative ablation: unit sets, ranking, class choice, and predictions against a hook reference."""

import numpy as np
import pandas as pd
import pytest
import torch

from unit_ablation.analysis.cumulative import (
    choose_classes,
    cumulative_table,
    ranked_units,
    set_predictions,
    unit_counts,
    unit_sets,
)
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.naive import ablate_naive

from support.synthetic import synthetic_images


def class_damage_table() -> pd.DataFrame:
    # unit 2 hurts "b" most, unit 0 and 1 tie on "b"; "c" has the largest single-unit drop
    rows = [
        (0, "a", 1.0), (0, "b", 3.0), (0, "c", 0.0),
        (1, "a", 0.5), (1, "b", 3.0), (1, "c", 9.0),
        (2, "a", 2.0), (2, "b", 5.0), (2, "c", -1.0),
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["unit", "class", "drop"])
    # half 0 ranks like the whole; half 1 reverses the units' order within every class
    return table.assign(drop_h0=table["drop"], drop_h1=-table["drop"])


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
    top = [s["units"] for s in first if s["order"] == "top" and s["ranked_on"] == 0]
    assert top == [[], [2], [2, 0]]
    assert sum(s["order"] == "random" and s["ranked_on"] == 0 for s in first) == 2 * len(ks)


def test_cumulative_ablation_is_cross_fitted():
    sets = unit_sets(class_damage_table(), 1, [0, 1, 2], random_draws=1, seed=0, unit_count=3)
    assert {(s["ranked_on"], s["evaluated_on"]) for s in sets} == {(0, 1), (1, 0)}
    # each fold ranks units and chooses classes by its own half's drops
    fold0 = [s for s in sets if s["ranked_on"] == 0 and s["order"] == "top"]
    fold1 = [s for s in sets if s["ranked_on"] == 1 and s["order"] == "top"]
    assert {s["class"] for s in fold0} == {"c"} and fold0[-1]["units"] == [1, 0]
    assert {s["class"] for s in fold1} == {"c"} and fold1[1]["units"] == [2]  # half 1: c's drops reversed
    # the same random draws in both folds (the control is paired with the ranked sets)
    assert [s["units"] for s in sets if s["order"] == "random" and s["ranked_on"] == 0] == [
        s["units"] for s in sets if s["order"] == "random" and s["ranked_on"] == 1
    ]


def test_no_unit_is_ranked_on_the_images_it_is_evaluated_on():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    halves = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    sets = [
        {"ranked_on": 0, "evaluated_on": 1, "class": "x", "order": "top", "draw": 0, "k": 0, "units": []},
        {"ranked_on": 0, "evaluated_on": 1, "class": "x", "order": "top", "draw": 0, "k": 1, "units": [0]},
    ]
    # the ablated model is wrong on half 0's images only: evaluated on half 1 it loses nothing
    predictions = np.array([labels, np.where(halves == 0, 1 - labels, labels)])
    table = cumulative_table(sets, predictions, labels, ["x", "y"], halves)
    assert table.class_drop.tolist() == [0.0, 0.0]
    assert table.evaluated_on.tolist() == [1, 1] and table.ranked_on.tolist() == [0, 0]
    swapped = [{**s, "ranked_on": 1, "evaluated_on": 0} for s in sets]
    table = cumulative_table(swapped, predictions, labels, ["x", "y"], halves)
    assert table.class_drop.tolist() == [0.0, 100.0]
    # on half 0 the ablated model misses both x images and calls both y images x: TPR = TNR = 0
    assert table.balanced_class_drop.tolist() == [0.0, 100.0]


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
