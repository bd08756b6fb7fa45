import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unit_ablation.analysis.damage import (
    CHUNK_SHAPES,
    balanced_class_accuracy,
    benjamini_hochberg,
    class_table,
    load_chunks,
    mcnemar_exact_p,
    mcnemar_midp,
    significance,
    top_k,
    unit_table,
)
from unit_ablation.data.halves import evaluation_halves
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import write_tsv

CLASSES = ["a", "b", "c"]


def counts():
    """Two units, three classes (n 20, 10, 50, each split 10/5/25 between the halves).

    Every image an ablation breaks was predicted as its class and leaves it (no_longer); the
    images that move to a class (newly) include the ones fixed."""
    return {
        "units": np.array([0, 1]),
        "broken": np.array([[5, 0, 1], [0, 0, 0]]),
        "fixed": np.array([[1, 0, 0], [0, 2, 0]]),
        "n": np.array([20, 10, 50]),
        "correct": np.array([18, 7, 40]),
        "broken_half": np.array([[[3, 0, 1], [0, 0, 0]], [[2, 0, 0], [0, 0, 0]]]),
        "fixed_half": np.array([[[1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 1, 0]]]),
        "newly": np.array([[[1, 3, 0], [0, 1, 0]], [[0, 2, 0], [0, 1, 0]]]),
        "no_longer": np.array([[[3, 0, 1], [1, 0, 0]], [[2, 0, 0], [1, 0, 0]]]),
        "n_half": np.array([[10, 5, 25], [10, 5, 25]]),
        "correct_half": np.array([[9, 4, 20], [9, 3, 20]]),
        "predicted_half": np.array([[10, 5, 25], [10, 5, 25]]),
    }


def counts_of(intact, ablated, labels, num_classes):
    """The gathered counts of predictions, image by image (a reference for the table algebra)."""
    halves = evaluation_halves(labels)
    units = len(ablated)
    c = {
        key: np.zeros((2, units, num_classes), np.int64) for key in ("broken", "fixed", "newly", "no_longer")
    }
    c |= {key: np.zeros((2, num_classes), np.int64) for key in ("n", "correct", "predicted")}
    for i, (label, half, before) in enumerate(zip(labels, halves, intact, strict=True)):
        c["n"][half, label] += 1
        c["correct"][half, label] += before == label
        c["predicted"][half, before] += 1
        for u in range(units):
            after = ablated[u, i]
            c["broken"][half, u, label] += before == label != after
            c["fixed"][half, u, label] += before != label == after
            if after != before:
                c["newly"][half, u, after] += 1
                c["no_longer"][half, u, before] += 1
    return {
        "units": np.arange(units),
        **{key: c[key].sum(axis=0) for key in ("broken", "fixed", "n", "correct")},
        **{f"{key}_half": c[key] for key in ("broken", "fixed", "n", "correct", "predicted")},
        "newly": c["newly"],
        "no_longer": c["no_longer"],
    }


def test_class_table_drops_in_accuracy_points():
    table = class_table(counts(), CLASSES)
    contract = ["unit", "class", "n", "correct_intact", "broken", "fixed", "drop"]
    halves = [f"{name}_h{h}" for h in (0, 1) for name in ("broken", "fixed", "n", "drop")]
    balanced = ["balanced_accuracy_intact", "balanced_accuracy_ablated", "balanced_accuracy_drop"]
    assert list(table.columns) == [
        *contract,
        "mcnemar_p",
        "mcnemar_midp",
        "q_value",
        "hurt",
        *halves,
        *balanced,
    ]
    assert table["drop"].tolist() == pytest.approx([20.0, 0.0, 2.0, 0.0, -20.0, 0.0])
    assert table["drop_h0"].tolist() == pytest.approx([20.0, 0.0, 4.0, 0.0, -20.0, 0.0])
    assert table["drop_h1"].tolist() == pytest.approx([20.0, 0.0, 0.0, 0.0, -20.0, 0.0])
    assert table["n_h0"].tolist() == [10, 5, 25] * 2 and table["broken_h1"].tolist() == [2, 0, 0, 0, 0, 0]
    for name in ("broken", "fixed", "n"):
        assert (table[f"{name}_h0"] + table[f"{name}_h1"]).tolist() == table[name].tolist()
    # unit 0, class a: N = 80, n = 20, TP = 18, FP = 20 - 18 = 2, TN = 58; ablated TP' = 18 - 5 + 1 = 14,
    # FP' = 2 + (newly 1 - fixed 1) - (no_longer 5 - broken 5) = 2
    first = table.iloc[0]
    assert first.balanced_accuracy_intact == pytest.approx(50 * (18 / 20 + 58 / 60))
    assert first.balanced_accuracy_ablated == pytest.approx(50 * (14 / 20 + 58 / 60))
    assert first.balanced_accuracy_drop == pytest.approx(10.0)


