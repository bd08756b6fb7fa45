import numpy as np
import pytest
import torch

from unit_ablation.analysis.attributes import (
    ACTIVATION_SHAPES,
    active_fraction,
    class_correlation,
    class_gap,
    class_means,
    class_selectivity,
    incoming_l1,
    load_activations,
    orient_statistics,
    orientation_signs,
    outgoing_l1,
    per_class_gap,
    per_class_selectivity,
    unit_attributes,
)
from unit_ablation.engine.basis import random_rotation
from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.models.fashion_alexnet import build_model

EPS = 1e-7


def test_selectivity_on_hand_made_activations_with_a_dead_unit():
    # 4 images, classes 0, 0, 1, 2; units: class-0 unit, dead unit, uniform unit, class-2 unit
    activations = np.array(
        [
            [2.0, 0.0, 1.0, 0.0],
            [4.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 3.0],
        ]
    )
    labels = np.array([0, 0, 1, 2])
    mu = class_means(activations, labels, 3)
    np.testing.assert_allclose(mu[0], [3.0, 0.0, 0.0])
    np.testing.assert_allclose(mu[3], [0.0, 1.0, 3.0])
    selectivity, top = class_selectivity(mu)
    assert selectivity[0] == pytest.approx(1.0, abs=1e-6)  # (3 - 0) / (3 + 0)
    assert selectivity[1] == 0.0 and not np.isnan(selectivity[1])  # dead: 0, not NaN
    assert selectivity[2] == pytest.approx(0.0, abs=1e-12)  # same mean for every class
    assert selectivity[3] == pytest.approx((3 - 0.5) / (3 + 0.5 + EPS))
    assert top[0] == 0 and top[3] == 2
    si = per_class_selectivity(mu)
    assert si[3, 2] == pytest.approx((3 - 0.5) / (3 + 0.5 + EPS))
    assert si[3, 0] == pytest.approx((0 - 2) / (0 + 2 + EPS))
    assert np.all(si[1] == 0)
    table, _ = unit_attributes(
        activations,
        activations,
        np.zeros_like(activations),
        np.zeros((4, 3)),
        labels,
        ["a", "b", "c"],
        weight_in=np.ones((4, 2, 3, 3)),
        weight_out=np.ones((5, 4, 9)),
    )
    assert table.dead.tolist() == [False, True, False, False]
    assert table.class_selectivity.notna().all()
    assert table.orientation.tolist() == [1, 1, 1, 1]  # the canonical basis is never flipped
    assert table.active_fraction.tolist() == [0.5, 0.0, 1.0, 0.5]


def test_class_gap_is_the_standardised_class_mean_gap():
    activations = np.array(
        [
            [2.0, 0.0, 1.0, 0.0],
            [4.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 3.0],
        ]
    )
    labels = np.array([0, 0, 1, 2])
    mu = class_means(activations, labels, 3)
    sigma = activations.std(axis=0)  # population std over the images
    gap = class_gap(mu, sigma)
    assert gap[0] == pytest.approx((3 - 0) / np.std([2, 4, 0, 0]))
    assert gap[1] == 0.0 and gap[2] == 0.0  # constant units (dead, uniform): 0, not NaN
    assert gap[3] == pytest.approx((3 - 0.5) / np.std([0, 0, 1, 3]))
    per_class = per_class_gap(mu, sigma)
    assert per_class[3, 2] == pytest.approx(gap[3])  # the top class's gap is the unit's gap
    assert per_class[3, 0] == pytest.approx((0 - 2) / np.std([0, 0, 1, 3]))
    assert np.all(per_class[1] == 0) and np.all(per_class[2] == 0)
    # well defined on signed coordinates where Morcos's denominator mu_max + mu_-max vanishes
    signed = np.array([[1.0, -1.0]])
    assert class_gap(signed, np.array([1.0]))[0] == pytest.approx(2.0)
    units, classes = unit_attributes(
        activations,
        activations,
        np.zeros_like(activations),
        np.zeros((4, 3)),
        labels,
        ["a", "b", "c"],
        weight_in=np.ones((4, 2, 3, 3)),
        weight_out=np.ones((5, 4, 9)),
    )
    np.testing.assert_allclose(units.class_gap, gap)
    np.testing.assert_allclose(classes.class_gap, per_class.ravel())


