"""ProcgenVecEnv: spaces, SB3 episode conventions, level splits, and running SB3's PPO on it."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from procgen_common.config import ConfigError, from_dict, load_config
from procgen_common.env import GAMES, EnvConfig, ProcgenVecEnv, check_game, normalized_score


def _step_random(env: ProcgenVecEnv, steps: int, seed: int = 0):
    """Step with uniform random actions; yield (prev_obs, obs, rewards, dones, infos) per step."""
    rng = np.random.default_rng(seed)
    obs = env.reset()
    for _ in range(steps):
        prev = obs.copy()
        obs, rewards, dones, infos = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        yield prev, obs, rewards, dones, infos


def test_spaces_and_observation_format():
    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=3, num_threads=0))
    try:
        assert isinstance(env.observation_space, gym.spaces.Box)
        assert env.observation_space.shape == (64, 64, 3) and env.observation_space.dtype == np.uint8
        assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 15
        assert env.num_envs == 3
        obs = env.reset()
        assert obs.dtype == np.uint8 and obs.shape == (3, 64, 64, 3)
        obs, rewards, dones, infos = env.step(np.zeros(3, dtype=np.int64))
        assert obs.dtype == np.uint8 and obs.shape == (3, 64, 64, 3)
        assert rewards.shape == (3,) and dones.shape == (3,) and dones.dtype == bool
        assert len(infos) == 3 and all("level_seed" in info for info in infos)
        assert obs.any()  # a rendered frame, not an empty buffer
    finally:
        env.close()


def test_episode_ends_follow_sb3_conventions():
    n = 3
    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=n, num_threads=2), seed=3)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=int)
    step_seeds: list[list[int]] = [[] for _ in range(n)]
    episodes = 0
    try:
        for prev, _obs, rewards, dones, infos in _step_random(env, 400):
            returns += rewards
            lengths += 1
            for i in range(n):
                step_seeds[i].append(infos[i]["level_seed"])
                if not dones[i]:
                    assert "terminal_observation" not in infos[i] and "episode" not in infos[i]
                    continue
                episodes += 1
                info = infos[i]
                # The last frame acted on, i.e. the observation returned by the previous step.
                np.testing.assert_array_equal(info["terminal_observation"], prev[i])
                ep = info["episode"]
                assert ep["r"] == pytest.approx(returns[i])
                assert ep["l"] == lengths[i]
                # Every step of the episode was played on the episode's level.
                assert set(step_seeds[i]) == {ep["level_seed"]}
                assert isinstance(info["level_complete"], bool)
                assert info["TimeLimit.truncated"] is False
                returns[i], lengths[i], step_seeds[i] = 0.0, 0, []
    finally:
        env.close()
    assert episodes >= n  # random starpilot episodes last well under 400 steps


def test_unknown_game_is_rejected_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown Procgen game 'coinrn'.*did you mean 'coinrun'"):
        ProcgenVecEnv(EnvConfig(game="coinrn", num_envs=1))
    with pytest.raises(ValueError) as info:
        check_game("starpilt")
    assert "did you mean 'starpilot'" in str(info.value)
    assert all(game in str(info.value) for game in GAMES)


# ---------------------------------------------------------------------------------------------
# Level splits
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "num", "test_start", "test_num", "ok"),
    [
        (10, 10, None, 5, True),  # default: right after the training range
        (10, 10, 20, 5, True),  # adjacent after
        (10, 10, 19, 5, False),  # one level shared at 19
        (10, 10, 5, 5, True),  # [5, 10) ends where training starts
        (10, 10, 5, 6, False),  # [5, 11) shares level 10
        (10, 10, 0, 100, False),  # contains the training range
        (10, 10, 12, 2, False),  # inside the training range
        (10, 0, 10, 5, True),  # num_levels=0: nothing is held out, nothing to check
    ],
)
def test_split_overlap_validation(start, num, test_start, test_num, ok):
    overrides = [f"start_level={start}", f"num_levels={num}", f"test_num_levels={test_num}"]
    if test_start is not None:
        overrides.append(f"test_start_level={test_start}")
    if ok:
        cfg = load_config(EnvConfig, None, overrides)
        assert cfg.held_out == (num > 0)
        return
    with pytest.raises(ConfigError) as info:
        load_config(EnvConfig, None, overrides)
    assert str(info.value).startswith("test_start_level:")


def test_level_ranges_and_held_out():
    cfg = from_dict(EnvConfig, {"start_level": 7, "num_levels": 3, "test_num_levels": 4}, "test")
    assert cfg.level_range("train") == (7, 3)
    assert cfg.level_range("test") == (10, 4)
    assert cfg.level_range("all") == (0, 0)
    assert cfg.held_out
    assert not EnvConfig(num_levels=0).held_out
    with pytest.raises(ValueError, match="split"):
        cfg.level_range("valid")


@pytest.mark.parametrize(
    ("train_range", "test_range"),
    [((0, 6), (6, 5)), ((20, 4), (3, 7))],  # test after training; test before training
)
def test_train_and_test_splits_never_share_a_level(train_range, test_range):
    cfg = EnvConfig(
        game="starpilot",
        num_envs=4,
        start_level=train_range[0],
        num_levels=train_range[1],
        test_start_level=test_range[0],
        test_num_levels=test_range[1],
        num_threads=0,
    )
    seen = {}
    for split, (lo, count) in (("train", train_range), ("test", test_range)):
        env = ProcgenVecEnv(cfg, split, seed=1)
        seeds = set()
        episode_seeds = set()
        try:
            for _, _, _, dones, infos in _step_random(env, 250, seed=2):
                seeds.update(info["level_seed"] for info in infos)
                episode_seeds.update(infos[i]["episode"]["level_seed"] for i in np.flatnonzero(dones))
        finally:
            env.close()
        assert episode_seeds, "no episode finished"
        assert episode_seeds <= seeds
        assert all(lo <= s < lo + count for s in seeds), (split, sorted(seeds))
        seen[split] = seeds
    assert not seen["train"] & seen["test"]
    assert len(seen["train"]) > 1  # several levels were actually played


def test_normalized_score_uses_paper_ranges():
    assert normalized_score(5.0, "coinrun", "easy") == 0.0
    assert normalized_score(10.0, "coinrun", "easy") == 1.0
    assert normalized_score(7.5, "coinrun", "easy") == pytest.approx(0.5)
    assert normalized_score(1.0, "coinrun", "memory") is None


# ---------------------------------------------------------------------------------------------
# stable-baselines3
# ---------------------------------------------------------------------------------------------


def test_sb3_ppo_learns_on_procgen_vec_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecTransposeImage

    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=2, num_threads=0))
    try:
        model = PPO("CnnPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
        # SB3 sees HWC uint8 images and adds the channel-first transpose itself: no manual wrapping.
        assert isinstance(model.get_env(), VecTransposeImage)
        model.learn(64)
        assert model.num_timesteps >= 64
        obs = env.reset()
        actions, _ = model.predict(obs, deterministic=True)
        assert actions.shape == (2,) and all(0 <= a < 15 for a in actions)
    finally:
        env.close()


def test_reset_twice_rebuilds_with_the_next_seed():
    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=1, num_threads=0), seed=5)
    try:
        first = env.reset()
        assert env.seed_value == 5
        again = env.reset()
        assert env.seed_value == 6
        assert not np.array_equal(first, again)  # a new level order, not the same start again
    finally:
        env.close()


def _first_frames(env: ProcgenVecEnv, steps: int = 5) -> list[np.ndarray]:
    frames = [env.reset().copy()]
    for _ in range(steps):
        frames.append(env.step(np.zeros(env.num_envs, dtype=np.int64))[0].copy())
    return frames


def test_seed_then_reset_plays_the_given_seed():
    cfg = EnvConfig(game="starpilot", num_envs=2, num_threads=0)
    fresh = ProcgenVecEnv(cfg, seed=42)
    other = ProcgenVecEnv(cfg, seed=43)
    reseeded = ProcgenVecEnv(cfg, seed=0)
    try:
        expected = _first_frames(fresh)
        # Seeds 42 and 43 start on different levels, so the comparison below can tell them apart.
        assert any(not np.array_equal(a, b) for a, b in zip(expected, _first_frames(other), strict=True))
        reseeded.seed(42)
        got = _first_frames(reseeded)
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    finally:
        for env in (fresh, other, reseeded):
            env.close()


def test_several_games_share_one_vec_env_split_evenly_in_order():
    config = EnvConfig(games=["coinrun", "starpilot", "fruitbot"], num_envs=6, num_levels=10)
    env = ProcgenVecEnv(config, "train", seed=3)
    try:
        assert env.num_envs == 6 and env.action_space.n == 15
        assert env.env_games.tolist() == ["coinrun"] * 2 + ["starpilot"] * 2 + ["fruitbot"] * 2
        env.reset()
        ended: dict[int, set] = {}
        rng = np.random.default_rng(0)
        for _ in range(1500):
            obs, _, dones, infos = env.step(rng.integers(0, 15, 6))
            assert [info["game"] for info in infos] == env.env_games.tolist()
            for i in np.flatnonzero(dones):
                ended.setdefault(i, set()).add(infos[i]["episode"]["game"])
                assert 0 <= infos[i]["episode"]["level_seed"] < 10
        assert obs.shape == (6, 64, 64, 3)
        # Every env that finished an episode finished it in its own game (starpilot and fruitbot end quickly).
        assert {i: games for i, games in ended.items()} == {i: {env.env_games[i]} for i in ended}
        assert {2, 3, 4, 5} <= set(ended)
    finally:
        env.close()


@pytest.mark.parametrize(
    "settings, culprit",
    [
        (dict(games=["coinrun", "coinrun"]), "games: coinrun is listed twice"),
        (dict(games=["coinrun", "starpilt"]), "games: unknown Procgen game 'starpilt' (did you mean 'starpilot'?)"),
        (dict(games=["coinrun", "starpilot"], num_envs=3), "num_envs: 3 environments do not divide evenly"),
        (dict(num_levels=200, test_num_levels=100, test_splits=[150]), "test_splits: the held-out levels [150, 250)"),
        (dict(num_levels=200, test_num_levels=100, test_splits=[250]), "split at 250 meets the one at 200"),
        (dict(num_levels=200, test_num_levels=100, test_splits=[400, 450]), "at 450 meets the one at 400"),
    ],
)
def test_bad_games_and_test_splits_are_refused_naming_the_key(settings, culprit):
    with pytest.raises(ValueError) as err:
        EnvConfig(**settings)
    assert culprit in str(err.value)


def test_named_held_out_splits_and_one_game_of_several():
    config = EnvConfig(games=["coinrun", "fruitbot"], num_levels=1000, test_num_levels=200, test_splits=[1200, 1400])
    assert config.held_out_splits == ["test", "test@1200", "test@1400"]
    assert [config.level_range(s) for s in config.held_out_splits] == [(1000, 200), (1200, 200), (1400, 200)]
    assert config.label == "coinrun+fruitbot"
    fruitbot = config.for_game("fruitbot")
    assert fruitbot.game_list == ["fruitbot"] and fruitbot.test_splits == [1200, 1400]
    with pytest.raises(ValueError, match="test@1600"):
        config.level_range("test@1600")
    with pytest.raises(ValueError, match="starpilot is not one of this run's games"):
        config.for_game("starpilot")


def test_a_row_set_to_a_levels_first_state_plays_exactly_as_a_new_env_of_that_level():
    config = EnvConfig(game="starpilot", num_threads=0)
    fresh = ProcgenVecEnv(dataclasses.replace(config, start_level=7, num_levels=1), num_envs=1)
    shared = ProcgenVecEnv(dataclasses.replace(config, start_level=3, num_levels=1), num_envs=3)
    first = fresh.reset()
    before = shared.reset()
    [state] = fresh.get_state()
    frames = shared.set_state([state], [1])
    assert np.array_equal(frames[0], first[0])
    assert np.array_equal(shared.get_images()[0], before[0]) and np.array_equal(shared.get_images()[2], before[2])
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(400):  # several episodes: a row moved to level 7 restarts level 7, as the new env does
        action = rng.integers(0, 15)
        obs_f, rew_f, done_f, info_f = fresh.step(np.array([action]))
        obs_s, rew_s, done_s, info_s = shared.step(np.array([0, action, 0]))
        assert np.array_equal(obs_s[1], obs_f[0]) and rew_s[1] == rew_f[0] and done_s[1] == done_f[0]
        assert info_s[1]["level_seed"] == info_f[0]["level_seed"] == 7 and info_s[0]["level_seed"] == 3
        ends += int(done_f[0])
    assert ends >= 2
    with pytest.raises(ValueError, match="2 states for 1 rows"):
        shared.set_state([state, state], [0])


def test_several_games_have_no_single_state():
    env = ProcgenVecEnv(EnvConfig(games=["bigfish", "starpilot"], num_envs=2))
    with pytest.raises(ValueError, match="several games"):
        env.get_state()
