"""Evaluation: the summary of an evaluation, and run_episodes' exact, evenly spread episode count."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from procgen_common import evaluation
from procgen_common.agents import RandomAgent
from procgen_common.env import EnvConfig, ProcgenVecEnv
from procgen_common.evaluation import EpisodeResults, run_episodes, summarize


def test_summarize_reports_mean_std_ci_and_score():
    games = np.array(["coinrun"] * 4, dtype=object)
    results = EpisodeResults(np.array([5.0, 7.0, 9.0, 11.0]), np.array([10, 20, 30, 40]), np.array([1, 2, 3, 4]), games)
    summary = summarize(results, "coinrun", "easy")
    assert summary["episodes"] == 4
    assert summary["mean_return"] == 8.0
    assert summary["std_return"] == pytest.approx(np.sqrt(5.0))
    assert summary["mean_length"] == 25.0
    assert summary["normalized_score"] == pytest.approx((8.0 - 5) / (10 - 5))
    low, high = summary["ci95_return"]
    assert 5.0 <= low <= 8.0 <= high <= 11.0


def test_summarize_of_two_games_gives_a_row_per_game_and_the_mean_normalised_score():
    games = np.array(["coinrun"] * 3 + ["starpilot"] * 3, dtype=object)
    returns = np.array([5.0, 10.0, 10.0, 2.5, 2.5, 64.0])  # normalised: 0, 1, 1 (coinrun) and 0, 0, 1 (starpilot)
    results = EpisodeResults(returns, np.ones(6, np.int64), np.arange(6), games)
    summary = summarize(results, "ignored", "easy")
    assert summary["games"] == ["coinrun", "starpilot"]
    assert summary["per_game"]["coinrun"]["mean_return"] == pytest.approx(25 / 3)
    assert summary["per_game"]["starpilot"]["normalized_score"] == pytest.approx(1 / 3)
    assert summary["normalized_score"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    low, high = summary["ci95_normalized_score"]
    assert 0 <= low < 0.5 < high <= 1


def test_a_multi_game_evaluation_plays_the_episodes_of_each_game_on_the_named_split():
    config = EnvConfig(games=["coinrun", "starpilot"], num_envs=2, num_levels=5, test_num_levels=20, test_splits=[500])
    results = run_episodes(RandomAgent(0), config, "test@500", episodes=3, max_envs=3)
    assert results.games.tolist() == ["coinrun"] * 3 + ["starpilot"] * 3
    assert all(500 <= seed < 520 for seed in results.level_seeds)


class RecordingEnv(ProcgenVecEnv):
    """ProcgenVecEnv that remembers every finished episode per environment, in order."""

    made: list[RecordingEnv] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished = defaultdict(list)
        RecordingEnv.made.append(self)

    def step_wait(self):
        obs, rewards, dones, infos = super().step_wait()
        for i in np.flatnonzero(dones):
            ep = infos[i]["episode"]
            self.finished[i].append((ep["r"], ep["l"], ep["level_seed"]))
        return obs, rewards, dones, infos


@pytest.mark.parametrize(("episodes", "max_envs", "quotas"), [(6, 4, [2, 2, 1, 1]), (3, 8, [1, 1, 1])])
def test_run_episodes_plays_exactly_the_quota_of_each_env(monkeypatch, episodes, max_envs, quotas):
    RecordingEnv.made = []
    monkeypatch.setattr(evaluation, "ProcgenVecEnv", RecordingEnv)
    cfg = EnvConfig(game="starpilot", num_envs=64, num_levels=10, test_num_levels=20, num_threads=0)
    counts = []
    results = run_episodes(RandomAgent(1), cfg, "test", episodes, seed=3, max_envs=max_envs, progress=counts.append)
    (env,) = RecordingEnv.made
    assert env.num_envs == len(quotas)  # min(episodes, max_envs) environments, not env.num_envs
    assert len(results.returns) == len(results.lengths) == len(results.level_seeds) == episodes
    assert counts == list(range(1, episodes + 1))
    # Each env contributes its first `quota` episodes; later ones (envs that finished early) are dropped.
    expected = sorted(ep for i, q in enumerate(quotas) for ep in env.finished[i][:q])
    got = sorted(zip(results.returns.tolist(), results.lengths.tolist(), results.level_seeds.tolist(), strict=True))
    assert got == expected
    assert all(len(env.finished[i]) >= q for i, q in enumerate(quotas))
    assert all(10 <= s < 30 for s in results.level_seeds)  # the test split
    assert results.returns.dtype == np.float64 and results.lengths.dtype == np.int64


def test_run_episodes_is_reproducible_for_a_seed():
    cfg = EnvConfig(game="starpilot", num_envs=2, num_levels=10, num_threads=0)
    a = run_episodes(RandomAgent(5), cfg, "train", 2, seed=7)
    b = run_episodes(RandomAgent(5), cfg, "train", 2, seed=7)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.level_seeds, b.level_seeds)
    np.testing.assert_array_equal(a.lengths, b.lengths)
