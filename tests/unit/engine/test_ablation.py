import numpy as np
import pytest
import torch

from unit_ablation.analysis.damage import balanced_class_accuracy, class_table
from unit_ablation.data.halves import evaluation_halves
from unit_ablation.engine.ablation_engine import ablate_directions
from unit_ablation.engine.basis import from_basis, random_rotation, to_basis
from unit_ablation.engine.counts import HALF_ARRAYS, count_batch, count_changes, counts_from_predictions
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.engine.options import AblationOptions
from unit_ablation.engine.values import channel_means
from unit_ablation.runtime.device import choose_device

from support.synthetic import synthetic_images

ALL_ARRAYS = ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS)


def test_counts_against_a_hand_worked_example():
    labels = torch.tensor([0, 0, 1, 1, 2])
    intact = torch.tensor([0, 1, 1, 1, 0])  # correct: image 0, 2, 3
    ablated = torch.tensor(
        [
            [1, 0, 1, 0, 2],  # breaks image 0 (class 0) and 3 (class 1); fixes 1 (class 0) and 4 (class 2)
            [0, 1, 1, 1, 0],  # changes nothing
        ]
    )
    broken, fixed = count_changes(intact, ablated, labels, num_classes=3)
    assert broken.tolist() == [[1, 1, 0], [0, 0, 0]]
    assert fixed.tolist() == [[1, 0, 1], [0, 0, 0]]


def test_counts_per_half_against_a_hand_worked_example():
    labels = torch.tensor([0, 0, 1, 1, 2])
    halves = torch.tensor([0, 1, 0, 1, 0])  # class by class, alternating
    assert halves.tolist() == evaluation_halves(labels.numpy()).tolist()
    intact = torch.tensor([0, 1, 1, 1, 0])
    ablated = torch.tensor([[1, 0, 1, 0, 2], [0, 1, 1, 1, 0]])
    counts = count_batch(intact, ablated, labels, halves, num_classes=3)
    # copy 0 breaks image 0 (half 0, class 0) and 3 (half 1, class 1),
    # and fixes image 1 (half 1, class 0) and 4 (half 0, class 2)
    assert counts["broken_half"].tolist() == [[[1, 0, 0], [0, 0, 0]], [[0, 1, 0], [0, 0, 0]]]
    assert counts["fixed_half"].tolist() == [[[0, 0, 1], [0, 0, 0]], [[1, 0, 0], [0, 0, 0]]]
    # copy 0 changes image 0 (0 -> 1), 1 (1 -> 0), 3 (1 -> 0), 4 (0 -> 2)
    assert counts["newly"].tolist() == [[[0, 1, 1], [0, 0, 0]], [[2, 0, 0], [0, 0, 0]]]
    assert counts["no_longer"].tolist() == [[[2, 0, 0], [0, 0, 0]], [[0, 2, 0], [0, 0, 0]]]
    assert counts["correct_half"].tolist() == [[1, 1, 0], [0, 1, 0]]
    assert counts["predicted_half"].tolist() == [[2, 1, 0], [0, 2, 0]]
    reference = counts_from_predictions(
        intact.numpy(), ablated.numpy(), labels.numpy(), halves.numpy(), num_classes=3
    )
    for name, value in counts.items():
        np.testing.assert_array_equal(value.numpy(), reference[name], err_msg=name)
    broken, fixed = count_changes(intact, ablated, labels, num_classes=3)
    np.testing.assert_array_equal(counts["broken_half"].sum(0).numpy(), broken.numpy())
    np.testing.assert_array_equal(counts["fixed_half"].sum(0).numpy(), fixed.numpy())


def test_batch_counts_equal_the_class_by_class_reference_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    intact = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 7, 300))
    ablated = np.where(rng.random((5, 300)) < 0.8, intact, rng.integers(0, 7, (5, 300)))
    halves = evaluation_halves(labels)
    counts = count_batch(*map(torch.from_numpy, (intact, ablated, labels, halves)), num_classes=7)
    reference = counts_from_predictions(intact, ablated, labels, halves, num_classes=7)
    assert reference["newly"].sum() > 0 and reference["broken_half"].sum() > 0
    for name, value in counts.items():
        np.testing.assert_array_equal(value.numpy(), reference[name], err_msg=name)


def test_rotated_basis_with_nothing_ablated_leaves_the_logits_unchanged(small_model):
    x = torch.rand(8, 1, 28, 28)
    activation = small_model.forward_to("conv4", x)
    q = torch.from_numpy(random_rotation(activation.shape[1], seed=3)).float()
    round_trip = from_basis(to_basis(activation, q), q)
    # float32 round trip through an orthogonal matrix: errors of a few ulps of the activation scale
    torch.testing.assert_close(round_trip, activation, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        small_model.forward_from("conv4", round_trip), small_model(x), rtol=0, atol=1e-5
    )


def test_rotated_ablation_equals_set_coordinate_and_rotate_back():
    activation = torch.rand(3, 5, 2, 2)
    q = torch.from_numpy(random_rotation(5, seed=0)).float()
    values = torch.linspace(-0.5, 0.5, 5)
    copies = ablate_directions(activation, [1, 4], q, values)
    for k, unit in enumerate([1, 4]):
        z = to_basis(activation, q)
        z[:, unit] = values[unit]
        torch.testing.assert_close(copies[k], from_basis(z, q), rtol=0, atol=1e-6)
    canonical = ablate_directions(activation, [2], None, torch.zeros(5))
    assert torch.all(canonical[0, :, 2] == 0)
    assert torch.equal(canonical[0, :, [0, 1, 3, 4]], activation[:, [0, 1, 3, 4]])


