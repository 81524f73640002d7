"""Ranking, the split by demo, the snippet-pair sampler's invariants and the snippet frame gather."""

from __future__ import annotations

import numpy as np
import pytest

from trex.pairs import (
    SnippetPairs,
    rank_scores,
    sample_snippet_pairs,
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


def test_lengths_in_bounds_and_snippets_inside_their_demos():
    for stride in (1, 3):
        pairs = _sample(stride=stride)
        assert pairs.stride == stride
        assert pairs.length.min() >= 10 and pairs.length.max() <= 30
        assert len(np.unique(pairs.length)) > 10  # lengths vary over the range
        for demo, start in ((pairs.demo_a, pairs.start_a), (pairs.demo_b, pairs.start_b)):
            assert np.all(start >= 0)
            assert np.all(start + snippet_span(pairs.length, stride) <= LENGTHS[demo])


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
    for name in ("demo_a", "start_a", "demo_b", "start_b", "length", "label"):
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
