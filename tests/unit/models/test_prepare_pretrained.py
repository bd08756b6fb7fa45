"""Stage `prepare_model` on a `python:` model and a `python:` image set: the first job that builds
the model checks it against the unit counts the ablate jobs were planned with."""

from __future__ import annotations

import json

import pytest

from unit_ablation.data.image_cache import write_dataset_index
from unit_ablation.data.python_dataset import decode_python_dataset
from unit_ablation.stages.prepare_model import prepare_pretrained_to_file

FILES = {
    "net.py": """\
from torch import nn


def build(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes)
    )
""",
    "sets.py": """\
import numpy as np


def images():
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (3, 12, 12), dtype=np.uint8), i % 3) for i in range(9)], ["a", "b", "c"]
""",
}


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    cache = decode_python_dataset("sets.py:images", "data.images.test.python", tmp_path / "cache", 12, 10)
    write_dataset_index({"test": cache, "heldout": cache}, tmp_path / "images.json")
    return tmp_path / "images.json"


def prepare(dataset, units, num_classes=3):
    folder = dataset.parent
    return prepare_pretrained_to_file(
        "mine", "python:net.py:build", num_classes, None, None, dataset,
        folder / "mine.pt", folder / "mine.json", batch_size=4, units=units,
    )  # fmt: skip


def test_a_python_model_is_prepared_when_its_units_match(dataset):
    metadata = prepare(dataset, {"1": 6})
    assert metadata["architecture"]["source"] == "python:net.py:build"
    assert metadata["architecture"]["input_size"] == [3, 10, 10] and metadata["class_names"] == [
        "a",
        "b",
        "c",
    ]
    assert (
        json.loads((dataset.parent / "mine.json").read_text())["test_accuracy"] == metadata["test_accuracy"]
    )


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ({"1": 7}, r"pretrained.mine.units.1: 7 planned, but layer '1' of python:net.py:build has 6 units"),
        ({"11": 6}, r"pretrained.mine.layers: .*layer '11' is no module of python:net.py:build \(nearest: 1"),
    ],
)
def test_a_wrong_unit_count_or_layer_stops_the_job_with_the_truth(dataset, units, message):
    with pytest.raises(ValueError, match=message):
        prepare(dataset, units)
    assert not (dataset.parent / "mine.pt").exists() and not (dataset.parent / "mine.json").exists()


def test_a_class_count_that_does_not_match_the_python_data_set_is_named(dataset):
    with pytest.raises(
        ValueError, match="pretrained.mine.num_classes is 4, but the data set .* has 3 classes"
    ):
        prepare(dataset, {"1": 6}, num_classes=4)
