"""procgen_common.stats against hand examples: IQM, bootstrap CIs (plain, stratified, of a difference), rank
correlations and pair accuracy, json_safe."""

from __future__ import annotations

import numpy as np
import pytest

from procgen_common.stats import (
    average_ranks,
    bootstrap_ci,
    difference_ci,
    iqm,
    json_safe,
    mean_std,
    pair_accuracy,
    pearson,
    spearman,
    stratified_bootstrap,
    stratified_bootstrap_ci,
    verdict,
)


def test_iqm_hand_examples():
    assert iqm([1, 2, 3, 4]) == 2.5  # drops 1 and 4
    assert iqm([4, 1, 100, 2, 3]) == 3.0  # n=5 drops floor(5/4)=1 each end: mean of 2, 3, 4
    assert iqm(np.arange(1, 9)) == 4.5  # drops 1, 2 and 7, 8
    assert iqm([1, 2, 9]) == 4.0  # fewer than 4 values: nothing dropped
    assert iqm([7]) == 7.0
    np.testing.assert_allclose(iqm([[1, 2, 3, 4], [40, 10, 30, 20]], axis=-1), [2.5, 25.0])
    np.testing.assert_allclose(iqm([[1, 40], [2, 10], [3, 30], [4, 20]], axis=0), [2.5, 25.0])
    with pytest.raises(ValueError, match="iqm of no values"):
        iqm([])


def test_iqm_is_scipys_trimmed_mean():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in range(1, 13):
        values = rng.normal(size=n)
        assert iqm(values) == pytest.approx(stats.trim_mean(values, 0.25))


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(5.0, 2.0, size=10)
    large = rng.normal(5.0, 2.0, size=1000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # width shrinks like 1/sqrt(n): 10x for 100x the data
    # A 95% interval of the mean is about +-1.96 standard errors.
    se = large.std() / np.sqrt(large.size)
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * se, rel=0.15)
    # Higher confidence gives a wider interval; a constant sample gives a point.
    lo99, hi99 = bootstrap_ci(small, confidence=0.99)
    assert lo99 <= lo_s and hi99 >= hi_s and hi99 - lo99 > hi_s - lo_s
    assert bootstrap_ci(np.full(7, 3.0)) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci(np.array([]))))


def test_difference_ci_and_verdict():
    # Two constant samples: every resample gives the same difference of means.
    assert difference_ci(np.full(5, 3.0), np.full(8, 1.0)) == (2.0, 2.0)
    assert verdict(np.full(5, 3.0), np.full(8, 1.0)) == ("beats", (2.0, 2.0))
    assert verdict(np.full(5, 1.0), np.full(8, 3.0))[0] == "falls short of"
    noisy = np.random.default_rng(0).normal(size=50)
    word, (low, high) = verdict(noisy, noisy + 0.01)
    assert word == "is within noise of" and low < -0.01 < high
    assert all(np.isnan(difference_ci(np.array([]), np.ones(3))))


def test_stratified_bootstrap_resamples_within_each_stratum():
    # Two strata of constant values: every resample keeps two 0s and two 10s, so the mean never moves.
    assert stratified_bootstrap_ci([[0, 0], [10, 10]]) == (5.0, 5.0)
    # The same values as one stratum: resamples can draw 0 four times, so the interval opens up.
    low, high = stratified_bootstrap_ci([[0, 0, 10, 10]])
    assert low < 5 < high and low >= 0 and high <= 10
    # Unequal strata: a stratum of one value always contributes it once (mean of 0, 1, 1, 1).
    np.testing.assert_array_equal(stratified_bootstrap([[0.0], [1, 1, 1]], reps=50), np.full(50, 0.75))
    # Each replicate draws as many values as each stratum has.
    sizes = stratified_bootstrap([[1, 2], [3, 4, 5]], lambda x, axis: np.full(x.shape[0], x.shape[axis]), reps=5)
    np.testing.assert_array_equal(sizes, [5] * 5)
    # Every value a replicate draws comes from its own stratum: the first two columns from [1, 2], the rest from
    # [30, 40, 50].
    drawn = stratified_bootstrap([[1, 2], [30, 40, 50]], lambda x, axis: x, reps=200)
    assert set(np.unique(drawn[:, :2])) == {1, 2} and set(np.unique(drawn[:, 2:])) == {30, 40, 50}
    with pytest.raises(ValueError, match="a stratum has no values"):
        stratified_bootstrap([[1.0], []])


def test_bootstrap_distribution_of_a_two_value_stratum():
    # Resampling [0, 1] gives the means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4.
    replicates = stratified_bootstrap([[0.0, 1.0]], reps=20_000, seed=3)
    assert set(np.unique(replicates)) == {0.0, 0.5, 1.0}
    for value, share in ((0.0, 0.25), (0.5, 0.5), (1.0, 0.25)):
        assert np.mean(replicates == value) == pytest.approx(share, abs=0.015)
    assert stratified_bootstrap_ci([[0.0, 1.0]], reps=20_000) == (0.0, 1.0)
    # IQM replicates of [1, 2, 3, 4] lie between the smallest and largest value, and the CI is seeded.
    replicates = stratified_bootstrap([[1, 2, 3, 4]], iqm, reps=500)
    assert replicates.min() >= 1 and replicates.max() <= 4
    assert stratified_bootstrap_ci([[1, 2, 3, 4]], iqm, seed=7) == stratified_bootstrap_ci([[1, 2, 3, 4]], iqm, seed=7)


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([10.0, 30.0, 20.0, 20.0])), [0.0, 3.0, 1.5, 1.5])


def test_correlations_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert spearman(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, x**3) < 1.0
    # Ties: ranks [0, 1.5, 1.5, 3] against [0, 1, 2, 3] -> 4.5 / sqrt(4.5 * 5) (scipy.stats.spearmanr agrees)
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), x) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert pearson(x, np.ones(4)) is None and pearson(x[:1], x[:1]) is None


def test_spearman_of_a_known_permutation():
    # Two neighbouring swaps of 5 ranks: sum of squared rank differences 4, rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8.
    assert spearman(np.arange(5.0), np.array([10.0, 0.0, 20.0, 40.0, 30.0])) == pytest.approx(0.8)
    assert spearman(np.arange(5.0), -(np.arange(5.0) ** 3)) == pytest.approx(-1.0)  # the reversed order


def test_pair_accuracy_skips_true_ties_and_halves_predicted_ties():
    true = np.array([1.0, 2.0, 3.0, 3.0])
    predicted = np.array([0.0, 5.0, 5.0, 9.0])
    # Pairs with different true return: (0,1) right, (0,2) right, (0,3) right, (1,2) tie, (1,3) right.
    assert pair_accuracy(predicted, true) == pytest.approx(4.5 / 5)
    assert pair_accuracy(predicted, np.ones(4)) is None


def test_mean_std_and_json_safe_leave_out_what_has_no_value():
    assert mean_std([1.0, None, 3.0]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}
    assert mean_std([None]) == {"mean": None, "std": None, "n": 0}
    value = {"a": float("nan"), "b": [1.0, float("inf"), (np.float64("-inf"), 2)], "c": "x"}
    assert json_safe(value) == {"a": None, "b": [1.0, None, [None, 2]], "c": "x"}
