"""Experience replay for Rainbow: a sum tree for prioritized sampling and a frame-once replay buffer.

``ReplayBuffer`` keeps one ring of slots per environment, all written together (the vector env steps
in lockstep). Slot s of env e holds the frame the action was chosen on, the action, the reward and
whether the step ended the episode. The next observation is not stored again: it is the frame in
slot s + 1 of the same env. So each uint8 frame (64 x 64 x 3 = 12,288 bytes) is stored once, and
1M transitions take about 12.3 GB (``ReplayBuffer.bytes_needed``) instead of the 25 GB of a buffer
with a separate next-observation copy. What that needs care with:

- episode ends: Procgen resets inside its step, so slot s + 1 after a done holds the next episode's
  first frame; the n-step return stops at the done and its bootstrap discount is 0, so that frame is
  never used as the old episode's next state (Procgen has no time-limit truncation to bootstrap);
- the write head: slot s can be replayed only when slots s + 1 .. s + n are written and none of them
  has been overwritten since, i.e. for the ``filled - n`` oldest slots. The ``n`` newest slots get
  priority 0 in the sum tree until their window is complete, and the slot being overwritten leaves it.

n-step targets (``nstep_targets``) are computed when a batch is sampled, from the stored rewards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from procgen_common.env import OBS_SHAPE


class SumTree:
    """Leaf priorities with every internal node the sum of its two children: O(log n) updates and
    prefix-sum lookups, for sampling leaf i with probability ``priority[i] / total``.

    Stored as one float64 array: node 1 is the root, node k has children 2k and 2k + 1, and the
    leaves are nodes ``size .. 2 size - 1`` (``size`` the capacity rounded up to a power of two).
    All operations take arrays of leaves at once.
    """

    def __init__(self, capacity: int):
        self.size = 1 << max(0, math.ceil(math.log2(max(capacity, 1))))
        self.depth = self.size.bit_length() - 1
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        return self.nodes[self.size + np.asarray(leaves)]

    def set(self, leaves: np.ndarray, priorities: np.ndarray | float) -> None:
        """Set leaf priorities (>= 0) and update the sums above them."""
        nodes = self.size + np.asarray(leaves, dtype=np.int64).reshape(-1)
        if nodes.size == 0:
            return
        self.nodes[nodes] = priorities
        parents = np.unique(nodes // 2)
        while parents[0] >= 1:  # up to and including the root (node 1), whose parent is 0
            self.nodes[parents] = self.nodes[2 * parents] + self.nodes[2 * parents + 1]
            parents = np.unique(parents // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """The leaf where each prefix sum in ``values`` (in ``[0, total)``) falls; never a zero-priority leaf.

        At each node the walk goes right when the value reaches past the left child's sum and the right
        child holds any priority, so rounding cannot end on a leaf of priority 0.
        """
        values = np.asarray(values, dtype=np.float64).copy()
        nodes = np.ones(values.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self.nodes[left]
            go_right = (values >= left_sum) & (self.nodes[left + 1] > 0)
            values = np.where(go_right, values - left_sum, values)
            nodes = np.where(go_right, left + 1, left)
        return nodes - self.size

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` leaves drawn in proportion to priority, one from each of ``batch_size`` equal strata
        of the total (stratified, as Schaul et al., 2016)."""
        assert self.total > 0, "sampling from an empty sum tree"
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (self.total / batch_size)
        return self.find(np.minimum(bounds, np.nextafter(self.total, 0)))


