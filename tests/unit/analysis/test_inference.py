"""The statistics behind the verdicts, against scipy and hand-worked values."""

import numpy as np
import pytest
from scipy import stats

from unit_ablation.analysis.inference import (
    binomial_drop_interval,
    fisher_combined_p,
    hodges_lehmann,
    holm,
    interval_verdict,
    min_detectable_effect,
    paired_difference,
    pool_correlations,
    pool_normal,
    spearman_brown,
    spearman_z_se,
    welch_difference,
)


def test_welch_difference_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 5), rng.normal(0, 2, 7)
    estimate = welch_difference(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert estimate.estimate == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert estimate.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    low, high = reference.confidence_interval(0.95)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert estimate.n == 12


def test_welch_difference_needs_two_replicates_per_group():
    estimate = welch_difference(np.array([1.0]), np.array([0.0, 1.0, 2.0]))
    assert estimate.estimate == pytest.approx(0.0)
    assert np.isnan(estimate.p_value) and np.isnan(estimate.ci_low)


def test_paired_difference_matches_a_one_sample_t_test():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    estimate = paired_difference(d)
    reference = stats.ttest_1samp(d, 0.0)
    assert estimate.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert estimate.interval(0.90) == pytest.approx(tuple(reference.confidence_interval(0.90)))


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(2*0.02, .03), max(1*0.04, .04); NaN stays NaN
    adjusted = holm(np.array([0.04, 0.01, np.nan, 0.02]))
    np.testing.assert_allclose(adjusted[[1, 3, 0]], [0.03, 0.04, 0.04])
    assert np.isnan(adjusted[2])
    assert holm(np.array([0.9, 0.8])).tolist() == [1.0, 1.0]


def test_min_detectable_effect_by_hand():
    se, df = 0.5, 8.0
    expected = (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se
    assert min_detectable_effect(se, df, 0.05, 0.8) == pytest.approx(expected)
    assert min_detectable_effect(1.0, float("inf"), 0.05, 0.8) == pytest.approx(1.959964 + 0.841621, rel=1e-5)
    assert np.isnan(min_detectable_effect(float("nan"), 3.0, 0.05))


def test_interval_verdict_inside_outside_undecided():
    assert interval_verdict(-0.1, 0.2, 0.3) == "inside"
    assert interval_verdict(0.31, 0.5, 0.3) == "outside"
    assert interval_verdict(-0.6, -0.3, 0.3) == "outside"
    assert interval_verdict(-0.1, 0.35, 0.3) == "undecided"
    assert interval_verdict(float("nan"), 0.1, 0.3) == "undecided"


def test_bonett_wright_standard_error_by_hand():
    assert spearman_z_se(0.5, 67) == pytest.approx(np.sqrt(1.125 / 64))
    assert np.isnan(spearman_z_se(0.5, 3))


def test_pooling_one_replicate_gives_its_own_fisher_interval():
    pooled = pool_correlations(np.array([0.4]), np.array([0.1]), level=0.90)
    z = np.arctanh(0.4)
    assert pooled.estimate == pytest.approx(0.4)
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx(
        (np.tanh(z - 1.644854 * 0.1), np.tanh(z + 1.644854 * 0.1)), rel=1e-5
    )


def test_random_effects_pooling_widens_for_heterogeneous_replicates():
    ses = np.array([0.1, 0.1, 0.1])
    same = pool_correlations(np.array([0.3, 0.3, 0.3]), ses)
    spread = pool_correlations(np.array([-0.2, 0.3, 0.8]), ses)
    assert same.se == pytest.approx(0.1 / np.sqrt(3))
    assert spread.se > same.se
    # DerSimonian-Laird by hand for normal estimates
    x, se = np.array([1.0, 2.0, 4.0]), np.array([0.5, 0.5, 1.0])
    w = 1 / se**2
    fixed = (w * x).sum() / w.sum()
    q = (w * (x - fixed) ** 2).sum()
    tau2 = max(0, (q - 2) / (w.sum() - (w**2).sum() / w.sum()))
    w_star = 1 / (se**2 + tau2)
    assert pool_normal(x, se).estimate == pytest.approx((w_star * x).sum() / w_star.sum())


def test_fisher_combined_p_matches_scipy():
    p = np.array([0.01, 0.2, 0.5])
    assert fisher_combined_p(p) == pytest.approx(stats.combine_pvalues(p, method="fisher").pvalue)


def test_hodges_lehmann_by_hand_and_on_quantised_drops():
    assert hodges_lehmann(np.array([1.0, 2.0, 3.0]))[0] == 2.0  # Walsh averages 1, 1.5, 2, 2, 2.5, 3
    # n = 3: P(W+ <= 0) = 1/8 > 0.025, so the 95% interval is the whole range
    assert hodges_lehmann(np.array([1.0, 2.0, 3.0]))[1:] == (1.0, 3.0)
    # quantised drops (steps of 0.1 point, most units 0): a percentile bootstrap of the median
    # collapses to [0, 0]; the Hodges-Lehmann interval does not
    drops = np.repeat([-0.1, 0.0, 0.1, 0.2], [8, 34, 12, 6])
    rng = np.random.default_rng(0)
    boot = np.median(drops[rng.integers(0, len(drops), (1000, len(drops)))], axis=1)
    assert tuple(np.percentile(boot, [2.5, 97.5])) == (0.0, 0.0)
    estimate, low, high = hodges_lehmann(drops)
    assert low < high and low <= estimate <= high


def test_hodges_lehmann_interval_covers_at_its_level():
    rng = np.random.default_rng(1)
    for n in (12, 40):  # the exact and the normal-approximation branches
        covered = np.mean(
            [(lambda r: r[1] <= 0.0 <= r[2])(hodges_lehmann(rng.normal(0, 1, n))) for _ in range(300)]
        )
        # 300 replicates: Monte Carlo SE of a 0.95 share is 0.0126; 3 SE below
        assert covered >= 0.95 - 3 * 0.0126


def test_binomial_drop_interval_is_clopper_pearson_mapped_to_points():
    low, high = binomial_drop_interval(np.array([7]), np.array([3]), np.array([100]), 0.95)
    ci = stats.binomtest(7, 10).proportion_ci(0.95, method="exact")
    assert low[0] == pytest.approx(100 * 10 * (2 * ci.low - 1) / 100)
    assert high[0] == pytest.approx(100 * 10 * (2 * ci.high - 1) / 100)
    low, high = binomial_drop_interval(np.array([0]), np.array([0]), np.array([50]), 0.95)
    assert (low[0], high[0]) == (0.0, 0.0)


def test_spearman_brown_by_hand():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.0) == 0.0
