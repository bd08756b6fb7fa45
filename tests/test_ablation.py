import numpy as np
import pytest
import torch
from conftest import synthetic_images

from unit_ablation.ablation import (
    ablate_directions,
    ablate_naive,
    ablate_units,
    channel_means,
    choose_device,
    count_changes,
)
from unit_ablation.basis import from_basis, random_rotation, to_basis


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


CASES = [
    ("conv5", None, "zero"),
    ("conv5", 0, "zero"),
    ("conv3", None, "zero"),
    ("conv3", 1, "mean"),
    ("conv4", None, "mean"),
]


@pytest.mark.parametrize(("layer", "rotation_seed", "value"), CASES)
def test_engine_matches_the_naive_reference(small_model, layer, rotation_seed, value, compute_device):
    images, labels = synthetic_images(120, seed=11)
    units_total = small_model.unit_count(layer)
    rotation = None if rotation_seed is None else random_rotation(units_total, rotation_seed)
    units = list(range(units_total))
    engine = ablate_units(
        small_model,
        layer,
        images,
        labels,
        units,
        10,
        rotation=rotation,
        value=value,
        batch_size=50,
        units_per_pass=7,  # divides neither the units nor the images
        device=compute_device,
    )
    naive = ablate_naive(
        small_model, layer, images, labels, units, 10, rotation=rotation, value=value, device=compute_device
    )
    assert naive.broken.sum() + naive.fixed.sum() > 0, "the case must change some predictions"
    np.testing.assert_array_equal(engine.broken, naive.broken)
    np.testing.assert_array_equal(engine.fixed, naive.fixed)
    np.testing.assert_array_equal(engine.correct, naive.correct)
    np.testing.assert_array_equal(engine.n, np.bincount(labels, minlength=10))


def test_results_do_not_depend_on_batch_or_chunk_sizes(small_model):
    images, labels = synthetic_images(90, seed=12)
    units = list(range(small_model.unit_count("conv5")))
    whole = ablate_units(
        small_model, "conv5", images, labels, units, 10, batch_size=90, units_per_pass=len(units)
    )
    assert whole.broken.sum() > 0
    single = ablate_units(small_model, "conv5", images, labels, units, 10, batch_size=1, units_per_pass=1)
    np.testing.assert_array_equal(single.broken, whole.broken)
    split = [
        ablate_units(small_model, "conv5", images, labels, part, 10, batch_size=40, units_per_pass=3)
        for part in (units[:5], units[5:])
    ]
    np.testing.assert_array_equal(np.concatenate([p.broken for p in split]), whole.broken)
    np.testing.assert_array_equal(np.concatenate([p.fixed for p in split]), whole.fixed)


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
    counts = ablate_units(small_model, "conv5", images, labels, [1, 2], 10, batch_size=30)
    assert counts.broken[1].sum() == 0 and counts.fixed[1].sum() == 0
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
