import numpy as np
import pytest
import torch

from unit_ablation.attributes import (
    class_correlation,
    class_means,
    class_selectivity,
    incoming_l1,
    outgoing_l1,
    per_class_selectivity,
    unit_attributes,
)
from unit_ablation.basis import random_rotation
from unit_ablation.models import build_model

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
