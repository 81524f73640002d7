"""Ranking, the split by demo, the snippet-pair sampler's invariants and the snippet frame gather."""

from __future__ import annotations

import numpy as np
import pytest

from trex.pairs import (
    SnippetPairs,
    rank_scores,
    sample_episode_pairs,
    sample_snippet_pairs,
    sample_transitions,
    snippet_frame_indices,
    snippet_span,
    split_by_demo,
)

# 12 demos: returns with ties (demos 0/1 and 5/6 share a return), lengths from 40 to 150 frames.
RETURNS = np.array([1.0, 1.0, 2.0, 3.5, 4.0, 6.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0])
LENGTHS = np.array([40, 60, 80, 150, 90, 100, 45, 120, 70, 130, 110, 140])
ALL = np.arange(len(RETURNS))


def _sample(**kw) -> SnippetPairs:
    args = {"num_pairs": 2000, "min_len": 10, "max_len": 30, "seed": 0}
    args.update(kw)
    candidates = args.pop("candidates", ALL)
    return sample_snippet_pairs(RETURNS, LENGTHS, candidates, **args)


def test_rank_scores_by_return_or_checkpoint():
    returns, steps = np.array([3.0, 1.0]), np.array([10, 20])
    np.testing.assert_array_equal(rank_scores(returns, steps, "return"), [3.0, 1.0])
    np.testing.assert_array_equal(rank_scores(returns, steps, "checkpoint"), [10.0, 20.0])


def test_rank_by_noise_orders_rungs_by_checkpoint_then_less_noise():
    steps = np.array([0, 0, 100, 100, 100, 0])
    epsilons = np.array([1.0, 0.0, 0.5, 0.0, 1.0, 0.5])
    # Rungs: (0, 1.0) < (0, 0.5) < (0, 0.0) < (100, 1.0) < (100, 0.5) < (100, 0.0).
    np.testing.assert_array_equal(rank_scores(np.zeros(6), steps, "noise", epsilons), [0, 2, 4, 5, 3, 1])
    # From one checkpoint (D-REX) the ranking is the noise alone, whatever the returns.
    one = rank_scores(np.array([9.0, 1.0, 5.0]), np.zeros(3), "noise", np.array([0.02, 1.0, 0.5]))
    np.testing.assert_array_equal(one, [2, 0, 1])


def test_noise_pairs_join_only_different_rungs_with_the_less_noisy_one_better():
    epsilons = np.array([1.0, 0.5, 0.02] * 4)
    scores = rank_scores(RETURNS, np.zeros(12), "noise", epsilons)
    pairs = sample_snippet_pairs(scores, LENGTHS, ALL, 2000, 10, 30, seed=0)
    assert np.all(epsilons[pairs.demo_a] != epsilons[pairs.demo_b])
    better = np.where(pairs.label == 1, pairs.demo_b, pairs.demo_a)
    worse = np.where(pairs.label == 1, pairs.demo_a, pairs.demo_b)
    assert np.all(epsilons[better] < epsilons[worse])


LEVELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])


@pytest.mark.parametrize("comparison", ["snippet", "episode"])
def test_level_matched_pairs_never_pair_two_levels(comparison):
    if comparison == "snippet":
        pairs = sample_snippet_pairs(RETURNS, LENGTHS, ALL, 3000, 10, 30, seed=0, levels=LEVELS)
    else:
        pairs = sample_episode_pairs(RETURNS, LENGTHS, ALL, 3000, stride=4, seed=0, levels=LEVELS)
    np.testing.assert_array_equal(LEVELS[pairs.demo_a], LEVELS[pairs.demo_b])
    assert set(LEVELS[pairs.demo_a]) == {0, 1, 2, 3}  # every level takes part
    assert np.all(RETURNS[pairs.demo_a] != RETURNS[pairs.demo_b])
    # Demos 0 and 3 differ in return but come from two levels: no level-matched pair exists.
    sample_snippet_pairs(RETURNS, LENGTHS, np.array([0, 3]), 10, 10, 30, seed=0)
    with pytest.raises(ValueError, match="of one level"):
        sample_snippet_pairs(RETURNS, LENGTHS, np.array([0, 3]), 10, 10, 30, seed=0, levels=LEVELS)


