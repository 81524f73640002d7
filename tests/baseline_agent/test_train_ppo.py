"""The PPO loop's wiring, with scripted policies on a real env whose rewards and episode ends are scripted: GAE
against a hand computation (as SB3's tests/test_gae.py), and a recurrent state carried through rollouts and reset
where episodes start, in the rollout and in the update's replay of whole environments."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper
from torch import nn

from baseline_agent.train import RESUME_MUST_MATCH, train_ppo
from procgen_common.env import NUM_ACTIONS
from procgen_common.networks import PolicyNet
from tests.conftest import tiny_config


class ScriptedEpisodes(VecEnvWrapper):
    """Reward 1 on every step; environment i's episodes end on the steps ``ends[i]`` (counted from 0)."""

    def __init__(self, venv, ends: dict[int, list[int]]):
        super().__init__(venv)
        self.ends, self.t = ends, 0

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, _, _, infos = self.venv.step_wait()
        dones = np.array([self.t in self.ends.get(i, []) for i in range(self.num_envs)])
        for i in np.flatnonzero(dones):
            infos[i]["episode"] = {"r": 1.0, "l": 1}
        self.t += 1
        return obs, np.ones(self.num_envs, dtype=np.float32), dones, infos


class ConstantValue(PolicyNet):
    """Feed-forward: uniform actions, value 0.5 everywhere. Records every call's values and the state it returns."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # something for Adam to hold
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def scripted(self, values: torch.Tensor, state: torch.Tensor | None):
        self.calls.append((values.clone(), state))
        return torch.zeros(*values.shape, NUM_ACTIONS), values + 0 * self.unused, state

    def unroll(self, frames, state, episode_starts):
        return self.scripted(torch.full(episode_starts.shape, 0.5), None)


class StepCounter(ConstantValue):
    """Recurrent: the state is (environment index, steps since its episode started); the value is that count."""

    recurrent = True

    def initial_state(self, num_envs, device):
        return torch.stack([torch.arange(num_envs, dtype=torch.float32), torch.full((num_envs,), 100.0)], 1)

    def unroll(self, frames, state, episode_starts):
        env, count = state.unbind(1)
        counts = []
        for start in episode_starts:
            count = torch.where(start, 0.0, count) + 1
            counts.append(count)
        return self.scripted(torch.stack(counts), torch.stack([env, count], 1))


def test_gae_through_the_trainer_matches_a_hand_computation(tmp_path):
    policy, rollouts = ConstantValue(), []
    config = tiny_config(tmp_path, "env.num_envs=2", "ppo.num_steps=5", "train.total_steps=10", "ppo.gamma=0.9",
                         "ppo.gae_lambda=0.8", "ppo.reward_scaling=false", "train.num_checkpoints=1")  # fmt: skip

    def keep(policy, rollout):
        rollouts.append(rollout)
        return {}

    env = partial(ScriptedEpisodes, ends={0: [1]})
    train_ppo(config, lambda: policy, "ppo", RESUME_MUST_MATCH, env, rollout_metrics=keep)

    # A step's TD error is 1 + 0.9 * 0.5 - 0.5 = 0.95, but 1 - 0.5 on the step that ends env 0's episode (step 1);
    # the last step bootstraps from the value 0.5 after the rollout. Advantages sum TD errors discounted by 0.72.
    def to_end(n: int) -> float:  # the advantage n steps before the rollout's end, with no episode end between
        return sum(0.95 * 0.72**k for k in range(n))

    expected = torch.tensor([[0.95 + 0.72 * 0.5, to_end(5)], [0.5, to_end(4)], [to_end(3)] * 2, [to_end(2)] * 2,
                             [to_end(1)] * 2])  # fmt: skip
    torch.testing.assert_close(rollouts[0].advantages, expected)
    torch.testing.assert_close(rollouts[0].returns, expected + 0.5)
    # 5 rollout steps, the value after them, then two minibatches of 5 single steps (tiny: 2 minibatches, 1 epoch).
    assert [tuple(v.shape) for v, _ in policy.calls] == [(1, 2)] * 6 + [(1, 5)] * 2


def test_recurrent_state_is_carried_and_reset_at_episode_starts_in_the_update_replay(tmp_path):
    T, N, policy = 6, 3, StepCounter()
    config = tiny_config(tmp_path, f"env.num_envs={N}", f"ppo.num_steps={T}", f"train.total_steps={2 * T * N}",
                         "ppo.num_minibatches=3", "train.num_checkpoints=1")  # fmt: skip
    train_ppo(config, lambda: policy, "ppo_gru", RESUME_MUST_MATCH, partial(ScriptedEpisodes, ends={0: [1], 1: [7]}))
    # Steps since the episode started, per environment over both rollouts (the count from initial_state is dropped
    # at the first step): env 0's first episode ends on step 1, env 1's on step 7, in the second rollout.
    expected = torch.tensor([[1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4], range(1, 13)])
    torch.testing.assert_close(torch.cat([v for v, _ in policy.calls[:T]]), expected[:, :T].T.float())
    # Each update replays every environment's whole rollout from the state it started with, one per minibatch.
    replays = [(values, state) for values, state in policy.calls if len(values) > 1]
    assert [tuple(v.shape) for v, _ in replays] == [(T, 1)] * 2 * N
    assert sorted(int(state[0, 0]) for _, state in replays[:N]) == list(range(N))
    for k, (values, state) in enumerate(replays):
        env, first = int(state[0, 0]), T * (k // N)
        torch.testing.assert_close(values[:, 0], expected[env, first : first + T].float())