def test_active_fraction_counts_images_with_a_nonzero_pooled_activation():
    pooled = np.array([[0.0, 1.0, -0.5], [0.0, 0.0, 2.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(active_fraction(pooled), [0.0, 0.5, 1.0])


def test_orientation_flips_rotated_coordinates_with_a_negative_mean_only():
    mean = np.array([[1.0, -2.0, 0.0, -1.0], [2.0, -1.0, 0.0, 3.0]])
    np.testing.assert_array_equal(orientation_signs(mean, rotated=True), [1, -1, 1, 1])
    np.testing.assert_array_equal(orientation_signs(mean, rotated=False), [1, 1, 1, 1])
    maximum, minimum = mean + 1, mean - 1
    signs = np.array([1, -1, 1, -1])
    oriented_mean, oriented_max, oriented_min = orient_statistics(mean, maximum, minimum, signs)
    np.testing.assert_array_equal(oriented_mean, mean * signs)
    np.testing.assert_array_equal(oriented_max[:, [0, 2]], maximum[:, [0, 2]])
    np.testing.assert_array_equal(oriented_max[:, [1, 3]], -minimum[:, [1, 3]])  # max(-z) = -min(z)
    np.testing.assert_array_equal(oriented_min[:, [1, 3]], -maximum[:, [1, 3]])


def test_rotated_attributes_record_the_orientation_and_need_the_minimum():
    rng = np.random.default_rng(3)
    mean = rng.standard_normal((20, 4)) + np.array([1.0, -1.0, 2.0, -2.0])
    labels = rng.integers(0, 3, 20)
    common = dict(
        zero_fraction=np.zeros_like(mean),
        logits=rng.standard_normal((20, 3)),
        labels=labels,
        class_names=["a", "b", "c"],
        weight_in=np.ones((4, 2, 3, 3)),
        weight_out=np.ones((5, 4, 9)),
        rotation=random_rotation(4, seed=0),
    )
    table, _ = unit_attributes(mean, mean + 1, minimum=mean - 1, **common)
    assert table.orientation.tolist() == [1, -1, 1, -1]
    assert (table.activation_mean >= 0).all()  # oriented: q_j^T mu >= 0
    signs = np.array([1, -1, 1, -1])
    np.testing.assert_array_equal(table.activation_max, (signs * mean).max(axis=0) + 1)  # max(-z) = -min(z)
    with pytest.raises(ValueError, match="minimum"):
        unit_attributes(mean, mean + 1, **common)


def test_the_activations_file_must_hold_the_spatial_minimum(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"class_names": np.array(["a", "b", "c"])}
    for key in ("mean", "max", "min", "zero_fraction"):
        arrays[f"attr_{key}"] = rng.random((4, 6)).astype(np.float32)
    arrays["attr_logits"] = rng.random((4, 3)).astype(np.float32)
    arrays["attr_labels"] = rng.integers(0, 3, 4)
    assert set(arrays) == set(ACTIVATION_SHAPES) - {"rotation"}
    np.savez(tmp_path / "good.npz", **arrays)
    assert load_activations(tmp_path / "good.npz")["attr_min"].shape == (4, 6)
    np.savez(tmp_path / "old.npz", **{k: v for k, v in arrays.items() if k != "attr_min"})
    with pytest.raises(CorruptFileError, match="old.npz: activations file lacks the array\\(s\\) attr_min"):
        load_activations(tmp_path / "old.npz")
    np.savez(tmp_path / "short.npz", **(arrays | {"attr_min": arrays["attr_min"][:, :-1]}))
    with pytest.raises(CorruptFileError, match="short.npz: activations file array 'attr_min' has shape"):
        load_activations(tmp_path / "short.npz")


def test_class_correlation_signs_and_constant_units():
    activations = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    corr = class_correlation(activations, probabilities)
    np.testing.assert_allclose(corr[0], [1.0, -1.0])
    np.testing.assert_array_equal(corr[1], [0.0, 0.0])  # constant unit: no correlation, not NaN


def test_l1_norms_in_and_out_on_a_tiny_model():
    torch.manual_seed(0)
    model = build_model(width=0.25)
    conv5 = model.features.conv5.conv.weight.detach().numpy()
    fc6 = model.classifier.fc6.weight.detach().numpy()
    units = conv5.shape[0]
    w_in = incoming_l1(model.incoming_weight("conv5").detach().numpy())
    w_out = outgoing_l1(model.outgoing_weight("conv5").detach().numpy())
    for u in range(units):
        assert w_in[u] == pytest.approx(np.abs(conv5[u]).sum(), rel=1e-6)
        # fc6 reads the flattened (channel, 3, 3) pool5 map: unit u owns columns 9u .. 9u + 8
        assert w_out[u] == pytest.approx(np.abs(fc6[:, 9 * u : 9 * u + 9]).sum(), rel=1e-6)
    conv4_out = outgoing_l1(model.outgoing_weight("conv4").detach().numpy())
    assert conv4_out[3] == pytest.approx(np.abs(conv5[:, 3]).sum(), rel=1e-6)


def test_rotated_l1_uses_the_rotated_filters():
    weight = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    q = random_rotation(4, seed=1)
    rotated = np.einsum("uj,uchw->jchw", q, weight)
    np.testing.assert_allclose(incoming_l1(weight, q), np.abs(rotated).reshape(4, -1).sum(1))
    np.testing.assert_allclose(incoming_l1(weight, np.eye(4)), incoming_l1(weight))


def test_rotated_outgoing_l1_uses_the_rotated_columns():
    weight = np.random.default_rng(1).standard_normal((6, 4, 9))  # (out, units, positions)
    q = random_rotation(4, seed=2)
    rotated = np.einsum("uj,oup->ojp", q, weight)
    np.testing.assert_allclose(outgoing_l1(weight, q), np.abs(rotated).sum(axis=(0, 2)))


def test_incoming_l1_folds_batchnorm_into_the_filter():
    torch.manual_seed(0)
    model = build_model(width=0.25, batchnorm=True).eval()
    bn = model.features.conv3.bn
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.running_var.uniform_(0.5, 4.0)
    raw = model.features.conv3.conv.weight.detach().numpy()
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    got = incoming_l1(model.incoming_weight("conv3").detach().numpy())
    np.testing.assert_allclose(got, np.abs(raw).reshape(len(raw), -1).sum(1) * np.abs(scale), rtol=1e-5)


def test_outgoing_l1_folds_the_next_layers_batchnorm():
    torch.manual_seed(0)
    model = build_model(width=0.25, batchnorm=True).eval()
    bn = model.features.conv4.bn
    with torch.no_grad():
        bn.weight.uniform_(-2.0, 2.0)
        bn.running_var.uniform_(0.5, 4.0)
    raw = model.features.conv4.conv.weight.detach().numpy()  # conv4 reads conv3's units
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    got = outgoing_l1(model.outgoing_weight("conv3").detach().numpy())
    expected = (np.abs(raw) * np.abs(scale)[:, None, None, None]).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.allclose(got, np.abs(raw).sum(axis=(0, 2, 3)), rtol=1e-3)  # the fold matters


def test_the_attribute_stage_leaves_a_weight_norm_nan_where_the_model_gives_no_weights(caplog):
    from unit_ablation.stages.attributes import layer_weight

    class Untraceable(torch.nn.Module):
        def incoming_weight(self, layer: str) -> torch.Tensor:
            raise ValueError(f"cannot trace the model to find what produces {layer}")

        def outgoing_weight(self, layer: str) -> torch.Tensor:
            return torch.ones(3, 2, 4)

    assert layer_weight(Untraceable(), "incoming_weight", "features.3@rot1") is None
    assert "features.3@rot1: no incoming weight (cannot trace" in caplog.text
    weight = layer_weight(Untraceable(), "outgoing_weight", "features.3@rot1")
    assert weight.dtype == np.float64 and weight.shape == (3, 2, 4)