def ablated_predictions(model, layer, images, units, rotation=None, value="zero") -> tuple[np.ndarray, ...]:
    """Intact predictions (N) and predictions with each unit ablated (K x N), computed directly:
    a full forward pass per unit with the layer's output edited by a hook."""
    from unit_ablation.engine.values import prepare_ablation

    _, q, values = prepare_ablation(model, layer, images, rotation, value, 500, "cpu", None)
    module = resolve_layer(model, layer)
    x = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        intact = model(x).argmax(1).numpy()
        rows = []
        for unit in units:
            hook = module.register_forward_hook(
                lambda _m, _i, out, unit=unit: ablate_directions(out, [unit], q, values)[0]
            )
            try:
                rows.append(model(x).argmax(1).numpy())
            finally:
                hook.remove()
    return intact, np.stack(rows)


@pytest.mark.parametrize(("layer", "rotation_seed", "value"), [("conv5", None, "zero"), ("conv4", 0, "mean")])
def test_balanced_class_accuracy_columns_equal_a_direct_computation(small_model, layer, rotation_seed, value):
    images, labels = synthetic_images(120, seed=15)
    units_total = small_model.unit_count(layer)
    rotation = None if rotation_seed is None else random_rotation(units_total, rotation_seed)
    units = list(range(units_total))
    counts = ablate_units(
        small_model,
        layer,
        images,
        labels,
        units,
        10,
        rotation=rotation,
        options=AblationOptions(value=value, batch_size=50),
    )
    intact, ablated = ablated_predictions(small_model, layer, images, units, rotation, value)
    table = class_table(vars(counts), [str(k) for k in range(10)])
    assert table.balanced_accuracy_drop.abs().max() > 0, "the case must change some balanced accuracy"
    for k in range(10):
        rows = table[table["class"] == str(k)]
        expected_intact = balanced_class_accuracy(intact, labels, k)
        expected_ablated = balanced_class_accuracy(ablated, labels, k)
        np.testing.assert_allclose(rows.balanced_accuracy_intact, expected_intact, rtol=1e-12)
        np.testing.assert_allclose(rows.balanced_accuracy_ablated, expected_ablated, rtol=1e-12)
        np.testing.assert_allclose(rows.balanced_accuracy_drop, expected_intact - expected_ablated, atol=1e-9)


def test_results_do_not_depend_on_batch_or_chunk_sizes(small_model):
    images, labels = synthetic_images(90, seed=12)
    units = list(range(small_model.unit_count("conv5")))
    whole = ablate_units(
        small_model,
        "conv5",
        images,
        labels,
        units,
        10,
        options=AblationOptions(batch_size=90, units_per_pass=len(units)),
    )
    assert whole.broken.sum() > 0
    single = ablate_units(
        small_model,
        "conv5",
        images,
        labels,
        units,
        10,
        options=AblationOptions(batch_size=1, units_per_pass=1),
    )
    for name in ALL_ARRAYS:
        np.testing.assert_array_equal(getattr(single, name), getattr(whole, name), err_msg=name)
    split = [
        ablate_units(
            small_model,
            "conv5",
            images,
            labels,
            part,
            10,
            options=AblationOptions(batch_size=40, units_per_pass=3),
        )
        for part in (units[:5], units[5:])
    ]
    np.testing.assert_array_equal(np.concatenate([p.broken for p in split]), whole.broken)
    np.testing.assert_array_equal(np.concatenate([p.fixed for p in split]), whole.fixed)
    for name in ("broken_half", "fixed_half", "newly", "no_longer"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(p, name) for p in split], axis=1), getattr(whole, name)
        )


def test_a_dead_unit_changes_nothing(small_model):
    with torch.no_grad():
        block = small_model.features.conv5
        block.conv.weight[2].zero_()
        if hasattr(block, "bn"):  # BN net: scale 0 and a negative shift keep the unit at 0 after ReLU
            block.bn.weight[2], block.bn.bias[2] = 0.0, -1.0
        else:
            block.conv.bias[2] = -1.0
    images, labels = synthetic_images(60, seed=13)
    activation = small_model.forward_to("conv5", torch.rand(8, 1, 28, 28))
    assert torch.all(activation[:, 2] == 0), "the unit must really be dead"
    counts = ablate_units(
        small_model, "conv5", images, labels, [1, 2], 10, options=AblationOptions(batch_size=30)
    )
    assert counts.broken[1].sum() == 0 and counts.fixed[1].sum() == 0
    assert counts.newly[:, 1].sum() == 0 and counts.no_longer[:, 1].sum() == 0
    assert counts.broken[0].sum() + counts.fixed[0].sum() > 0


def test_channel_means_are_dataset_means_over_images_and_positions(small_model):
    images, _ = synthetic_images(70, seed=14)
    activation = small_model.forward_to("conv4", torch.from_numpy(images).float() / 255).double()
    expected = activation.mean(dim=(0, 2, 3))
    got = channel_means(small_model, "conv4", images, None, batch_size=32, device=torch.device("cpu"))
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    q = torch.from_numpy(random_rotation(expected.numel(), seed=2))
    rotated = channel_means(
        small_model, "conv4", images, q.float(), batch_size=32, device=torch.device("cpu")
    )
    torch.testing.assert_close(rotated.double(), q.T @ expected, rtol=1e-4, atol=1e-5)


def test_device_choice_falls_back_to_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto").type == "cpu"
    assert choose_device("cuda").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"
    assert choose_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="tpu"):
        choose_device("tpu")
