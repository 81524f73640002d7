"""Replay for Rainbow: sum-tree sampling proportions and updates, n-step targets by hand, and the
frame-once buffer's next observations at episode ends and at the ring's write head."""

from __future__ import annotations

import numpy as np
import pytest

from policies.replay import ReplayBuffer, SumTree, nstep_targets


def test_sum_tree_samples_in_proportion_to_priority_and_never_a_zero():
    tree = SumTree(6)  # not a power of two: 8 leaves, two always empty
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    tree.set(np.arange(6), priorities)
    assert tree.total == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    leaves = np.concatenate([tree.sample(64, rng) for _ in range(2000)])
    counts = np.bincount(leaves, minlength=8)
    assert counts[4] == 0 and counts[6:].sum() == 0
    np.testing.assert_allclose(counts[:6] / len(leaves), priorities / 20.0, atol=0.01)


def test_sum_tree_updates_keep_every_node_the_sum_of_its_children():
    tree = SumTree(5)
    tree.set(np.arange(5), np.ones(5))
    tree.set(np.array([1, 3, 3]), np.array([0.0, 7.0, 7.0]))  # repeated leaves, as a sampled batch may have
    np.testing.assert_allclose(tree.get(np.arange(5)), [1.0, 0.0, 1.0, 7.0, 1.0])
    assert tree.total == pytest.approx(10.0)
    internal = np.arange(1, tree.size)
    np.testing.assert_allclose(tree.nodes[internal], tree.nodes[2 * internal] + tree.nodes[2 * internal + 1])
    rng = np.random.default_rng(1)
    leaves = np.concatenate([tree.sample(50, rng) for _ in range(1000)])
    np.testing.assert_allclose(np.bincount(leaves, minlength=5)[:5] / len(leaves), [0.1, 0, 0.1, 0.7, 0.1], atol=0.01)


def test_sum_tree_find_at_exact_boundaries_skips_empty_leaves():
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([2.0, 0.0, 0.0, 3.0]))
    # Prefix sums: leaf 0 covers [0, 2), leaf 3 covers [2, 5); the empty leaves 1 and 2 cover nothing.
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.999, 2.0, 4.999])), [0, 0, 3, 3])


def test_nstep_targets_by_hand():
    gamma = 0.5
    rewards = np.array([[1.0, 2.0, 4.0]] * 4)
    dones = np.array(
        [
            [0, 0, 0],  # no end: 1 + .5*2 + .25*4 = 3, bootstrap with .5**3
            [0, 1, 0],  # ends after step 1: 1 + .5*2 = 2, no bootstrap; step 2 is the next episode's
            [1, 0, 0],  # ends at once: 1
            [0, 0, 1],  # ends on the last step: 3, no bootstrap
        ],
        dtype=bool,
    )
    returns, discounts = nstep_targets(rewards, dones, gamma)
    np.testing.assert_allclose(returns, [3.0, 2.0, 1.0, 3.0])
    np.testing.assert_allclose(discounts, [0.125, 0.0, 0.0, 0.0])
    one_step = nstep_targets(np.array([[5.0], [5.0]]), np.array([[0], [1]], dtype=bool), 0.9)
    np.testing.assert_allclose(one_step[0], [5.0, 5.0])
    np.testing.assert_allclose(one_step[1], [0.9, 0.0])


NUM_ENVS = 3


def _frame_id(step: int, env: int) -> int:
    return (step * NUM_ENVS + env) % 251


