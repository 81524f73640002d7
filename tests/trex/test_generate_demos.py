"""Demo generation on a tiny real checkpoint series: exact levels, pre-action frames, resuming, SB3 models."""

from __future__ import annotations

import numpy as np
import pytest

from procgen_common.checkpoint import CheckpointError
from procgen_common.cli import UserError
from procgen_common.config import load_config
from procgen_common.env import EnvConfig, ProcgenVecEnv
from trex.demos import DemoSet, read_index
from trex.generate_demos import Config, generate, level_env_config
from trex.sb3_agent import load_sb3_agent


def _config(*overrides: str) -> Config:
    return load_config(Config, None, ["torch_threads=1", "device=cpu", *overrides])


@pytest.fixture(scope="module")
def demo_dir(demonstrator_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "demos"
    generate(
        _config(
            f"checkpoints={demonstrator_run}",
            "train_levels=[3,5]",
            "test_levels=[150]",
            "episodes_per_level=2",
            f"out_dir={out}",
        )
    )
    return out


def _replay(info, demo):
    """Play the demo's actions on a fresh one-level env: (frames seen, rewards, done flags)."""
    env = ProcgenVecEnv(level_env_config(EnvConfig(game=info.game), info.level_seed), num_envs=1, seed=99)
    frames, rewards, dones = [], [], []
    try:
        obs = env.reset()
        for action in demo.actions:
            frames.append(obs[0].copy())
            obs, reward, done, _ = env.step(np.array([action]))
            rewards.append(reward[0])
            dones.append(done[0])
    finally:
        env.close()
    return np.stack(frames), np.array(rewards, np.float32), np.array(dones)


def test_index_lists_every_checkpoint_on_exactly_the_requested_levels(demo_dir):
    infos = read_index(demo_dir)
    assert len(infos) == 2 * 3 * 2  # checkpoints x levels x episodes
    assert len({i.demo_id for i in infos}) == len(infos)
    assert {(i.split, i.level_seed) for i in infos} == {("train", 3), ("train", 5), ("test", 150)}
    assert {(i.checkpoint, i.checkpoint_step) for i in infos} == {("step_000000000", 0), ("step_000000128", 128)}
    assert {i.episode for i in infos} == {0, 1}
    assert {(i.game, i.distribution_mode, i.agent) for i in infos} == {("starpilot", "easy", "ppo")}
    assert all((demo_dir / i.file).is_file() for i in infos) and (demo_dir / "config.yaml").is_file()


def test_demos_replay_exactly_with_pre_action_frames(demo_dir):
    demo_set = DemoSet.open(demo_dir)
    for info in demo_set.infos:
        demo = demo_set.load(info)
        assert demo.obs.dtype == np.uint8 and demo.obs.shape == (info.length, 64, 64, 3)
        frames, rewards, dones = _replay(info, demo)
        # Same level and same frames: obs[t] is the frame action t was chosen on, the rewards are the game's,
        # and the episode ended on the last stored action (so no frame of the next episode is stored).
        np.testing.assert_array_equal(demo.obs, frames)
        np.testing.assert_array_equal(demo.rewards, rewards)
        assert info.episode_return == pytest.approx(float(rewards.sum()))
        assert not dones[:-1].any() and dones[-1] != info.truncated


def test_rerun_skips_demos_already_written(demo_dir, demonstrator_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in demo_dir.glob("*.npz")}
    index = read_index(demo_dir)
    generate(
        _config(
            f"checkpoints={demonstrator_run}",
            "train_levels=[3,5]",
            "test_levels=[150]",
            "episodes_per_level=2",
            f"out_dir={demo_dir}",
        )
    )
    assert "0 new demos, 12 in" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in demo_dir.glob("*.npz")} == before
    assert read_index(demo_dir) == index
    with pytest.raises(UserError, match="played with epsilon=0.0"):
        generate(
            _config(
                f"checkpoints={demonstrator_run}",
                "train_levels=[3]",
                "test_levels=[]",
                "epsilon=0.5",
                f"out_dir={demo_dir}",
            )
        )


def test_default_levels_out_dir_and_truncation(demonstrator_run):
    checkpoints = demonstrator_run / "checkpoints"
    out = generate(_config(f"checkpoints={checkpoints}", "num_train_levels=1", "num_test_levels=1", "max_length=5"))
    assert out == demonstrator_run / "demos"
    infos = read_index(out)
    # The tiny run trains on levels [0, 20); its test split starts right after (tests/conftest.py).
    assert {(i.split, i.level_seed) for i in infos} == {("train", 0), ("test", 20)}
    assert all(i.truncated and i.length == 5 for i in infos)


def test_bad_checkpoint_sources_are_named(tmp_path, demonstrator_run):
    with pytest.raises(UserError, match="holds no step_.*pt checkpoints or SB3 .zip models"):
        generate(_config(f"checkpoints={tmp_path}", f"out_dir={tmp_path}/d"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="neither a .pt checkpoint nor an SB3 .zip model"):
        generate(_config(f"checkpoints={tmp_path}/notes.txt", f"out_dir={tmp_path}/d"))
    with pytest.raises(UserError, match="train_levels.*list the level seeds|exceeds the run's 20 training levels"):
        generate(_config(f"checkpoints={demonstrator_run}", "num_train_levels=21", f"out_dir={tmp_path}/d"))
    with pytest.raises(UserError, match="fruitbot was asked for"):
        generate(_config(f"checkpoints={demonstrator_run}", "game=fruitbot", f"out_dir={tmp_path}/d"))


def test_sb3_models_play_like_sb3_and_make_demos(tmp_path):
    import torch
    from stable_baselines3 import PPO

    env = ProcgenVecEnv(EnvConfig(game="starpilot", num_envs=2, num_threads=0))
    try:
        model = PPO("CnnPolicy", env, n_steps=16, seed=0, device="cpu")
        model.save(tmp_path / "models" / "sb3_a.zip")
        obs = env.reset()
        expected, _ = model.predict(obs, deterministic=True)
        custom = PPO("CnnPolicy", env, n_steps=16, seed=0, device="cpu", policy_kwargs={"activation_fn": torch.nn.ReLU})
        custom.save(tmp_path / "custom.zip")
    finally:
        env.close()
    agent, step = load_sb3_agent(tmp_path / "models" / "sb3_a.zip")
    assert step == 0
    actions, _ = agent.act(obs, None, np.ones(2, bool), deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    with pytest.raises(CheckpointError, match="custom policy_kwargs \\(activation_fn\\)"):
        load_sb3_agent(tmp_path / "custom.zip")
    with pytest.raises(UserError, match="set game="):
        generate(_config(f"checkpoints={tmp_path / 'models'}", f"out_dir={tmp_path}/d"))

    out = generate(
        _config(
            f"checkpoints={tmp_path / 'models'}",
            "game=starpilot",
            "train_levels=[7]",
            "test_levels=[]",
            "max_length=20",
            f"out_dir={tmp_path}/d",
        )
    )
    (info,) = read_index(out)
    assert (info.agent, info.checkpoint, info.checkpoint_step, info.level_seed) == ("sb3", "sb3_a", 0, 7)