def test_episode_pairs_cover_whole_episodes_with_their_true_lengths():
    for stride in (1, 4):
        pairs = sample_episode_pairs(RETURNS, LENGTHS, ALL, 2000, stride=stride, seed=1)
        assert pairs.stride == stride
        for demo, start, length in (
            (pairs.demo_a, pairs.start_a, pairs.length_a),
            (pairs.demo_b, pairs.start_b, pairs.length_b),
        ):
            assert np.all((start >= 0) & (start < stride))
            last = start + (length - 1) * stride
            assert np.all(last < LENGTHS[demo]) and np.all(last + stride >= LENGTHS[demo])  # to the episode's end
        if stride == 1:
            np.testing.assert_array_equal(pairs.length_a, LENGTHS[pairs.demo_a])
        assert np.any(pairs.length_a != pairs.length_b)
        np.testing.assert_array_equal(pairs.label, (RETURNS[pairs.demo_b] > RETURNS[pairs.demo_a]).astype(int))


def test_split_by_demo_is_a_seeded_partition():
    train, val = split_by_demo(10, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(10))
    again = split_by_demo(10, 0.3, seed=1)
    np.testing.assert_array_equal(train, again[0])
    assert any(not np.array_equal(val, split_by_demo(10, 0.3, seed=s)[1]) for s in range(2, 6))
    # Never an empty side, however small the set.
    assert [len(part) for part in split_by_demo(2, 0.01, seed=0)] == [1, 1]


def test_pairs_never_join_equal_returns_and_labels_name_the_better_demo():
    pairs = _sample()
    assert len(pairs) == 2000
    assert np.all(RETURNS[pairs.demo_a] != RETURNS[pairs.demo_b])
    np.testing.assert_array_equal(pairs.label, (RETURNS[pairs.demo_b] > RETURNS[pairs.demo_a]).astype(int))
    assert 0.4 < pairs.label.mean() < 0.6  # a/b order is random, so labels are balanced


@pytest.mark.parametrize("comparison", ["snippet", "episode"])
def test_min_gap_keeps_only_pairs_of_scores_that_far_apart(comparison):
    def pairs(**kw):
        if comparison == "snippet":
            return _sample(**kw)
        return sample_episode_pairs(RETURNS, LENGTHS, kw.pop("candidates", ALL), 2000, stride=4, seed=0, **kw)

    gaps = lambda p: np.abs(RETURNS[p.demo_a] - RETURNS[p.demo_b])  # noqa: E731
    wide = pairs(min_gap=4.0)
    assert gaps(wide).min() >= 4.0 and np.any(gaps(wide) == 4.0)  # at the bound: 2 and 6, 4 and 8, ...
    np.testing.assert_array_equal(wide.label, (RETURNS[wide.demo_b] > RETURNS[wide.demo_a]).astype(int))
    assert gaps(pairs()).min() < 4.0  # without it close pairs are drawn
    for name in ("demo_a", "demo_b", "start_a", "length_a", "label"):  # 0 is the sampler without the option
        np.testing.assert_array_equal(getattr(pairs(min_gap=0.0), name), getattr(pairs(), name))
    with pytest.raises(ValueError, match="of different rank at least 12 apart .* or min_gap"):
        pairs(min_gap=12.0)  # the returns span 1 to 12
    with pytest.raises(ValueError, match="of one level of different rank at least 5 apart"):
        pairs(min_gap=5.0, levels=LEVELS)  # each level's returns span at most 3 (level 3: 9 to 12)


def test_lengths_in_bounds_and_snippets_inside_their_demos():
    for stride in (1, 3):
        pairs = _sample(stride=stride)
        assert pairs.stride == stride
        np.testing.assert_array_equal(pairs.length_a, pairs.length_b)  # snippets of a pair are equally long
        assert pairs.length_a.min() >= 10 and pairs.length_a.max() <= 30
        assert len(np.unique(pairs.length_a)) > 10  # lengths vary over the range
        for demo, start in ((pairs.demo_a, pairs.start_a), (pairs.demo_b, pairs.start_b)):
            assert np.all(start >= 0)
            assert np.all(start + snippet_span(pairs.length_a, stride) <= LENGTHS[demo])