def _fill(buffer: ReplayBuffer, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Add ``steps`` vector steps whose frames are filled with an id of (step, env); returns rewards, dones."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(steps, NUM_ENVS)).astype(np.float32)
    dones = rng.random((steps, NUM_ENVS)) < 0.2
    for t in range(steps):
        frames = np.stack([np.full((4, 4, 1), _frame_id(t, e), np.uint8) for e in range(NUM_ENVS)])
        buffer.add(frames, np.arange(NUM_ENVS) + t, rewards[t], dones[t])
    return rewards, dones


@pytest.mark.parametrize("prioritized", [False, True])
def test_buffer_next_obs_is_the_following_slot_and_the_write_head_is_never_crossed(prioritized):
    n, gamma, slots, steps = 3, 0.9, 10, 27  # 27 steps into 10 slots: wrapped twice
    buffer = ReplayBuffer(slots * NUM_ENVS, NUM_ENVS, n, gamma, prioritized=prioritized, obs_shape=(4, 4, 1))
    rewards, dones = _fill(buffer, steps)
    assert len(buffer) == (slots - n) * NUM_ENVS
    batch = buffer.sample(2000, np.random.default_rng(0), beta=0.5)
    steps_of_sample = batch.actions - (batch.indices % NUM_ENVS)  # actions were env + step
    envs = batch.indices % NUM_ENVS
    # Only steps whose n-step window is still in the buffer: the oldest kept step is steps - slots,
    # and the newest n steps wait for their window.
    assert steps_of_sample.min() >= steps - slots and steps_of_sample.max() <= steps - 1 - n
    assert len(np.unique(steps_of_sample)) == slots - n
    np.testing.assert_array_equal(batch.obs[:, 0, 0, 0], _frame_id(steps_of_sample, envs))
    np.testing.assert_array_equal(batch.next_obs[:, 0, 0, 0], _frame_id(steps_of_sample + n, envs))
    window = steps_of_sample[:, None] + np.arange(n)
    returns, discounts = nstep_targets(rewards[window, envs[:, None]], dones[window, envs[:, None]], gamma)
    np.testing.assert_allclose(batch.returns, returns, rtol=1e-6)
    np.testing.assert_array_equal(batch.discounts, discounts)
    assert (batch.discounts[dones[window, envs[:, None]].any(1)] == 0).all()  # no bootstrap across an episode end
    assert batch.weights.max() == pytest.approx(1.0) and (batch.weights > 0).all()


def test_prioritized_buffer_gives_new_transitions_the_top_priority_and_follows_updates():
    n, slots = 2, 8
    buffer = ReplayBuffer(slots * NUM_ENVS, NUM_ENVS, n, 0.99, prioritized=True, alpha=1.0, obs_shape=(4, 4, 1))
    _fill(buffer, 5)
    leaves = np.arange(slots * NUM_ENVS)
    priorities = buffer.tree.get(leaves).reshape(slots, NUM_ENVS)
    np.testing.assert_array_equal(priorities[:3], 1.0)  # complete windows, at the initial max priority
    np.testing.assert_array_equal(priorities[3:], 0.0)  # the newest n steps and unwritten slots
    batch = buffer.sample(6, np.random.default_rng(0))
    buffer.update_priorities(batch.indices[:1], np.array([9.0]))
    assert buffer.max_priority == pytest.approx(9.0 + buffer.priority_eps)
    _fill(buffer, 1, seed=1)  # one more step: slot 3's window completes, entering at the new max priority
    assert buffer.tree.get(np.array([3 * NUM_ENVS]))[0] == pytest.approx(9.0 + buffer.priority_eps)
    sampled = buffer.sample(4000, np.random.default_rng(1))
    share = np.mean(sampled.indices == batch.indices[0])
    assert share == pytest.approx(buffer.tree.get(batch.indices[:1])[0] / buffer.tree.total, abs=0.02)
    # Importance weights undo the bias: the most sampled transition gets the smallest weight.
    assert sampled.weights[sampled.indices == batch.indices[0]].max() == sampled.weights.min()


def test_each_frame_is_stored_once():
    capacity = 64 * 10
    buffer = ReplayBuffer(capacity, 64, 3, 0.99, prioritized=True)
    assert buffer.frames.nbytes / capacity == 12_288  # one 64x64x3 uint8 frame per transition
    million = ReplayBuffer.bytes_needed(1_000_000)
    assert 12.2e9 < million < 13e9  # vs 24.6e9 for frames plus a separate next-frame copy