def test_unit_table_summaries():
    table = unit_table(counts(), CLASSES, thresholds=(2, 5, 10))
    first = table.iloc[0]
    assert first.overall_drop == pytest.approx(100 * (4 + 0 + 1) / 80)
    assert first.overall_drop_h0 == pytest.approx(100 * (2 + 1) / 40)
    assert first.overall_drop_h1 == pytest.approx(100 * 2 / 40)
    assert first.balanced_drop == pytest.approx((20 + 0 + 2) / 3)
    assert first.max_class_drop == pytest.approx(20.0) and first.max_drop_class == "a"
    assert first.top_k == 1  # ceil(5% of 3 classes)
    assert first.topk_mean_drop == pytest.approx(20.0)
    assert (first.n_classes_drop_ge_2, first.n_classes_drop_ge_5, first.n_classes_drop_ge_10) == (2, 1, 1)
    second = table.iloc[1]
    assert second.overall_drop == pytest.approx(-100 * 2 / 80)  # a net gain is a negative drop
    assert second.overall_drop_h0 == pytest.approx(-100 * 1 / 40)
    assert second.max_class_drop == pytest.approx(0.0)
    assert second.max_drop_class is None  # lowers no class: no most damaged class


def test_a_unit_that_lowers_no_class_has_an_empty_most_damaged_class_in_the_tsv(tmp_path):
    write_tsv(unit_table(counts(), CLASSES), tmp_path / "units.tsv")
    read = pd.read_csv(tmp_path / "units.tsv", sep="\t")
    assert read.max_drop_class[0] == "a" and pd.isna(read.max_drop_class[1])
    header, _, second = (tmp_path / "units.tsv").read_text().splitlines()
    assert second.split("\t")[header.split("\t").index("max_drop_class")] == ""


@pytest.mark.parametrize(
    ("classes", "k"), [(1, 1), (3, 1), (10, 1), (20, 1), (21, 2), (100, 5), (365, 19), (1000, 50)]
)
def test_top_k_is_five_percent_of_the_classes_rounded_up(classes, k):
    assert top_k(classes) == k


def test_top_k_mean_over_the_classes_present():
    rng = np.random.default_rng(3)
    data = counts_of(rng.integers(0, 40, 400), rng.integers(0, 40, (3, 400)), rng.integers(0, 40, 400), 40)
    table = unit_table(data, [str(k) for k in range(40)])
    drops = 100 * (data["broken"] - data["fixed"]) / data["n"]
    assert (table.top_k == 2).all()
    np.testing.assert_allclose(table.topk_mean_drop, np.sort(drops, axis=1)[:, -2:].mean(axis=1))


def _write_chunk(path, units, base):
    np.savez(
        path,
        units=np.array(units),
        broken=base["broken"][: len(units)],
        fixed=base["fixed"][: len(units)],
        n=base["n"],
        correct=base["correct"],
        **{key: base[key][:, : len(units)] for key in ("broken_half", "fixed_half", "newly", "no_longer")},
        **{key: base[key] for key in ("n_half", "correct_half", "predicted_half")},
        metadata=np.array(json.dumps(stamped("ablation chunk", {"plan": "delta"}))),
    )


