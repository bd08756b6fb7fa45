import numpy as np
import pandas as pd
import pytest

from unit_ablation.analysis.agreement import agreement, layer_agreement, top_k_hits


def test_top_k_hits_by_hand():
    damage = np.array([[5.0, 1, 0, 0, 0, 0], [0, 1, 3, 2, 0, 0], [1, 2, 3, 4, 5, 6]])
    selective = np.array([0, 1, 0])
    assert top_k_hits(selective, damage, 1).tolist() == [True, False, False]
    assert top_k_hits(selective, damage, 5).tolist() == [True, True, False]  # unit 2: class 0 is 6th


def test_perfect_agreement_beats_permutation_chance():
    rng = np.random.default_rng(0)
    selective = np.arange(40) % 10
    damage = rng.random((40, 10))
    damage[np.arange(40), selective] += 10  # each unit hurts its own most selective class most
    result = agreement(selective, damage, permutations=500, seed=1)
    assert result["top1_share"] == 1.0
    assert result["top1_chance"] == pytest.approx(0.1, abs=0.03)  # 10 balanced classes
    assert result["top1_p"] == pytest.approx(1 / 501)
    assert agreement(selective, damage, permutations=500, seed=1) == result


def test_layer_agreement_leaves_out_units_that_hurt_no_class():
    classes = ["a", "b", "c"]
    class_attributes = pd.DataFrame(
        {
            "unit": np.repeat([0, 1, 2], 3),
            "class": classes * 3,
            "class_index": [0, 1, 2] * 3,
            "class_mean": [3, 1, 0, 0, 2, 1, 1, 1, 5],
        }  # fmt: skip
    )
    class_damage = pd.DataFrame(
        {"unit": np.repeat([0, 1, 2], 3), "class": classes * 3, "drop": [4, 0, 0, -1, -2, 0, 0, 1, 2]}
    )
    row = layer_agreement("conv5@rot1", class_attributes, class_damage, permutations=10, seed=0)
    assert row["units_used"] == 2 and row["basis"] == "rotation1"
    assert row["top1_share"] == 1.0  # unit 0: a/a; unit 2: c/c; unit 1 hurts nothing
