"""Ranking demos and drawing snippet pairs from them (T-REX's training data), as pure seeded functions.

A training pair is two snippets of equal length from two demos of different rank; its label says
which snippet came from the better demo. Pairs hold indices into the demos, never frames: the
trainer gathers the frames of a minibatch from the uint8 demo arrays (``snippet_frame_indices``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

RankBy = Literal["return", "checkpoint"]


def rank_scores(returns: np.ndarray, checkpoint_steps: np.ndarray, rank_by: RankBy) -> np.ndarray:
    """The score demos are ranked by (higher = better): the true return, or the checkpoint's training step
    (the original T-REX ranking, which assumes later checkpoints play better). float64 ``(num_demos,)``."""
    if rank_by == "return":
        return np.asarray(returns, dtype=np.float64)
    if rank_by == "checkpoint":
        return np.asarray(checkpoint_steps, dtype=np.float64)
    raise ValueError(f"rank_by: {rank_by!r} is not 'return' or 'checkpoint'")


def split_by_demo(num_demos: int, val_fraction: float, seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle demo indices and hold out ``round(val_fraction * num_demos)`` (at least 1) for validation.

    Splitting demos rather than pairs keeps every frame of a validation demo out of training, so the
    validation accuracy is measured on unseen episodes. Returns sorted ``(train, val)`` int64 indices.
    """
    order = np.random.default_rng(seed).permutation(num_demos)
    num_val = min(max(1, round(val_fraction * num_demos)), num_demos - 1)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


@dataclass(frozen=True)
class SnippetPairs:
    """``n`` snippet pairs as indices into a list of demos; snippet x covers demo ``demo_x`` frames
    ``start_x, start_x + stride, ..., start_x + (length - 1) * stride``. All arrays int64 ``(n,)``."""

    demo_a: np.ndarray
    """Demo of snippet a."""
    start_a: np.ndarray
    """First frame of snippet a."""
    demo_b: np.ndarray
    """Demo of snippet b."""
    start_b: np.ndarray
    """First frame of snippet b."""
    length: np.ndarray
    """Frames per snippet (both snippets of a pair have the same length)."""
    label: np.ndarray
    """Which snippet came from the better demo: 0 = a, 1 = b."""
    stride: int = 1
    """Step between the frames of a snippet."""

    def __post_init__(self):
        n = len(self.label)
        for name in ("demo_a", "start_a", "demo_b", "start_b", "length"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: shape {getattr(self, name).shape} does not match the {n} labels")

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, index) -> SnippetPairs:
        """A subset (e.g. a minibatch) of the pairs."""
        return SnippetPairs(
            self.demo_a[index],
            self.start_a[index],
            self.demo_b[index],
            self.start_b[index],
            self.length[index],
            self.label[index],
            self.stride,
        )


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
) -> SnippetPairs:
    """Draw ``num_pairs`` snippet pairs from the demos ``candidates`` (indices into ``scores``/``lengths``).

    Each pair: two demos of different score, drawn uniformly; a snippet length uniform in
    ``[min_len, min(max_len, longest that fits both)]``; start frames uniform within each demo. With
    ``start_prior`` the better demo's snippet starts no earlier than the worse one's, as in the original
    T-REX (Brown et al., 2019): it helps when progress through an episode means progress in the task,
    but it lets a model score well by learning time rather than task reward (REFERENCE.md), so it is off
    by default. Demos too short for ``min_len`` frames are never drawn. Which snippet is a and which is b
    is random, so labels are balanced. Deterministic given ``seed``.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"min_len, max_len: need 1 <= min_len <= max_len, got {min_len} and {max_len}")
    if stride < 1:
        raise ValueError(f"stride: must be >= 1, got {stride}")
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    usable = candidates[lengths[candidates] >= snippet_span(min_len, stride)]
    if len(np.unique(scores[usable])) < 2:
        raise ValueError(
            f"no two demos of different rank among the {len(candidates)} given are at least "
            f"{snippet_span(min_len, stride)} frames long; use more or longer demos, or a smaller min_len"
        )
    rng = np.random.default_rng(seed)
    first, second = np.empty(0, np.int64), np.empty(0, np.int64)
    while len(first) < num_pairs:  # rejection: keep only pairs of different score
        i = rng.choice(usable, 2 * num_pairs)
        j = rng.choice(usable, 2 * num_pairs)
        keep = scores[i] != scores[j]
        first, second = np.concatenate([first, i[keep]]), np.concatenate([second, j[keep]])
    first, second = first[:num_pairs], second[:num_pairs]

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

    swap = rng.random(num_pairs) < 0.5
    demo_a, demo_b = np.where(swap, second, first), np.where(swap, first, second)
    start_a, start_b = np.where(swap, start_second, start_first), np.where(swap, start_first, start_second)
    label = (scores[demo_b] > scores[demo_a]).astype(np.int64)
    return SnippetPairs(demo_a, start_a, demo_b, start_b, length.astype(np.int64), label, stride)


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
