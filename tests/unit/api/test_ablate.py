"""`ua.ablate` on models that are not in the zoo, against the naive reference: identical counts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import unit_ablation as ua
from unit_ablation.data.dataset import to_float
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.naive import ablate_naive
from unit_ablation.engine.options import AblationOptions

from support.custom_models import CLASSES, BatchBranch, PerImageBranch, ResidualNet, SharedReLU, calibrated
from support.exactness import COUNT_ARRAYS
from support.synthetic import synthetic_images


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(160, seed=5)


def naive(model, layer, images, labels, units=None, rotation_seed=None, value="zero", batch_size=64):
    units = list(range(units)) if isinstance(units, int) else units
    rotation = None if rotation_seed is None else basis_matrix(len(units), rotation_seed)
    options = AblationOptions(value=value, batch_size=batch_size)
    return ablate_naive(model, layer, images, labels, units, CLASSES, rotation=rotation, options=options)


def assert_same_counts(result: ua.AblationResult, reference) -> None:
    assert reference.broken.sum() + reference.fixed.sum() > 0, "the case must change some predictions"
    for name in COUNT_ARRAYS:
        np.testing.assert_array_equal(getattr(result.counts, name), getattr(reference, name), err_msg=name)


@pytest.mark.parametrize(
    ("layer", "plan"),
    [
        ("block2", "closed-form"),
        ("block2.bn1", "delta"),
        ("block1.relu1", "delta"),
        ("block1", "head-replay"),
    ],
)
def test_residual_net_equals_naive(data, layer, plan) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    result = ua.ablate(model, layer, dataset, batch_size=64)
    assert result.plan == plan and result.fallback_reason == ""
    assert_same_counts(result, naive(model, layer, images, labels, 12))


def test_dataloader_and_dataset_give_the_same_counts(data) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    from_loader = ua.ablate(
        model, "block2", DataLoader(dataset, batch_size=48), value="mean", rotation_seed=1
    )
    reference = naive(model, "block2", images, labels, 12, rotation_seed=1, value="mean", batch_size=48)
    assert_same_counts(from_loader, reference)
    from_dataset = ua.ablate(model, "block2", dataset, value="mean", rotation_seed=1, batch_size=48)
    for name in COUNT_ARRAYS:
        np.testing.assert_array_equal(getattr(from_loader.counts, name), getattr(from_dataset.counts, name))


@pytest.mark.parametrize("model_class", [PerImageBranch, BatchBranch])
def test_untraceable_model_falls_back_to_hooks_exactly(data, model_class) -> None:
    images, labels = data
    model = calibrated(model_class(), images)
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    with pytest.warns(ua.FallbackWarning, match=r"torch\.fx cannot trace .*plan 'hooks'"):
        result = ua.ablate(model, "relu", DataLoader(dataset, batch_size=40), units_per_pass=4)
    assert result.plan == "hooks" and "cannot trace" in result.fallback_reason
    reference = naive(model, "relu", images, labels, 8, batch_size=40)
    assert_same_counts(result, reference)
    # the workflow's entry point (uint8 arrays) takes the same fallback
    options = AblationOptions(batch_size=40, units_per_pass=4)
    workflow = ablate_units(model, "relu", images, labels, list(range(8)), CLASSES, options=options)
    assert workflow.plan == "hooks"
    for name in COUNT_ARRAYS:
        np.testing.assert_array_equal(getattr(workflow, name), getattr(reference, name), err_msg=name)


def test_fallback_stacks_units_only_where_exact(data) -> None:
    """Stacked copies change BatchBranch's branch (a batch of 4 x 40 images): one unit per forward."""
    from unit_ablation.engine.hooked import HookedEngine

    images, labels = data
    x = torch.from_numpy(to_float(images[:40]))
    chosen = {}
    for model_class in (PerImageBranch, BatchBranch):
        model = calibrated(model_class(), images)
        engine = HookedEngine(model, model.relu, "relu", units_per_pass=4)
        engine.predictions(x, list(range(8)), torch.zeros(8))
        chosen[model_class.__name__] = engine.units_per_forward
    assert chosen == {"PerImageBranch": 4, "BatchBranch": 1}


def test_matches_the_workflow_engine_on_the_builtin_model(data, small_model) -> None:
    images, labels = data
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    result = ua.ablate(small_model, "conv5", dataset, batch_size=50)
    units = list(range(small_model.unit_count("conv5")))
    workflow = ablate_units(
        small_model, "conv5", images, labels, units, CLASSES, options=AblationOptions(batch_size=50)
    )
    assert_same_counts(result, workflow)
    assert result.plan == workflow.plan


