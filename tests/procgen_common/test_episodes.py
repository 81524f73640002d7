"""The episode player: noise, pre-action frames, one-level envs, whole episodes in the order they end."""

from __future__ import annotations

import numpy as np
import pytest

from procgen_common.env import EnvConfig, ProcgenVecEnv, one_level_config
from procgen_common.episodes import Episode, Job, play_episodes


class ConstantAgent:
    """Always action 4, remembering each batch it was asked about."""

    def __init__(self):
        self.batches: list[int] = []

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, episode_start, deterministic: bool = False):
        self.batches.append(len(obs))
        return np.full(len(obs), 4), None


def one_level_env(level: int) -> ProcgenVecEnv:
    env = ProcgenVecEnv(one_level_config(EnvConfig(game="starpilot"), level), "train", num_envs=1)
    env.reset()
    return env


def play_levels(levels: list[int], epsilon: float = 0.0, max_steps: int | None = 60, idle_act: bool = False):
    """Play one episode per level, two slots at a time, each on a fresh one-level env."""
    queue, made = list(enumerate(levels)), []

    def next_job(slot: int, ended: Episode | None) -> Job | None:
        if not queue:
            return None
        k, level = queue.pop(0)
        made.append(one_level_env(level))
        return Job(k, epsilon=epsilon, env=made[-1])

    agent = ConstantAgent()
    try:
        episodes = list(
            play_episodes(
                lambda _: agent, 2, next_job, max_steps=max_steps, rng=np.random.default_rng(0), idle_act=idle_act
            )
        )
    finally:
        for env in made:
            env.close()
    return episodes, agent


def test_epsilon_one_plays_uniform_random_actions_and_zero_the_agents():
    episodes, _ = play_levels([3, 5, 7, 9], epsilon=1.0, max_steps=200)
    actions = np.concatenate([e.actions for e in episodes])
    counts = np.bincount(actions, minlength=15)
    expected = len(actions) / 15
    assert ((counts - expected) ** 2 / expected).sum() < 36.1  # chi-square, 14 dof, p = 0.001
    episodes, _ = play_levels([3, 5], epsilon=0.0)
    assert all((e.actions == 4).all() for e in episodes)


def test_frames_are_the_pre_action_frames_never_the_next_episodes_first():
    episodes, _ = play_levels([3, 3], max_steps=None)  # both to the game's own end
    for episode in episodes:
        env = one_level_env(3)
        obs = env.get_images()[0]
        try:
            for t, action in enumerate(episode.actions):
                assert np.array_equal(episode.obs[t], obs), t
                next_obs, _, done, infos = env.step(np.array([action]))
                assert done[0] == (t == episode.length - 1)  # ends exactly where the game ended it
                obs = next_obs[0]
            # After the last step the env shows the next episode's first frame, which the episode never holds.
            assert np.array_equal(infos[0]["terminal_observation"], episode.obs[-1])
            assert not np.array_equal(episode.obs[-1], obs)
        finally:
            env.close()
        assert not episode.truncated
        assert episode.obs.dtype == np.uint8 and episode.obs.shape == (episode.length, 64, 64, 3)
        assert episode.actions.dtype == np.int64 and episode.rewards.dtype == np.float32


def test_one_level_episodes_stay_on_their_level_and_come_out_whole_in_end_order():
    def next_job(slot: int, ended: Episode | None) -> Job | None:
        # Slot 0 keeps one env on level 3 for three episodes; slot 1 plays level 8 once.
        if ended is not None:
            if slot == 1 or ended.job == 2:
                return None
            return Job(ended.job + 1)  # no env: carry on with the slot's own
        return Job(0 if slot == 0 else "eight", env=envs[slot])

    envs = [one_level_env(3), one_level_env(8)]
    agent = ConstantAgent()
    try:
        episodes = list(play_episodes(lambda _: agent, 2, next_job, max_steps=None, idle_act=False))
    finally:
        for env in envs:
            env.close()
    assert [e.level_seed for e in episodes if e.job != "eight"] == [3, 3, 3]
    assert [e.job for e in episodes if e.job != "eight"] == [0, 1, 2]
    assert [e.level_seed for e in episodes if e.job == "eight"] == [8]
    # Episodes are whole (every step of the slot's play is in one of them) and come out as they end: the
    # level-3 episodes replay the same level with the same actions, so all three have one length.
    assert len({e.length for e in episodes if e.job != "eight"}) == 1
    eight = next(e for e in episodes if e.job == "eight")
    assert sum(agent.batches) == sum(e.length for e in episodes)  # every step played is in one episode
    ends = np.cumsum([e.length for e in episodes if e.job != "eight"])
    assert [e is eight for e in episodes].index(True) == int(np.searchsorted(ends, eight.length, side="right"))
    # Without idle_act a slot with nothing left drops out of the batch: batches shrink to one row.
    assert agent.batches[0] == 2 and agent.batches[-1] == 1


def test_max_steps_cuts_and_idle_slots_keep_acting_when_asked():
    episodes, agent = play_levels([3, 5, 7], max_steps=10, idle_act=True)
    assert [e.job for e in episodes] == [0, 1, 2]  # jobs 0 and 1 are cut on one step, slot 0 first
    assert all(e.length == 10 and e.truncated for e in episodes)
    assert set(agent.batches) == {2}  # the idle slot kept its row in every batch


def test_a_shared_vector_env_without_frames():
    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_levels=5, num_threads=0), "train", num_envs=3, seed=1)
    counts = [0, 0, 0]

    def next_job(slot: int, ended: Episode | None) -> Job | None:
        counts[slot] += ended is not None
        return Job(slot) if counts[slot] < 1 else None

    try:
        episodes = list(play_episodes(lambda _: ConstantAgent(), 3, next_job, env, keep_frames=False))
    finally:
        env.close()
    assert sorted(e.job for e in episodes) == [0, 1, 2]
    assert all(e.obs is None and 0 <= e.level_seed < 5 for e in episodes)


def test_episode_validates_lengths():
    with pytest.raises(ValueError, match="share a length"):
        Episode(None, np.zeros(3, np.int64), np.zeros(2, np.float32), 0)
