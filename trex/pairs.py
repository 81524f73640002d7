"""Ranking demos and drawing comparisons from them (T-REX's training data), as pure seeded functions.

A training pair is two clips from two demos of different rank; its label says which clip came from the
better demo. A clip is either a snippet (T-REX's equal-length pieces of the two demos, ``sample_snippet_pairs``)
or a whole episode taken every ``stride``-th frame (``sample_episode_pairs``, as T-REX did for Enduro), whose
length differs as the episodes' do. Pairs hold indices into the demos, never frames: the trainer gathers the
frames of a minibatch from the uint8 demo arrays (``snippet_frame_indices``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

RankBy = Literal["return", "checkpoint", "noise"]


def rank_scores(
    returns: np.ndarray, checkpoint_steps: np.ndarray, rank_by: RankBy, epsilons: np.ndarray | None = None
) -> np.ndarray:
    """The score demos are ranked by (higher = better), float64 ``(num_demos,)``: the true return; the checkpoint's
    training step (the original T-REX ranking, which assumes later checkpoints play better); or the rung of a noise
    ladder, ``noise``: by checkpoint step, then by epsilon, less noise ranking higher (D-REX, Brown et al. 2019b),
    scored as the rung's place 0, 1, ... in that order."""
    if rank_by == "return":
        return np.asarray(returns, dtype=np.float64)
    if rank_by == "checkpoint":
        return np.asarray(checkpoint_steps, dtype=np.float64)
    if rank_by == "noise":
        steps = np.asarray(checkpoint_steps, dtype=np.float64)
        noise = np.zeros(len(steps)) if epsilons is None else np.asarray(epsilons, dtype=np.float64)
        _, place = np.unique(np.stack([steps, -noise], 1), axis=0, return_inverse=True)  # rows sorted: step, -eps
        return place.reshape(-1).astype(np.float64)
    raise ValueError(f"rank_by: {rank_by!r} is not 'return', 'checkpoint' or 'noise'")


