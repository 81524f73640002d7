"""The learned-reward wrapper: it scores the frame each action was chosen on, never the next episode's
first frame, keeps the true reward, and reports true and learned episode returns side by side."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper
from torch import nn

from baseline_agent.ppo import RewardScaler
from policies.reward_wrapper import (
    LearnedRewardVecEnv,
    RewardConfig,
    combine_members,
    load_reward_model,
    reward_wrapper,
)
from procgen_common.cli import UserError
from procgen_common.env import NUM_ACTIONS, EnvConfig, ProcgenVecEnv
from trex.reward_net import RewardNetConfig, save_untrained_reward_net


class MeanPixelReward(nn.Module):
    """A one-member 'reward model' with a known answer: the frame's mean pixel value / 255, ``(1, B)``."""

    def forward(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        return frames.double().mean((1, 2, 3))[None].float() / 255.0


class ActionReward(nn.Module):
    """An r(s, a) model whose reward is the action taken (checks that the wrapper passes the actions)."""

    class Config:
        use_action = True

    config = Config()

    def forward(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        return actions.float()[None]


class RecordTrueRewards(VecEnvWrapper):
    """Passes steps through, keeping the env's own rewards of the last step."""

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.last_rewards = rewards.copy()
        return obs, rewards, dones, infos


def _procgen(seed: int = 3) -> ProcgenVecEnv:
    return ProcgenVecEnv(EnvConfig(num_envs=4, num_levels=20, num_threads=0), num_envs=4, seed=seed)


def test_wrapper_scores_the_pre_action_frame_and_never_the_next_episodes_first_frame():
    recorder = RecordTrueRewards(_procgen())
    env = LearnedRewardVecEnv(recorder, MeanPixelReward())
    rng = np.random.default_rng(0)
    obs = env.reset()
    learned_sums, true_sums = np.zeros(4), np.zeros(4)
    episode_ends = 0
    try:
        for _ in range(300):
            seen = obs.copy()  # the frames the actions are chosen on
            obs, rewards, dones, infos = env.step(rng.integers(0, NUM_ACTIONS, 4))
            expected = seen.mean((1, 2, 3)) / 255.0
            np.testing.assert_allclose(rewards, expected, rtol=1e-5)
            assert rewards.dtype == np.float32
            for i, info in enumerate(infos):
                assert info["true_reward"] == recorder.last_rewards[i]
            learned_sums += expected
            true_sums += recorder.last_rewards
            for i in np.flatnonzero(dones):
                episode_ends += 1
                terminal = infos[i]["terminal_observation"]
                # ProcgenVecEnv's terminal observation is the pre-action frame: the one that must be scored ...
                np.testing.assert_array_equal(terminal, seen[i])
                assert rewards[i] == pytest.approx(terminal.mean() / 255.0, rel=1e-5)
                # ... and not the next episode's first frame, which the env has already returned.
                assert rewards[i] != pytest.approx(obs[i].mean() / 255.0, rel=1e-5)
                episode = infos[i]["episode"]
                assert episode["learned_r"] == pytest.approx(learned_sums[i], rel=1e-5)
                assert episode["r"] == pytest.approx(true_sums[i])
                learned_sums[i] = true_sums[i] = 0.0
    finally:
        env.close()
    assert episode_ends >= 5


def test_the_length_reward_pays_one_per_step_so_an_episodes_learned_return_is_its_length():
    wrap = reward_wrapper(RewardConfig(source="length"), EnvConfig(), gamma=0.99, device="cpu")
    env = wrap(_procgen())
    rng = np.random.default_rng(1)
    env.reset()
    lengths, ends = np.zeros(4), 0
    try:
        for _ in range(300):
            _, rewards, dones, infos = env.step(rng.integers(0, NUM_ACTIONS, 4))
            np.testing.assert_array_equal(rewards, np.ones(4, dtype=np.float32))
            lengths += 1
            for i in np.flatnonzero(dones):
                ends += 1
                assert infos[i]["episode"]["learned_r"] == lengths[i] == infos[i]["episode"]["l"]
                lengths[i] = 0
    finally:
        env.close()
    assert ends >= 5


def test_wrapper_passes_the_actions_to_an_action_conditioned_reward():
    env = LearnedRewardVecEnv(_procgen(), ActionReward())
    env.reset()
    try:
        for actions in ([0, 1, 2, 3], [14, 7, 7, 0]):
            _, rewards, _, _ = env.step(np.array(actions))
            np.testing.assert_array_equal(rewards, np.array(actions, dtype=np.float32))
    finally:
        env.close()


def test_ensemble_mean_minus_k_std_and_sigmoid():
    members = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])  # 2 members x 3 frames
    torch.testing.assert_close(combine_members(members, 0.0), torch.tensor([2.0, 0.0, 2.0]))
    # Population std over the members: 1, 0, 0.
    torch.testing.assert_close(combine_members(members, 0.5), torch.tensor([1.5, 0.0, 2.0]))
    torch.testing.assert_close(combine_members(members[:1], 3.0), members[0])  # one member: no spread

    class TwoMembers(nn.Module):
        def forward(self, frames, actions=None):
            mean = frames.double().mean((1, 2, 3)).float() / 255.0
            return torch.stack([mean, mean + 1.0])

    env = LearnedRewardVecEnv(_procgen(), TwoMembers(), sigmoid=True, std_coef=2.0)
    obs = env.reset()
    try:
        _, rewards, _, _ = env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()
    expected = 1.0 / (1.0 + np.exp(-(obs.mean((1, 2, 3)) / 255.0 + 0.5 - 2.0 * 0.5)))
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)