def test_tables_and_files(data, tmp_path) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    result = ua.ablate(
        model, "block2", dataset, units=[0, 3, 5], rotation_seed=2, class_names=list("abcdefghij")
    )
    assert list(result.units.unit) == [0, 3, 5]
    assert len(result.classes) == 3 * CLASSES and set(result.classes["class"]) == set("abcdefghij")
    units_path, classes_path = result.to_tsv(tmp_path / "out")
    assert units_path.name == "block2@rot2.units.tsv" and classes_path.name == "block2@rot2.classes.tsv"
    import pandas as pd

    written = pd.read_csv(units_path, sep="\t")
    assert list(written.columns) == list(result.units.columns)
    np.testing.assert_array_equal(written.unit, [0, 3, 5])


def test_model_mode_and_device_are_restored(data) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images).train()
    model.block1.eval()  # mixed modes come back as they were
    before = {name: module.training for name, module in model.named_modules()}
    dataset = TensorDataset(torch.from_numpy(to_float(images[:20])), torch.from_numpy(labels[:20]))
    ua.ablate(model, "block2", dataset, units=[0])
    assert {name: module.training for name, module in model.named_modules()} == before


def test_bad_inputs_are_named(data) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    dataset = TensorDataset(torch.from_numpy(to_float(images[:20])), torch.from_numpy(labels[:20]))
    with pytest.raises(KeyError, match=r"'block3'.*nearest: block2, block1"):
        ua.ablate(model, "block3", dataset)
    with pytest.raises(ValueError, match=r"unit 12 is not one of layer 'block2'"):
        ua.ablate(model, "block2", dataset, units=[12])
    with pytest.raises(ValueError, match=r"3 class names, but the model gives 10 logits"):
        ua.ablate(model, "block2", dataset, class_names=["a", "b", "c"])
    bad_labels = TensorDataset(torch.from_numpy(to_float(images[:20])), torch.full((20,), 10))
    with pytest.raises(ValueError, match=r"label 10 is not a class index 0..9"):
        ua.ablate(model, "block2", bad_labels)
    with pytest.raises(TypeError, match=r"torch Dataset or DataLoader"):
        ua.ablate(model, "block2", images)
    with pytest.raises(ValueError, match=r"called 2 times"):
        ua.ablate(SharedReLU(), "relu", dataset)


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, unit_ablation; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
    with warnings.catch_warnings():
        assert callable(ua.ablate)


def test_mean_ablation_takes_its_means_from_mean_data(data) -> None:
    images, labels = data
    model = calibrated(ResidualNet(), images)
    evaluated, other = images[:100], images[100:] // 4  # darker images: other means
    dataset = TensorDataset(torch.from_numpy(to_float(evaluated)), torch.from_numpy(labels[:100]))
    mean_data = TensorDataset(torch.from_numpy(to_float(other)), torch.from_numpy(labels[100:]))
    result = ua.ablate(model, "block1.relu1", dataset, value="mean", mean_data=mean_data, batch_size=50)
    options = AblationOptions(value="mean", batch_size=50)
    reference = ablate_naive(
        model,
        "block1.relu1",
        evaluated,
        labels[:100],
        list(range(12)),
        CLASSES,
        options=options,
        mean_images=other,
    )
    assert_same_counts(result, reference)
    own_means = ua.ablate(model, "block1.relu1", dataset, value="mean", batch_size=50)
    assert not np.array_equal(own_means.counts.broken, result.counts.broken)  # the means matter


@pytest.mark.parametrize("model_class", [ResidualNet, PerImageBranch])
def test_every_device_gives_the_cpu_counts(data, compute_device, model_class) -> None:
    """On CUDA (where there is one) the engine and the fallback give the CPU's naive counts."""
    images, labels = data
    model = calibrated(model_class(), images)
    layer = "block2" if model_class is ResidualNet else "relu"
    dataset = TensorDataset(torch.from_numpy(to_float(images)), torch.from_numpy(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ua.FallbackWarning)
        result = ua.ablate(model, layer, dataset, device=compute_device, batch_size=40)
    assert next(model.parameters()).device.type == "cpu"  # the model is back where it was
    units = 12 if model_class is ResidualNet else 8
    assert_same_counts(result, naive(model, layer, images, labels, units, batch_size=40))