def split_by_demo(num_demos: int, val_fraction: float, seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle demo indices and hold out ``round(val_fraction * num_demos)`` (at least 1) for validation.

    Splitting demos rather than pairs keeps every frame of a validation demo out of training, so the
    validation accuracy is measured on unseen episodes. Returns sorted ``(train, val)`` int64 indices.
    """
    order = np.random.default_rng(seed).permutation(num_demos)
    num_val = min(max(1, round(val_fraction * num_demos)), num_demos - 1)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


_CLIP_FIELDS = ("demo_a", "start_a", "length_a", "demo_b", "start_b", "length_b")


@dataclass(frozen=True)
class SnippetPairs:
    """``n`` pairs of clips as indices into a list of demos; clip x covers demo ``demo_x`` frames
    ``start_x, start_x + stride, ..., start_x + (length_x - 1) * stride``. All arrays int64 ``(n,)``."""

    demo_a: np.ndarray
    """Demo of clip a."""
    start_a: np.ndarray
    """First frame of clip a."""
    length_a: np.ndarray
    """Frames of clip a."""
    demo_b: np.ndarray
    """Demo of clip b."""
    start_b: np.ndarray
    """First frame of clip b."""
    length_b: np.ndarray
    """Frames of clip b (equal to length_a for snippets; whole episodes differ)."""
    label: np.ndarray
    """Which snippet came from the better demo: 0 = a, 1 = b."""
    stride: int = 1
    """Step between the frames of a snippet."""

    def __post_init__(self):
        n = len(self.label)
        for name in _CLIP_FIELDS:
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: shape {getattr(self, name).shape} does not match the {n} labels")

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, index) -> SnippetPairs:
        """A subset (e.g. a minibatch) of the pairs."""
        return dataclasses.replace(self, **{name: getattr(self, name)[index] for name in (*_CLIP_FIELDS, "label")})


def snippet_span(length: np.ndarray | int, stride: int) -> np.ndarray | int:
    """Frames of a demo that a snippet of ``length`` frames taken every ``stride`` frames covers."""
    return (length - 1) * stride + 1


def sample_snippet_pairs(
    scores: np.ndarray,
    lengths: np.ndarray,
    candidates: np.ndarray,
    num_pairs: int,
    min_len: int,
    max_len: int,
    seed: int | Sequence[int],
    stride: int = 1,
    start_prior: bool = False,
    levels: np.ndarray | None = None,
    min_gap: float = 0.0,
) -> SnippetPairs:
    """Draw ``num_pairs`` snippet pairs from the demos ``candidates`` (indices into ``scores``/``lengths``).

    Each pair: two demos of different score, drawn uniformly; a snippet length uniform in
    ``[min_len, min(max_len, longest that fits both)]``; start frames uniform within each demo. With
    ``start_prior`` the better demo's snippet starts no earlier than the worse one's, as in the original
    T-REX (Brown et al., 2019): it helps when progress through an episode means progress in the task,
    but it lets a model score well by learning time rather than task reward (on Procgen, episode length alone
    ranks returns well), so it is off by default. Demos too short for ``min_len`` frames are never drawn. With
    ``levels`` (each demo's level seed) both demos of a pair come from the same level, and with ``min_gap`` their
    scores differ by at least that much (``draw_demo_pairs``). Which
    snippet is a and which is b is random, so labels are balanced. Deterministic given ``seed``.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"min_len, max_len: need 1 <= min_len <= max_len, got {min_len} and {max_len}")
    if stride < 1:
        raise ValueError(f"stride: must be >= 1, got {stride}")
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    usable = candidates[lengths[candidates] >= snippet_span(min_len, stride)]
    rng = np.random.default_rng(seed)
    first, second = draw_demo_pairs(
        scores, usable, num_pairs, rng, levels, f"at least {snippet_span(min_len, stride)} frames long", min_gap
    )

    # The longest snippet that fits the shorter demo: snippet_span(L) <= shorter  <=>  L <= (shorter - 1) // stride + 1.
    shorter = np.minimum(lengths[first], lengths[second])
    longest = np.minimum(max_len, (shorter - 1) // stride + 1)
    length = rng.integers(min_len, longest + 1)
    room_first = lengths[first] - snippet_span(length, stride)  # last possible start in each demo
    room_second = lengths[second] - snippet_span(length, stride)
    if start_prior:
        better_is_first = scores[first] > scores[second]
        room_better = np.where(better_is_first, room_first, room_second)
        room_worse = np.where(better_is_first, room_second, room_first)
        # The worse start leaves room for a no-earlier better start; the better start lies in [worse, room].
        start_worse = rng.integers(0, np.minimum(room_worse, room_better) + 1)
        start_better = rng.integers(start_worse, room_better + 1)
        start_first = np.where(better_is_first, start_better, start_worse)
        start_second = np.where(better_is_first, start_worse, start_better)
    else:
        start_first = rng.integers(0, room_first + 1)
        start_second = rng.integers(0, room_second + 1)

    length = length.astype(np.int64)
    return _label_pairs(scores, rng, (first, start_first, length), (second, start_second, length), stride)


def _label_pairs(
    scores: np.ndarray, rng: np.random.Generator, first: tuple, second: tuple, stride: int
) -> SnippetPairs:
    """Pairs of the clips ``first`` and ``second`` (each ``(demo, start, length)``), a random one of each made a,
    labelled by which came from the better demo."""
    swap = rng.random(len(first[0])) < 0.5
    a = [np.where(swap, y, x) for x, y in zip(first, second, strict=True)]
    b = [np.where(swap, x, y) for x, y in zip(first, second, strict=True)]
    return SnippetPairs(*a, *b, (scores[b[0]] > scores[a[0]]).astype(np.int64), stride)


def draw_demo_pairs(
    scores: np.ndarray,
    usable: np.ndarray,
    num_pairs: int,
    rng: np.random.Generator,
    levels: np.ndarray | None = None,
    what: str = "usable",
    min_gap: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` pairs of demos from ``usable`` whose scores differ (by at least ``min_gap`` where it is
    positive), as two int64 arrays.

    Without ``levels`` both demos are uniform over ``usable``. With ``levels`` (each demo's level seed, indexed like
    ``scores``) the second demo is uniform over the usable demos of the first one's level, so the comparison is
    about behaviour, not about which level looks like a good one: a network can otherwise learn which level (and
    episode) each demo was and score well on training pairs without learning the task (a D-REX ladder, where every
    level has every rung, makes such pairs possible). Rejection keeps only pairs of different score. ``min_gap``
    leaves out the pairs of close scores, whose snippets are the most likely to carry the wrong label: a snippet of
    an episode that scored 3 is often no better than one of an episode that scored 2.
    """
    usable = np.asarray(usable, dtype=np.int64)
    by_level = levels is not None
    groups = [usable[levels[usable] == level] for level in np.unique(levels[usable])] if by_level else [usable]
    groups = [g for g in groups if len(g) and np.ptp(scores[g]) > 0 and np.ptp(scores[g]) >= min_gap]
    if not groups:
        where = " of one level" if by_level else ""
        apart = f" at least {min_gap:g} apart" if min_gap > 0 else ""
        raise ValueError(
            f"no two demos{where} of different rank{apart} among the {len(usable)} {what}; use more or longer "
            "demos, or a smaller min_len" + (" or min_gap" if min_gap > 0 else "")
        )
    pool = np.concatenate(groups)
    group_of = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    starts = np.concatenate([[0], np.cumsum([len(g) for g in groups])])
    first, second = np.empty(0, np.int64), np.empty(0, np.int64)
    while len(first) < num_pairs:
        k = rng.integers(0, len(pool), 2 * num_pairs)
        g = group_of[k]
        j = starts[g] + rng.integers(0, starts[g + 1] - starts[g])  # uniform within the first demo's group
        i, j = pool[k], pool[j]
        gap = np.abs(scores[i] - scores[j])
        keep = (gap > 0) & (gap >= min_gap)
        first, second = np.concatenate([first, i[keep]]), np.concatenate([second, j[keep]])
    return first[:num_pairs], second[:num_pairs]


def sample_episode_pairs(
    scores: np.ndarray,
    lengths: np.ndarray,
    candidates: np.ndarray,
    num_pairs: int,
    stride: int,
    seed: int | Sequence[int],
    levels: np.ndarray | None = None,
    min_gap: float = 0.0,
) -> SnippetPairs:
    """Draw ``num_pairs`` whole-episode comparisons from the demos ``candidates``.

    Each clip is a whole demo taken every ``stride``-th frame from a random offset in ``[0, stride)``, so it holds
    ``ceil((length - offset) / stride)`` frames: a longer episode gives a longer clip. Comparing sums over clips of
    different lengths lets the Bradley-Terry loss see a constant added to every frame's reward (on equal-length
    snippets it cancels), so the per-frame offset, which decides whether ending an episode early or late pays, is
    identified by the rankings instead of pinned by a penalty. Demo pairs as in ``draw_demo_pairs``. Deterministic
    given ``seed``.
    """
    if stride < 1:
        raise ValueError(f"stride: must be >= 1, got {stride}")
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    candidates = np.asarray(candidates, dtype=np.int64)
    first, second = draw_demo_pairs(scores, candidates, num_pairs, rng, levels, "given", min_gap)
    clips = []
    for demo in (first, second):
        start = rng.integers(0, np.minimum(stride, lengths[demo]))
        clips.append((demo, start, -(-(lengths[demo] - start) // stride)))
    return _label_pairs(scores, rng, clips[0], clips[1], stride)


def sample_transitions(offsets: np.ndarray, demos: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """Rows ``t`` of a packed frame array (``DemoFrames``) for ``num`` transitions (frame ``t``, its action, frame
    ``t + 1``) drawn uniformly over every transition of the demos ``demos``: each ``t`` whose next frame belongs to
    the same demo is equally likely, so a long demo gives more of them. Returns int64 ``(num,)``; demos of one frame
    hold none, and demos with none at all are a ValueError."""
    demos = np.asarray(demos, dtype=np.int64)
    counts = np.maximum(offsets[demos + 1] - offsets[demos] - 1, 0)
    ends = np.cumsum(counts)
    if not len(ends) or ends[-1] == 0:
        raise ValueError("no demo holds two frames, so there is no transition to draw")
    draws = rng.integers(0, ends[-1], num)
    which = np.searchsorted(ends, draws, side="right")
    return offsets[demos[which]] + draws - (ends - counts)[which]


def snippet_frame_indices(
    offsets: np.ndarray, demos: np.ndarray, starts: np.ndarray, lengths: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a packed frame array (``DemoFrames``) for a batch of snippets, and which snippet each row is.

    Snippet ``k`` covers rows ``offsets[demos[k]] + starts[k] + stride * arange(lengths[k])``. Returns
    ``(rows, snippet)``, both int64 ``(lengths.sum(),)``, snippets one after another.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    snippet = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = offsets[demos][snippet] + starts[snippet] + stride * within
    return rows, snippet
