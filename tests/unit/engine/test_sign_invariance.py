"""The sign of a rotated direction q_j is arbitrary: flipping columns of Q changes no count and no attribute.

Ablating direction q_j (a <- a - q_j (q_j^T a - v_j)) is the same for -q_j; the attribute stage
orients every rotated coordinate (q_j^T mu >= 0) before computing attributes, so they are the same
too, except the recorded `orientation` column. Equality is asserted exactly: negating a float is
exact and round-to-nearest is symmetric, so z computed with -q_j is bitwise -z, every product of
two negated factors (q_j * z_j, W q_j * z_j) is bitwise unchanged, and after orientation the
statistics the attributes are computed from are bitwise identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import unit_ablation.stages.extract as extract_module
from unit_ablation.analysis.attributes import (
    class_means,
    class_selectivity,
    load_activations,
    unit_attributes,
)
from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.engine.activations import layer_statistics
from unit_ablation.engine.basis import basis_matrix, orient_rotation, random_rotation
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.stages.attributes import attributes_to_files
from unit_ablation.stages.extract import extract_to_file

from support.synthetic import synthetic_images

# which columns of Q to flip: one, and several (a third of them, spread out)
FLIPS = {"one": lambda units: [units // 2], "several": lambda units: list(range(0, units, 3))}
LAYERS = ["conv3", "conv5"]  # rotated plans: delta (conv3 -> conv4 commutes with Q) and head replay


def flipped(rotation: np.ndarray, columns: list[int]) -> np.ndarray:
    """Q with the given columns negated: the same directions, the other sign."""
    signs = np.ones(rotation.shape[1])
    signs[columns] = -1
    return orient_rotation(rotation, signs)


@pytest.mark.parametrize("value", ["zero", "mean"])
@pytest.mark.parametrize("flip", FLIPS)
@pytest.mark.parametrize("layer", LAYERS)
def test_flipping_directions_changes_no_damage_count(small_model, layer, flip, value):
    images, labels = synthetic_images(120, seed=41)
    units = small_model.unit_count(layer)
    q = random_rotation(units, seed=7)
    counts, other = (
        ablate_units(
            small_model,
            layer,
            images,
            labels,
            list(range(units)),
            10,
            rotation=rotation,
            options=AblationOptions(value=value, batch_size=60, device="cpu"),
        )
        for rotation in (q, flipped(q, FLIPS[flip](units)))
    )
    assert counts.broken.sum() + counts.fixed.sum() > 0, "the case must change some predictions"
    assert counts.plan == other.plan
    for field in dataclasses.fields(counts):
        got = getattr(counts, field.name)
        if isinstance(got, np.ndarray):  # every count (totals, and per half where recorded)
            np.testing.assert_array_equal(got, getattr(other, field.name), err_msg=field.name)


@pytest.fixture
def files(idx_folder, tmp_path, small_model):
    """A prepared data set (with a held-out attribute split) and a checkpoint of the small model."""
    dataset = tmp_path / "data.npz"
    prepare_fashion_mnist(idx_folder, dataset, heldout_size=100, seed=0)
    model = tmp_path / "model.pt"
    save_checkpoint(small_model, model, {"variant": "test"})
    return {"dataset": dataset, "model": model}


def run_attributes(files, tmp_path, layer, monkeypatch, columns=None):
    """extract_to_file + attributes_to_files for `layer`, with the drawn Q's `columns` flipped."""
    name = "flipped" if columns else "drawn"
    if columns:
        monkeypatch.setattr(
            extract_module, "basis_matrix", lambda dim, seed: flipped(basis_matrix(dim, seed), columns)
        )
    activations = tmp_path / f"{name}.npz"
    extract_to_file(files["model"], files["dataset"], activations, layer, "heldout", batch_size=40)
    monkeypatch.undo()
    units, classes = tmp_path / f"{name}.units.tsv", tmp_path / f"{name}.classes.tsv"
    attributes_to_files(activations, files["model"], units, classes, layer)
    return load_activations(activations), pd.read_csv(units, sep="\t"), pd.read_csv(classes, sep="\t")