def test_chunks_must_cover_each_unit_once(tmp_path):
    base = counts()
    _write_chunk(tmp_path / "a.npz", [1], base)
    _write_chunk(tmp_path / "b.npz", [0], base)
    merged = load_chunks([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert merged["units"].tolist() == [0, 1]
    assert unit_table(merged, CLASSES).plan.tolist() == ["delta", "delta"]
    assert set(CHUNK_SHAPES) - {"metadata"} <= set(merged)
    for key in ("broken", "fixed"):  # both chunks hold unit 0's counts (the first row of base)
        np.testing.assert_array_equal(merged[key], base[key][[0, 0]])
    for key in ("broken_half", "fixed_half", "newly", "no_longer"):
        np.testing.assert_array_equal(merged[key], base[key][:, [0, 0]])
    _write_chunk(tmp_path / "c.npz", [1], base)
    with pytest.raises(ValueError, match="exactly once"):
        load_chunks([tmp_path / "a.npz", tmp_path / "c.npz"])


def test_chunks_are_merged_in_unit_order(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 120)
    data = counts_of(rng.integers(0, 5, 120), rng.integers(0, 5, (4, 120)), labels, 5)
    for name, units in (("x.npz", [2, 3]), ("y.npz", [0, 1])):
        np.savez(
            tmp_path / name,
            units=np.array(units),
            **{key: data[key][units] for key in ("broken", "fixed")},
            **{key: data[key][:, units] for key in ("broken_half", "fixed_half", "newly", "no_longer")},
            **{key: data[key] for key in ("n", "correct", "n_half", "correct_half", "predicted_half")},
            metadata=np.array(json.dumps(stamped("ablation chunk", {"plan": "delta"}))),
        )
    merged = load_chunks([tmp_path / "x.npz", tmp_path / "y.npz"])
    for key in set(CHUNK_SHAPES) - {"metadata"}:
        np.testing.assert_array_equal(merged[key], data[key], err_msg=key)


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


def test_mid_p_against_hand_values_and_scipy():
    p = mcnemar_midp(np.array([5, 0, 5, 0, 3]), np.array([0, 5, 5, 0, 1]))
    assert p[0] == pytest.approx(2 * 0.5 * 0.5**5) and p[0] == pytest.approx(0.03125)  # 5-0
    assert p[1] == p[0]  # symmetric
    assert p[2] == pytest.approx(1.0) and p[3] == 1.0  # balanced; no discordant image
    # 3-1: m = 1, P(X < 1) = 1/16, P(X = 1) = 4/16 -> 2 (1/16 + 2/16) = 0.375
    assert p[4] == pytest.approx(0.375)
    assert mcnemar_exact_p(np.array([5]), np.array([0]))[0] == pytest.approx(0.0625)
    rng = np.random.default_rng(1)
    broken, fixed = rng.integers(0, 40, 60), rng.integers(0, 40, 60)
    smaller, total = np.minimum(broken, fixed), broken + fixed
    expected = np.minimum(
        1, 2 * (stats.binom.cdf(smaller - 1, total, 0.5) + 0.5 * stats.binom.pmf(smaller, total, 0.5))
    )
    np.testing.assert_allclose(mcnemar_midp(broken, fixed), np.where(total > 0, expected, 1.0), rtol=1e-12)
    exact = mcnemar_exact_p(broken, fixed)
    assert np.all(mcnemar_midp(broken, fixed) <= exact) and np.all(
        mcnemar_midp(broken, fixed) >= exact / 2 - 1e-12
    )


def one_pair(broken, fixed, classes=2, n=50):
    """One unit; class a of n images, its broken images moved to class b and its fixed ones
    moved from b (with `classes` = 1, from and to nowhere in particular)."""
    other = [0] * (classes - 1)
    moved = [[[fixed, *([broken] if classes > 1 else [])]], [[0] * classes]]
    left = [[[broken, *([fixed] if classes > 1 else [])]], [[0] * classes]]
    if classes == 1:
        moved = left = [[[broken + fixed]], [[0]]]
    return {
        "units": np.array([0]),
        "broken": np.array([[broken, *other]]),
        "fixed": np.array([[fixed, *other]]),
        "n": np.array([n] * classes),
        "correct": np.array([40] * classes),
        "broken_half": np.array([[[broken, *other]], [[0] * classes]]),
        "fixed_half": np.array([[[fixed, *other]], [[0] * classes]]),
        "newly": np.array(moved),
        "no_longer": np.array(left),
        "n_half": np.array([[n // 2] * classes, [n - n // 2] * classes]),
        "correct_half": np.array([[20] * classes, [20] * classes]),
        "predicted_half": np.array([[n // 2] * classes, [n - n // 2] * classes]),
    }


def test_a_five_to_zero_split_of_fifty_images_is_flagged_with_mid_p_and_not_with_exact_p():
    data = one_pair(5, 0, classes=2)
    with_midp = class_table(data, ["a", "b"], fdr_alpha=0.05, fdr_method="mid-p").iloc[0]
    with_exact = class_table(data, ["a", "b"], fdr_alpha=0.05, fdr_method="exact").iloc[0]
    assert with_midp.mcnemar_p == pytest.approx(0.0625) and with_midp.mcnemar_midp == pytest.approx(0.03125)
    assert with_exact.mcnemar_p == with_midp.mcnemar_p and with_exact.mcnemar_midp == with_midp.mcnemar_midp
    # BH over the unit's two pairs (the untouched class has p = 1): q = 2 p for the 5-0 pair
    assert with_midp.q_value == pytest.approx(0.0625) and with_exact.q_value == pytest.approx(0.125)
    single = one_pair(5, 0, classes=1)  # a single 5-0 pair: q = p
    assert class_table(single, ["a"], fdr_method="mid-p").hurt.tolist() == [True]
    assert class_table(single, ["a"], fdr_method="exact").hurt.tolist() == [False]
    assert unit_table(single, ["a"], fdr_method="mid-p").n_classes_significantly_hurt.tolist() == [1]
    assert unit_table(single, ["a"], fdr_method="exact").n_classes_significantly_hurt.tolist() == [0]
    assert class_table(one_pair(0, 5, classes=1), ["a"]).hurt.tolist() == [False]  # a gain is not hurt
    with pytest.raises(ValueError, match="fdr_method 'holm'"):
        class_table(single, ["a"], fdr_method="holm")


def test_mid_p_with_benjamini_hochberg_under_the_null_flags_at_most_about_alpha():
    """Complete null: every pair's discordant images split binomial(n, 1/2). Then the FDR is the
    chance of flagging any pair, and the share of pairs with mid-p <= alpha is the per-test
    error rate. Both must stay below alpha plus 3 Monte Carlo standard errors."""
    alpha, repetitions, pairs = 0.05, 400, 100
    rng = np.random.default_rng(7)
    any_flagged = {"mid-p": 0, "exact": 0}
    pair_rejections = 0
    for _ in range(repetitions):
        discordant = rng.integers(0, 61, pairs)
        broken = rng.binomial(discordant, 0.5)
        fixed = discordant - broken
        for method in any_flagged:
            q_values = significance(broken, fixed, alpha, method)[2]
            any_flagged[method] += bool((q_values <= alpha).any())
        pair_rejections += int((mcnemar_midp(broken, fixed) <= alpha).sum())
    fdr = {method: count / repetitions for method, count in any_flagged.items()}
    assert fdr["mid-p"] <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / repetitions)  # 0.05 + 0.033
    per_test = pair_rejections / (repetitions * pairs)
    assert per_test <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / (repetitions * pairs))  # 0.05 + 0.003
    assert fdr["exact"] <= fdr["mid-p"]  # the exact test is the more conservative


def test_balanced_class_accuracy_against_a_hand_worked_example():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 0, 1, 2])
    # class 0: TP 1 of 2, TN 3 of 4 (image 3 is a false positive) -> 50 (1/2 + 3/4) = 62.5
    assert balanced_class_accuracy(predictions, labels, 0) == pytest.approx(62.5)
    assert balanced_class_accuracy(predictions, labels, 2) == pytest.approx(100.0)
    rows = balanced_class_accuracy(np.stack([predictions, np.zeros(6, int)]), labels, 0)
    np.testing.assert_allclose(rows, [62.5, 50.0])  # everything predicted as 0: TPR 1, TNR 0
    assert np.isnan(balanced_class_accuracy(predictions, labels, 3))  # no image of the class
    assert isinstance(balanced_class_accuracy(predictions, labels, 1), float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_accuracy_columns_equal_a_direct_computation_from_predictions(seed):
    """TP' = correct - broken + fixed and FP' = FP + (newly - fixed) - (no_longer - broken)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, 300)
    intact = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 6, 300))
    ablated = np.where(rng.random((4, 300)) < 0.7, intact, rng.integers(0, 6, (4, 300)))
    table = class_table(counts_of(intact, ablated, labels, 6), [str(k) for k in range(6)])
    for k in range(6):
        rows = table[table["class"] == str(k)]
        np.testing.assert_allclose(rows.balanced_accuracy_intact, balanced_class_accuracy(intact, labels, k))
        np.testing.assert_allclose(
            rows.balanced_accuracy_ablated, balanced_class_accuracy(ablated, labels, k)
        )
    # the per-half drops are the drops on each half's images alone
    halves = evaluation_halves(labels)
    for h in (0, 1):
        half = counts_of(intact[halves == h], ablated[:, halves == h], labels[halves == h], 6)
        drops = 100 * (half["broken"] - half["fixed"]) / half["n"]
        np.testing.assert_allclose(table[f"drop_h{h}"], drops.ravel())


def test_benjamini_hochberg_against_a_hand_worked_example():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2]))
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533, 0.2 -> monotone from the top: 0.04, 0.0533, 0.0533
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert benjamini_hochberg(np.array([])).size == 0


def test_significantly_hurt_classes_per_unit():
    broken, fixed = np.array([[30, 0, 2], [1, 0, 0]]), np.array([[0, 0, 1], [0, 30, 0]])
    data = {
        "units": np.array([0, 1]),
        "broken": broken,
        "fixed": fixed,
        "n": np.array([100, 100, 100]),
        "correct": np.array([90, 60, 90]),
        "broken_half": np.stack([broken, np.zeros_like(broken)]),
        "fixed_half": np.stack([fixed, np.zeros_like(fixed)]),
        "newly": np.stack([fixed, np.zeros_like(fixed)]),
        "no_longer": np.stack([broken, np.zeros_like(broken)]),
        "n_half": np.array([[50, 50, 50], [50, 50, 50]]),
        "correct_half": np.array([[45, 30, 45], [45, 30, 45]]),
        "predicted_half": np.array([[50, 50, 50], [50, 50, 50]]),
    }
    classes = class_table(data, CLASSES, fdr_alpha=0.05)
    assert classes.hurt.tolist() == [True, False, False, False, False, False]  # 30 fixed is a gain
    units = unit_table(data, CLASSES, fdr_alpha=0.05)
    assert units.n_classes_significantly_hurt.tolist() == [1, 0]