def test_an_offset_is_subtracted_from_every_learned_reward_before_the_sigmoid():
    rewards = {}
    for offset, sigmoid in ((0.0, False), (0.25, False), (0.25, True)):
        env = LearnedRewardVecEnv(_procgen(), MeanPixelReward(), offset=offset, sigmoid=sigmoid)
        env.reset()
        try:
            rewards[offset, sigmoid] = env.step(np.zeros(4, dtype=np.int64))[1]
        finally:
            env.close()
    np.testing.assert_allclose(rewards[0.25, False], rewards[0.0, False] - 0.25, rtol=1e-6)
    np.testing.assert_allclose(rewards[0.25, True], 1.0 / (1.0 + np.exp(-(rewards[0.0, False] - 0.25))), rtol=1e-5)


def test_running_scaling_is_the_ppo_reward_scaler_on_the_learned_rewards():
    env = LearnedRewardVecEnv(_procgen(), MeanPixelReward(), scale=True, gamma=0.9, clip=5.0)
    reference = RewardScaler(4, 0.9, 5.0)
    rng = np.random.default_rng(1)
    obs = env.reset()
    try:
        for _ in range(60):
            raw = (obs.mean((1, 2, 3)) / 255.0).astype(np.float32)
            obs, rewards, dones, infos = env.step(rng.integers(0, NUM_ACTIONS, 4))
            np.testing.assert_allclose(rewards, reference(raw, dones), rtol=1e-5)
            for i in np.flatnonzero(dones):  # the logged learned return is before scaling
                assert infos[i]["episode"]["learned_r"] > 1.0
        state = env.state_dict()
        assert state["scaler"]["var"] == pytest.approx(reference.stats.var)
    finally:
        env.close()


def test_sb3_ppo_scales_rewards_bit_for_bit_like_the_ppo_reward_scaler():
    """sb3_ppo's ppo.reward_scaling is SB3's VecNormalize: the same computation as RewardScaler, which ppo, ppo_gru
    and the reward wrapper (reward.scale) use, so every algorithm's scaling is one mechanism."""
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(_procgen(), norm_obs=False, gamma=0.9, clip_reward=5.0)
    reference = RewardScaler(4, 0.9, 5.0)
    rng = np.random.default_rng(1)
    env.reset()
    try:
        for _ in range(150):
            _, rewards, dones, _ = env.step(rng.integers(0, NUM_ACTIONS, 4))
            np.testing.assert_array_equal(rewards.astype(np.float32), reference(env.get_original_reward(), dones))
        assert reference.stats.count > 600 and reference.stats.var > 0
    finally:
        env.close()


@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
def test_a_model_with_a_bounded_output_is_not_squashed_twice(tmp_path, output):
    model = save_untrained_reward_net(tmp_path / "r.pt", RewardNetConfig(output=output), "starpilot")
    env = EnvConfig(game="starpilot")
    assert load_reward_model(RewardConfig(source="learned", model=str(model)), env)[1] == 0.0
    with pytest.raises(UserError, match=f"reward.sigmoid: .*already bounds its output .reward_net.output={output}"):
        load_reward_model(RewardConfig(source="learned", model=str(model), sigmoid=True), env)


def test_center_subtracts_the_mean_reward_per_frame_the_model_file_records(tmp_path):
    model = save_untrained_reward_net(tmp_path / "r.pt", RewardNetConfig(), "starpilot")
    env = EnvConfig(game="starpilot")
    config = RewardConfig(source="learned", model=str(model), center=True, offset=0.5)
    with pytest.raises(UserError, match="reward.center: .*records no per-frame mean"):
        load_reward_model(config, env)
    checkpoint = torch.load(model, weights_only=True)
    checkpoint["reward_per_frame"] = {"mean": 0.25, "std": 0.1, "frames": 100}
    torch.save(checkpoint, model)
    assert load_reward_model(config, env)[1] == 0.75