def test_demos_too_short_for_min_len_are_never_drawn():
    pairs = _sample(min_len=50, max_len=60)
    used = set(pairs.demo_a) | set(pairs.demo_b)
    assert used == {i for i in ALL if LENGTHS[i] >= 50}


def test_start_prior_puts_the_better_snippet_no_earlier():
    pairs = _sample(start_prior=True)
    better_start = np.where(pairs.label == 1, pairs.start_b, pairs.start_a)
    worse_start = np.where(pairs.label == 1, pairs.start_a, pairs.start_b)
    assert np.all(better_start >= worse_start)
    # Off by default: then the better snippet often starts earlier.
    pairs = _sample()
    better_start = np.where(pairs.label == 1, pairs.start_b, pairs.start_a)
    worse_start = np.where(pairs.label == 1, pairs.start_a, pairs.start_b)
    assert np.mean(better_start < worse_start) > 0.3


def test_pairs_use_only_the_given_demos_so_validation_demos_stay_out():
    train, val = split_by_demo(len(RETURNS), 0.25, seed=0)
    pairs = _sample(candidates=train)
    used = set(pairs.demo_a) | set(pairs.demo_b)
    assert used <= set(train) and used.isdisjoint(val)


def test_same_seed_same_pairs_other_seed_other_pairs():
    first, again, other = _sample(seed=7), _sample(seed=7), _sample(seed=8)
    for name in ("demo_a", "start_a", "demo_b", "start_b", "length_a", "length_b", "label"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.start_a, other.start_a)


def test_bad_bounds_and_unrankable_demos_are_refused():
    with pytest.raises(ValueError, match="min_len <= max_len"):
        _sample(min_len=31, max_len=30)
    with pytest.raises(ValueError, match="no two demos of different rank"):
        _sample(candidates=np.array([0, 1]))  # equal returns
    with pytest.raises(ValueError, match="no two demos of different rank"):
        _sample(min_len=151, max_len=200)  # no demo is long enough


def test_snippet_pairs_index_like_an_array():
    pairs = _sample(num_pairs=10)
    sub = pairs[np.array([3, 1])]
    assert len(sub) == 2 and sub.stride == pairs.stride
    assert sub.demo_a.tolist() == [pairs.demo_a[3], pairs.demo_a[1]]
    assert sub.label.tolist() == [pairs.label[3], pairs.label[1]]


def test_snippet_frame_indices_by_hand():
    offsets = np.array([0, 10, 25, 40])  # demos of 10, 15 and 15 frames
    rows, snippet = snippet_frame_indices(offsets, np.array([1, 0]), np.array([2, 5]), np.array([3, 2]), stride=2)
    # demo 1 starts at row 10: frames 2, 4, 6 -> rows 12, 14, 16; demo 0: frames 5, 7 -> rows 5, 7
    assert rows.tolist() == [12, 14, 16, 5, 7]
    assert snippet.tolist() == [0, 0, 0, 1, 1]


def test_transitions_stay_inside_the_given_demos_and_cover_their_steps_uniformly():
    offsets = np.array([0, 10, 11, 41, 61])  # demos of 10, 1, 30 and 20 frames
    rows = sample_transitions(offsets, np.array([0, 1, 2]), 39_000, np.random.default_rng(0))
    demo = np.searchsorted(offsets, rows, side="right") - 1
    assert set(demo.tolist()) == {0, 2}  # demo 1 (one frame) holds no transition; demo 3 was not given
    assert (rows + 1 < offsets[demo + 1]).all()  # the next frame is in the same demo
    counts = np.bincount(rows, minlength=offsets[-1])
    steps = np.r_[0:9, 11:40]  # the 9 + 29 transitions, each drawn ~1,000 times
    assert counts[steps].min() > 850 and counts[steps].max() < 1150 and counts.sum() == counts[steps].sum()
    again = sample_transitions(offsets, np.array([0, 1, 2]), 39_000, np.random.default_rng(0))
    assert (again == rows).all()
    with pytest.raises(ValueError, match="no demo holds two frames"):
        sample_transitions(offsets, np.array([1]), 5, np.random.default_rng(0))
