import json

import numpy as np
import pytest

from unit_ablation.damage import class_table, load_chunks, unit_table

CLASSES = ["a", "b", "c"]


def counts():
    return {
        "units": np.array([0, 1]),
        "broken": np.array([[5, 0, 1], [0, 0, 0]]),
        "fixed": np.array([[1, 0, 0], [0, 2, 0]]),
        "n": np.array([20, 10, 50]),
        "correct": np.array([18, 7, 40]),
    }


def test_class_table_drops_in_accuracy_points():
    table = class_table(counts(), CLASSES)
    assert list(table.columns) == ["unit", "class", "n", "correct_intact", "broken", "fixed", "drop"]
    assert table["drop"].tolist() == pytest.approx([20.0, 0.0, 2.0, 0.0, -20.0, 0.0])


def test_unit_table_summaries():
    table = unit_table(counts(), CLASSES, thresholds=(2, 5, 10))
    first = table.iloc[0]
    assert first.overall_drop == pytest.approx(100 * (4 + 0 + 1) / 80)
    assert first.balanced_drop == pytest.approx((20 + 0 + 2) / 3)
    assert first.max_class_drop == pytest.approx(20.0) and first.max_drop_class == "a"
    assert first.top5_mean_drop == pytest.approx((20 + 0 + 2) / 3)  # fewer than 5 classes: all of them
    assert (first.n_classes_drop_ge_2, first.n_classes_drop_ge_5, first.n_classes_drop_ge_10) == (2, 1, 1)
    second = table.iloc[1]
    assert second.overall_drop == pytest.approx(-100 * 2 / 80)  # a net gain is a negative drop
    assert second.max_class_drop == pytest.approx(0.0)


def _write_chunk(path, units, base):
    np.savez(
        path,
        units=np.array(units),
        broken=base["broken"][: len(units)],
        fixed=base["fixed"][: len(units)],
        n=base["n"],
        correct=base["correct"],
        metadata=np.array(json.dumps({"plan": "delta"})),
    )


def test_chunks_must_cover_each_unit_once(tmp_path):
    base = counts()
    _write_chunk(tmp_path / "a.npz", [1], base)
    _write_chunk(tmp_path / "b.npz", [0], base)
    merged = load_chunks([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert merged["units"].tolist() == [0, 1]
    assert unit_table(merged, CLASSES).plan.tolist() == ["delta", "delta"]
    _write_chunk(tmp_path / "c.npz", [1], base)
    with pytest.raises(ValueError, match="exactly once"):
        load_chunks([tmp_path / "a.npz", tmp_path / "c.npz"])
