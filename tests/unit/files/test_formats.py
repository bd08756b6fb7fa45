"""Outputs read back by later stages carry a format version; a file of another version is refused
with its path, the version found and the one this code reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from unit_ablation.analysis.damage import load_chunk
from unit_ablation.files.formats import FORMAT_KEY, FORMATS, read_model_metadata, stamped
from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.stages.record_config import record_config_to_file


def write_chunk(path, metadata: dict) -> None:
    """A valid chunk of 1 unit, 2 classes, 2 halves, with the given metadata."""
    zeros = np.zeros((1, 2), dtype=np.int64)
    halves = np.zeros((2, 1, 2), dtype=np.int64)
    np.savez(
        path, units=np.array([0]), broken=zeros, fixed=zeros, n=np.array([3, 4]), correct=np.array([2, 4]),
        broken_half=halves, fixed_half=halves, newly=halves, no_longer=halves,
        n_half=np.array([[1, 2], [2, 2]]), correct_half=np.array([[1, 2], [1, 2]]),
        predicted_half=np.array([[1, 2], [2, 2]]), metadata=np.array(json.dumps(metadata)),
    )  # fmt: skip


def test_a_chunk_of_this_format_loads(tmp_path):
    write_chunk(tmp_path / "c.npz", stamped("ablation chunk", {"plan": "delta"}))
    assert load_chunk(tmp_path / "c.npz")["plan"] == "delta"


@pytest.mark.parametrize(
    ("metadata", "found"),
    [({"plan": "delta"}, "no format version"), ({FORMAT_KEY: 99, "plan": "delta"}, "format version 99")],
)
def test_a_chunk_of_another_format_is_refused_by_name(tmp_path, metadata, found):
    write_chunk(tmp_path / "c.npz", metadata)
    message = rf"c\.npz: ablation chunk has {found}; this code reads version 1"
    with pytest.raises(CorruptFileError, match=message):
        load_chunk(tmp_path / "c.npz")


def test_model_metadata_is_checked_for_its_version(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(stamped("model metadata", {"test_accuracy": 90.0})))
    assert read_model_metadata(path)["test_accuracy"] == 90.0
    path.write_text(json.dumps({"test_accuracy": 90.0}))
    with pytest.raises(CorruptFileError, match="m.json: model metadata has no format version"):
        read_model_metadata(path)


def test_the_recorded_config_starts_with_its_format_version(tmp_path):
    record_config_to_file({"seeds": [0, 1]}, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert text.splitlines()[0] == f"{FORMAT_KEY}: {FORMATS['study config']}"
    assert yaml.safe_load(text) == {FORMAT_KEY: FORMATS["study config"], "seeds": [0, 1]}