def nstep_targets(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """n-step returns and bootstrap discounts from the rewards and done flags of n consecutive steps.

    ``rewards``, ``dones``: ``(B, n)``, step k of the window in column k. The return sums
    ``gamma**k * r_k`` up to and including the first done; the discount is ``gamma**n`` (to multiply
    the value of the state n steps on) or 0 when the episode ended inside the window. float32 ``(B,)`` each.
    """
    n = rewards.shape[1]
    not_done = 1.0 - dones.astype(np.float64)
    # alive[:, k]: no episode end before step k of the window (step k still belongs to the episode).
    alive = np.concatenate([np.ones((len(rewards), 1)), np.cumprod(not_done, axis=1)[:, :-1]], axis=1)
    returns = (rewards * alive * gamma ** np.arange(n)).sum(1)
    discounts = gamma**n * np.prod(not_done, axis=1)
    return returns.astype(np.float32), discounts.astype(np.float32)


@dataclass(frozen=True)
class ReplayBatch:
    """A sampled batch of n-step transitions (B of them)."""

    obs: np.ndarray
    """uint8 ``(B, 64, 64, 3)``: the frames the actions were chosen on."""
    actions: np.ndarray
    """int64 ``(B,)``."""
    returns: np.ndarray
    """float32 ``(B,)``: discounted n-step returns (``nstep_targets``)."""
    discounts: np.ndarray
    """float32 ``(B,)``: ``gamma**n``, or 0 where the episode ended within the n steps."""
    next_obs: np.ndarray
    """uint8 ``(B, 64, 64, 3)``: the frame n steps on (not used where the discount is 0)."""
    weights: np.ndarray
    """float32 ``(B,)``: importance-sampling weights (all 1 for uniform replay)."""
    indices: np.ndarray
    """int64 ``(B,)``: flat transition indices (``slot * num_envs + env``) for ``update_priorities``."""


class ReplayBuffer:
    """Transitions of ``num_envs`` environments in per-env rings of ``capacity // num_envs`` slots.

    ``add`` stores one vector step; ``sample`` draws n-step transitions uniformly or, with
    ``prioritized``, in proportion to ``priority ** alpha`` (Schaul et al., 2016), new transitions
    entering at the largest priority seen so far.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        n_step: int,
        gamma: float,
        prioritized: bool = False,
        alpha: float = 0.5,
        priority_eps: float = 1e-6,
        obs_shape: tuple[int, ...] = OBS_SHAPE,
    ):
        self.slots = capacity // num_envs
        if self.slots < n_step + 2:
            raise ValueError(f"buffer_size: {capacity} holds too few steps per environment for {n_step}-step returns")
        self.num_envs, self.n_step, self.gamma = num_envs, n_step, gamma
        # np.empty: the operating system hands out the pages as they are first written.
        self.frames = np.empty((self.slots, num_envs, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros((self.slots, num_envs), dtype=np.int64)
        self.rewards = np.zeros((self.slots, num_envs), dtype=np.float32)
        self.dones = np.zeros((self.slots, num_envs), dtype=bool)
        self.head = 0  # the next slot to write
        self.filled = 0  # slots written so far (at most self.slots)
        self.tree = SumTree(self.slots * num_envs) if prioritized else None
        self.alpha, self.priority_eps = alpha, priority_eps
        self.max_priority = 1.0

    @staticmethod
    def bytes_needed(capacity: int, obs_shape: tuple[int, ...] = OBS_SHAPE, prioritized: bool = True) -> int:
        """Memory of a full buffer of ``capacity`` transitions: one frame, action (8 bytes), reward (4) and
        done flag (1) each, plus the sum tree (two float64 nodes per leaf, rounded up to a power of two)."""
        frame = int(np.prod(obs_shape))
        tree = 16 * (1 << math.ceil(math.log2(capacity))) if prioritized else 0
        return capacity * (frame + 8 + 4 + 1) + tree

    def __len__(self) -> int:
        """Transitions that can be sampled now (their n-step window is complete)."""
        return max(0, self.filled - self.n_step) * self.num_envs

    def _leaves(self, slot: int) -> np.ndarray:
        return slot * self.num_envs + np.arange(self.num_envs)

    def add(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Store one step of every env: the frames the actions were chosen on, the actions, rewards and dones."""
        h = self.head
        self.frames[h] = frames
        self.actions[h] = actions
        self.rewards[h] = rewards
        self.dones[h] = dones
        self.head = (h + 1) % self.slots
        self.filled = min(self.filled + 1, self.slots)
        if self.tree is not None:
            self.tree.set(self._leaves(h), 0.0)  # the overwritten (oldest) slot leaves; the new one waits
            if self.filled > self.n_step:  # the slot n back now has its whole window
                self.tree.set(self._leaves((h - self.n_step) % self.slots), self.max_priority**self.alpha)

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 0.4) -> ReplayBatch:
        """``batch_size`` n-step transitions; ``beta`` is the importance-sampling exponent (prioritized only)."""
        num_valid = len(self)
        assert num_valid > 0, "sampling from a replay buffer without complete n-step windows"
        if self.tree is not None:
            indices = self.tree.sample(batch_size, rng)
            probs = self.tree.get(indices) / self.tree.total
            weights = (num_valid * probs) ** -beta
            weights = (weights / weights.max()).astype(np.float32)
        else:
            oldest = (self.head - self.filled) % self.slots
            offsets = rng.integers(0, num_valid, batch_size)
            slot_offsets, envs = np.divmod(offsets, self.num_envs)
            indices = ((oldest + slot_offsets) % self.slots) * self.num_envs + envs
            weights = np.ones(batch_size, dtype=np.float32)
        slots, envs = np.divmod(indices, self.num_envs)
        window = (slots[:, None] + np.arange(self.n_step)) % self.slots
        returns, discounts = nstep_targets(
            self.rewards[window, envs[:, None]], self.dones[window, envs[:, None]], self.gamma
        )
        return ReplayBatch(
            obs=self.frames[slots, envs],
            actions=self.actions[slots, envs],
            returns=returns,
            discounts=discounts,
            next_obs=self.frames[(slots + self.n_step) % self.slots, envs],
            weights=weights,
            indices=indices.astype(np.int64),
        )

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities (e.g. the sampled transitions' losses) for sampled transitions (prioritized only)."""
        if self.tree is None:
            return
        priorities = np.asarray(priorities, dtype=np.float64) + self.priority_eps
        self.tree.set(indices, priorities**self.alpha)
        self.max_priority = max(self.max_priority, float(priorities.max()))