@pytest.mark.parametrize("flip", FLIPS)
@pytest.mark.parametrize("layer", LAYERS)
def test_flipping_directions_changes_no_attribute(files, tmp_path, monkeypatch, small_model, layer, flip):
    spec = f"{layer}@rot3"
    columns = FLIPS[flip](small_model.unit_count(layer))
    data, units, classes = run_attributes(files, tmp_path, spec, monkeypatch)
    data_flipped, units_flipped, classes_flipped = run_attributes(files, tmp_path, spec, monkeypatch, columns)
    # the flip reached the activations file: the flipped coordinates are exactly negated
    np.testing.assert_array_equal(data_flipped["rotation"][:, columns], -data["rotation"][:, columns])
    np.testing.assert_array_equal(data_flipped["attr_mean"][:, columns], -data["attr_mean"][:, columns])
    np.testing.assert_array_equal(data_flipped["attr_max"][:, columns], -data["attr_min"][:, columns])
    # ... and the orientation undoes it
    expected = units.orientation.to_numpy().copy()
    expected[columns] *= -1
    np.testing.assert_array_equal(units_flipped.orientation, expected)
    assert set(units.orientation) <= {-1, 1} and (units.activation_mean >= 0).all()
    pd.testing.assert_frame_equal(
        units.drop(columns="orientation"), units_flipped.drop(columns="orientation"), check_exact=True
    )
    pd.testing.assert_frame_equal(classes, classes_flipped, check_exact=True)


def test_the_activations_file_holds_the_attribute_split_only(files, tmp_path, monkeypatch):
    data, _, _ = run_attributes(files, tmp_path, "conv4", monkeypatch)
    with np.load(files["dataset"]) as dataset:
        heldout = dataset["heldout_labels"]
    np.testing.assert_array_equal(data["attr_labels"], heldout)
    assert data["attr_mean"].shape == (len(heldout), 24)
    assert not [key for key in data if not key.startswith("attr_") and key != "class_names"]


def test_the_canonical_basis_is_never_flipped(files, tmp_path, monkeypatch):
    _, units, _ = run_attributes(files, tmp_path, "conv4", monkeypatch)
    assert (units.orientation == 1).all()
    assert (units.active_fraction >= 0).all() and (units.active_fraction <= 1).all()


def test_without_orientation_selectivity_depends_on_the_sign(small_model):
    """The control: un-oriented, Morcos's selectivity (and the most selective class) of -z differs
    from that of z, so the invariance above is the orientation's doing, not an accident."""
    images, labels = synthetic_images(200, seed=43)
    units = small_model.unit_count("conv5")
    q = random_rotation(units, seed=3)
    stats = layer_statistics(small_model, "conv5", images, q, batch_size=100)
    z = stats["mean"].astype(np.float64)
    selectivity, top = class_selectivity(class_means(z, labels, 10))
    selectivity_neg, top_neg = class_selectivity(class_means(-z, labels, 10))
    assert not np.allclose(selectivity, selectivity_neg, atol=1e-3)
    assert (top != top_neg).any()
    # the oriented attribute table is the same for Q and -Q (all columns negated)
    names = [str(k) for k in range(10)]
    weights = dict(weight_in=np.ones((units, 2, 3, 3)), weight_out=np.ones((4, units, 9)))
    tables = {
        sign: unit_attributes(
            mean=sign * z,
            maximum=sign * (stats["max"] if sign > 0 else stats["min"]),  # max(-z) = -min(z)
            minimum=sign * (stats["min"] if sign > 0 else stats["max"]),
            zero_fraction=stats["zero_fraction"],
            logits=stats["logits"],
            labels=labels,
            class_names=names,
            rotation=sign * q,
            **weights,
        )
        for sign in (1, -1)
    }
    (units_pos, classes_pos), (units_neg, classes_neg) = tables[1], tables[-1]
    drop = ["orientation"]
    pd.testing.assert_frame_equal(
        units_pos.drop(columns=drop), units_neg.drop(columns=drop), check_exact=True
    )
    pd.testing.assert_frame_equal(classes_pos, classes_neg, check_exact=True)
    assert (units_pos.orientation == -units_neg.orientation).all()
