"""`ua.attributes` and `ua.cumulative` give the workflow stages' tables, on any model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import unit_ablation as ua
from unit_ablation.analysis.attributes import unit_attributes
from unit_ablation.analysis.cumulative import cumulative_table, set_predictions, unit_counts, unit_sets
from unit_ablation.data.dataset import to_float
from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.activations import layer_statistics
from unit_ablation.engine.basis import basis_matrix

from support.custom_models import PerImageBranch, ResidualNet, calibrated
from support.synthetic import synthetic_images

NAMES = [f"class{k}" for k in range(10)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(120, seed=7)


def dataset_of(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))


@pytest.mark.parametrize("rotation_seed", [None, 3])
def test_attributes_equal_the_workflow_stage(data, small_model, rotation_seed) -> None:
    images, labels = data
    loader = DataLoader(dataset_of(images, labels), batch_size=50)
    result = ua.attributes(small_model, "conv4", loader, rotation_seed=rotation_seed, class_names=NAMES)
    rotation = basis_matrix(small_model.unit_count("conv4"), rotation_seed)
    stats = layer_statistics(small_model, "conv4", images, rotation, batch_size=50)
    units, classes = unit_attributes(
        stats["mean"].astype(np.float64), stats["max"].astype(np.float64), stats["zero_fraction"],
        stats["logits"].astype(np.float64), labels, NAMES,
        small_model.incoming_weight("conv4").detach().numpy().astype(np.float64),
        small_model.outgoing_weight("conv4").detach().numpy().astype(np.float64),
        rotation=rotation, minimum=stats["min"].astype(np.float64),
    )  # fmt: skip
    pd.testing.assert_frame_equal(result.units, units)
    pd.testing.assert_frame_equal(result.classes, classes)
    assert result.layer_spec == ("conv4" if rotation_seed is None else "conv4@rot3")


def test_attributes_of_a_model_without_weight_methods(data, tmp_path) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    result = ua.attributes(model, "block1.relu1", dataset_of(images, labels))
    assert len(result.units) == 12 and result.units.l1_in.isna().all() and result.units.l1_out.isna().all()
    assert result.units.class_selectivity.between(0, 1).all()
    conv = ua.attributes(model, "block1.conv1", dataset_of(images, labels)).units
    # both sums in float64, in possibly different orders: equal to rounding (rtol 1e-12)
    expected = model.block1.conv1.weight.detach().double().abs().sum((1, 2, 3))
    np.testing.assert_allclose(conv.l1_in, expected, rtol=1e-12)
    units_path, classes_path = result.to_tsv(tmp_path)
    assert units_path.name == "block1.relu1.tsv" and classes_path.parent.name == "per_class"


def workflow_curves(model, layer, images, labels, class_damage, **options) -> pd.DataFrame:
    """What the `cumulative` stage computes (stages/cumulative.py), on numpy images."""
    count = 12 if layer.startswith("block") else model.unit_count(layer)
    sets = unit_sets(class_damage, options["classes"], unit_counts(options["max_units"], count), 2, 0, count)
    distinct = list(dict.fromkeys(tuple(sorted(s["units"])) for s in sets))
    predictions = set_predictions(model, layer, images, distinct, torch.zeros(count), 40, torch.device("cpu"))
    row_of = {units: row for row, units in enumerate(distinct)}
    per_set = predictions[[row_of[tuple(sorted(s["units"]))] for s in sets]]
    table = cumulative_table(sets, per_set, labels, NAMES, evaluation_halves(labels))
    table.insert(0, "layer_spec", layer)
    return table


def test_cumulative_equals_the_workflow_stage_and_is_cross_fitted(data, small_model) -> None:
    images, labels = data
    dataset = dataset_of(images, labels)
    damage = ua.ablate(small_model, "conv5", dataset, class_names=NAMES)
    curves = ua.cumulative(
        small_model, "conv5", dataset, damage, classes=2, max_units=4, random_draws=2, batch_size=40
    )
    expected = workflow_curves(small_model, "conv5", images, labels, damage.classes, classes=2, max_units=4)
    pd.testing.assert_frame_equal(curves, expected)
    # fold h ranks on half h and is evaluated on the other half: the intact accuracy of a fold is
    # that of the evaluated half, from the ablation's own per-half counts
    counts = damage.counts
    for ranked_on in (0, 1):
        intact = curves[(curves.ranked_on == ranked_on) & (curves.k == 0)]
        half = 1 - ranked_on
        assert set(intact.evaluated_on) == {half}
        expected_accuracy = 100.0 * counts.correct_half[half].sum() / counts.n_half[half].sum()
        np.testing.assert_allclose(intact.overall_accuracy, expected_accuracy)
        top = curves[(curves.ranked_on == ranked_on) & (curves.order == "top") & (curves.k == 1)]
        for _, row in top.iterrows():
            column = damage.classes[damage.classes["class"] == row["class"]][f"drop_h{ranked_on}"]
            assert damage.classes.loc[column.idxmax(), "unit"] == int(row["units"])


def test_cumulative_on_a_model_torch_fx_cannot_trace(data) -> None:
    images, labels = data
    model = calibrated(PerImageBranch(), images)
    dataset = dataset_of(images, labels)
    with pytest.warns(ua.FallbackWarning):
        damage = ua.ablate(model, "relu", dataset, class_names=NAMES)
    curves = ua.cumulative(
        model, "relu", dataset, damage, classes=1, max_units=8, random_draws=1, class_names=NAMES
    )
    assert sorted(set(curves.k)) == [0, 1, 2, 4, 8]
    # removing every unit of the only feature map leaves the bias alone: one class for all images
    everything = curves[(curves.k == 8) & (curves.order == "top")]
    assert (everything.overall_accuracy < 50).all()
    with pytest.raises(ValueError, match=r"no columns \['drop_h0', 'drop_h1'\]"):
        ua.cumulative(model, "relu", dataset, damage.classes.drop(columns=["drop_h0", "drop_h1"]))


def test_workflow_statistics_of_a_model_torch_fx_cannot_trace(data) -> None:
    """The extract stage's statistics come from a hook when the model cannot be traced."""
    images, _ = data
    model = calibrated(PerImageBranch(), images)
    stats = layer_statistics(model, "relu", images, None, batch_size=50)
    x = torch.from_numpy(to_float(images))
    with torch.no_grad():
        activation = model.relu(model.conv(x))
        np.testing.assert_array_equal(stats["mean"], activation.flatten(2).mean(2).numpy())
        np.testing.assert_array_equal(stats["logits"], torch.cat([model(b) for b in x.split(50)]).numpy())
