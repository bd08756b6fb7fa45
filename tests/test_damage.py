import json

import numpy as np
import pytest
from scipy import stats

from unit_ablation.damage import (
    benjamini_hochberg,
    class_table,
    load_chunks,
    mcnemar_exact_p,
    unit_table,
)

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
    contract = ["unit", "class", "n", "correct_intact", "broken", "fixed", "drop"]
    assert list(table.columns) == [*contract, "mcnemar_p", "q_value", "hurt"]
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


def test_exact_mcnemar_against_hand_values_and_scipy():
    p = mcnemar_exact_p(np.array([10, 5, 0, 0, 1]), np.array([0, 5, 0, 3, 0]))
    assert p[0] == pytest.approx(2 * 0.5**10)  # all 10 discordant images one way
    assert p[1] == pytest.approx(1.0) and p[2] == 1.0  # balanced; no discordant image
    assert p[3] == pytest.approx(2 * 0.5**3) and p[4] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    broken, fixed = rng.integers(0, 40, 50), rng.integers(0, 40, 50)
    expected = [
        stats.binomtest(int(b), int(b + f), 0.5).pvalue if b + f else 1.0
        for b, f in zip(broken, fixed, strict=True)
    ]
    np.testing.assert_allclose(mcnemar_exact_p(broken, fixed), expected, rtol=1e-10)


def test_benjamini_hochberg_against_a_hand_worked_example():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2]))
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533, 0.2 -> monotone from the top: 0.04, 0.0533, 0.0533
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert benjamini_hochberg(np.array([])).size == 0


def test_significantly_hurt_classes_per_unit():
    data = {
        "units": np.array([0, 1]),
        "broken": np.array([[30, 0, 2], [1, 0, 0]]),
        "fixed": np.array([[0, 0, 1], [0, 30, 0]]),
        "n": np.array([100, 100, 100]),
        "correct": np.array([90, 60, 90]),
    }
    classes = class_table(data, CLASSES, fdr_alpha=0.05)
    assert classes.hurt.tolist() == [True, False, False, False, False, False]  # 30 fixed is a gain
    units = unit_table(data, CLASSES, fdr_alpha=0.05)
    assert units.n_classes_significantly_hurt.tolist() == [1, 0]
