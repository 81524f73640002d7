"""Loading saved agents: the same actions as the saved network, and clear errors for bad paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procgen_common.agents import NoisyAgent, load_agent, resolve_checkpoint
from procgen_common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig, ProcgenVecEnv
from procgen_common.networks import ActorCritic, ModelConfig


def _frames(env_config: EnvConfig, steps: int = 20) -> np.ndarray:
    """A batch of real frames: 4 envs x a few steps of random play."""
    env = ProcgenVecEnv(env_config, "train", num_envs=4, seed=11)
    rng = np.random.default_rng(0)
    frames = [env.reset().copy()]
    try:
        for _ in range(steps):
            frames.append(env.step(rng.integers(0, NUM_ACTIONS, 4))[0].copy())
    finally:
        env.close()
    return np.concatenate(frames)


def _rebuild(checkpoint: dict) -> ActorCritic:
    net = ActorCritic(from_dict(ModelConfig, checkpoint["config"]["model"], "test"), OBS_SHAPE, NUM_ACTIONS)
    net.load_state_dict(checkpoint["model"])
    return net.eval()


def test_loaded_agent_acts_like_the_saved_network(tiny_run):
    path = tiny_run / "checkpoints" / "latest.pt"
    agent, checkpoint, env_config = load_agent(path)
    assert checkpoint["step"] == load_checkpoint(path)["step"]
    assert env_config == from_dict(EnvConfig, checkpoint["config"]["env"], "test")
    frames = _frames(env_config)
    reference = _rebuild(load_checkpoint(path))
    with torch.no_grad():
        expected_logits, expected_values = reference(torch.from_numpy(frames))
        logits, values = agent.net(torch.from_numpy(frames))
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0)
    starts = np.zeros(len(frames), dtype=bool)
    actions, state = agent.act(frames, agent.initial_state(len(frames)), starts, deterministic=True)
    assert state is None
    np.testing.assert_array_equal(actions, expected_logits.argmax(-1).numpy())
    again, _ = agent.act(frames, None, starts, deterministic=True)
    np.testing.assert_array_equal(actions, again)
    sampled, _ = agent.act(frames, None, starts, deterministic=False)
    assert sampled.shape == (len(frames),) and ((sampled >= 0) & (sampled < NUM_ACTIONS)).all()


def test_trained_weights_differ_from_the_initial_ones(tiny_run):
    folder = tiny_run / "checkpoints"
    initial, _, env_config = load_agent(folder / "step_000000000.pt")
    final, _, _ = load_agent(folder / "latest.pt")
    frames = torch.from_numpy(_frames(env_config, steps=3))
    with torch.no_grad():
        assert not torch.equal(initial.net(frames)[0], final.net(frames)[0])


def test_run_folder_resolves_to_latest(tiny_run):
    assert resolve_checkpoint(tiny_run) == tiny_run / "checkpoints" / "latest.pt"
    _, from_folder, _ = load_agent(tiny_run)
    assert from_folder["step"] == load_checkpoint(tiny_run / "checkpoints" / "latest.pt")["step"]


def test_bad_paths_and_files(tmp_path, tiny_run):
    with pytest.raises(UserError, match="does not exist"):
        load_agent(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="without checkpoints/latest.pt"):
        load_agent(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("# not a checkpoint\n")
    with pytest.raises(CheckpointError):
        load_agent(text)
    good = load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    other = {k: v for k, v in good.items() if k not in ("format", "version")}
    save_checkpoint(tmp_path / "dqn.pt", {**other, "algo": "dqn"})
    with pytest.raises(CheckpointError, match="kind 'dqn'"):
        load_agent(tmp_path / "dqn.pt")
    # The kinds listed are the demonstrator's and those the layers above declare (pyproject.toml's entry points).
    with pytest.raises(CheckpointError, match="this suite loads ppo, ppo_gru, rainbow, sb3_ppo$"):
        load_agent(tmp_path / "dqn.pt")
    # Weights of another shape (a wider hidden layer in the config than in the weights).
    config = {**good["config"], "model": {**good["config"]["model"], "hidden_size": 64}}
    save_checkpoint(tmp_path / "misfit.pt", {**other, "config": config})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_agent(tmp_path / "misfit.pt")
    save_checkpoint(tmp_path / "noenv.pt", {**other, "config": {"model": good["config"]["model"]}})
    with pytest.raises(CheckpointError, match="no usable env config"):
        load_agent(tmp_path / "noenv.pt")


class _Fixed:
    """An agent that always plays action 3 and counts its calls."""

    def __init__(self):
        self.calls = 0

    def initial_state(self, num_envs):
        return "state"

    def act(self, obs, state, episode_start, deterministic=False):
        self.calls += 1
        return np.full(len(obs), 3), state


def _noisy_actions(epsilon: float, seed: int = 0, steps: int = 200, rows: int = 32) -> np.ndarray:
    agent = NoisyAgent(_Fixed(), epsilon, seed)
    state = agent.initial_state(rows)
    assert state == "state"
    obs = np.zeros((rows, 1), np.uint8)
    return np.concatenate([agent.act(obs, state, np.zeros(rows, bool))[0] for _ in range(steps)])


def test_a_noisy_agent_replaces_epsilon_of_its_actions_by_uniform_ones():
    assert (_noisy_actions(0.0) == 3).all()  # epsilon 0 is the agent as it is
    counts = np.bincount(_noisy_actions(1.0), minlength=NUM_ACTIONS)
    expected = counts.sum() / NUM_ACTIONS
    assert ((counts - expected) ** 2 / expected).sum() < 36.1  # chi-square, 14 dof, p = 0.001: uniform
    half = _noisy_actions(0.5)
    replaced = 0.5 * (1 - 1 / NUM_ACTIONS)  # a random action is the agent's own 1 time in 15
    assert abs((half != 3).mean() - replaced) < 0.03
    assert (_noisy_actions(0.5, seed=1) == _noisy_actions(0.5, seed=1)).all()
    assert (_noisy_actions(0.5, seed=1) != half).any()
