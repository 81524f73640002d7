"""The registry of algorithms: one entry per algorithm drives training, loading and resuming; the shared layer
finds the loaders without naming this package; the harness resumes every env wrapper's state."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import torch

from baseline_agent.ppo import RewardScaler
from policies.registry import ALGORITHMS
from policies.reward_wrapper import RewardConfig, reward_wrapper
from policies.train import AgentConfig
from procgen_common.agents import agent_kinds, agent_loader, load_agent
from procgen_common.checkpoint import load_checkpoint
from procgen_common.env import EnvConfig, ProcgenVecEnv
from procgen_common.training_run import stateful_wrappers
from tests.conftest import REPO
from tests.policies.conftest import ALGOS, NUM_ENVS, TOTAL_STEPS, policy_config, train_policy


def test_the_registry_holds_every_algorithm_and_drives_the_choices():
    assert tuple(ALGORITHMS) == ALGOS
    assert typing.get_args(typing.get_type_hints(AgentConfig)["algo"]) == ALGOS
    for name, algorithm in ALGORITHMS.items():
        assert algorithm.name == name
        assert algorithm.resume_sections[:2] == ("env", "model")
        assert {"agent", "reward"} <= set(algorithm.resume_sections)
        assert algorithm.section is None or algorithm.section in algorithm.resume_sections


def test_the_shared_layer_finds_exactly_the_registry_loaders():
    """pyproject.toml's entry points name the registry's loaders (re-run `pip install -e .` after editing them)."""
    assert agent_kinds() == list(ALGORITHMS)
    assert {kind: agent_loader(kind) for kind in agent_kinds()} == {n: a.load_agent for n, a in ALGORITHMS.items()}
    assert agent_loader("dqn") is None


def test_the_shared_layer_names_no_policies_module():
    # "policies" on its own, not SB3's stable_baselines3.common.policies.
    named = re.compile(r"(?<![.\w])policies\b")
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((REPO / "procgen_common").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if named.search(line)
    ]
    assert hits == []


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_and_its_checkpoint_loads_through_the_shared_layer(tmp_path, algo):
    run_dir = train_policy(tmp_path / "run", algo)
    agent, checkpoint, env_config = load_agent(run_dir)
    assert checkpoint["algo"] == algo and checkpoint["step"] == TOTAL_STEPS
    assert env_config.game == "starpilot"
    assert type(agent) is type(ALGORITHMS[algo].load_agent(load_checkpoint(run_dir / "checkpoints" / "latest.pt")))
    env = ProcgenVecEnv(EnvConfig(num_envs=2, num_threads=0), num_envs=2, seed=1)
    try:
        actions, _ = agent.act(env.reset(), agent.initial_state(2), [True, True], deterministic=True)
    finally:
        env.close()
    assert actions.shape == (2,)


def _scaled_learned_reward(reward_model: Path):
    """A wrap_env putting a scaled learned reward on the env (policies.train allows reward.scale for rainbow only;
    the harness must resume it under any algorithm)."""
    return reward_wrapper(RewardConfig("learned", str(reward_model), scale=True), EnvConfig(), 0.99, "cpu")


def test_only_wrappers_whose_class_has_state_are_found(reward_model):
    from stable_baselines3.common.vec_env import VecNormalize

    env = ProcgenVecEnv(EnvConfig(num_envs=2, num_threads=0), num_envs=2, seed=1)
    try:
        assert stateful_wrappers(env) == {}
        wrapped = _scaled_learned_reward(reward_model)(env)
        # VecNormalize forwards state_dict down to the reward wrapper, but is not itself stateful here.
        outer = VecNormalize(wrapped, norm_obs=False)
        assert hasattr(outer, "state_dict")
        assert stateful_wrappers(outer) == {"reward_wrapper": wrapped}
    finally:
        env.close()


@pytest.mark.parametrize("algo", ALGOS)
def test_resume_restores_the_reward_wrappers_scaler(tmp_path, algo, reward_model):
    run_dir = tmp_path / "run"
    algorithm = ALGORITHMS[algo]

    def run(*extra: str) -> dict:
        config = policy_config(run_dir, algo, *extra)
        algorithm.train(config, _scaled_learned_reward(reward_model), algorithm.resume_sections)
        torch.set_num_threads(1)
        return load_checkpoint(run_dir / "checkpoints" / "latest.pt")

    first = run()
    latest = run(f"train.total_steps={2 * TOTAL_STEPS}", "train.resume=true")
    # The scaler counts one batch of NUM_ENVS returns per vector step (plus a 1e-4 prior): a fresh one after the
    # resume would have counted only the resumed steps.
    steps = TOTAL_STEPS // NUM_ENVS
    assert first["reward_wrapper"]["scaler"]["count"] == pytest.approx(steps * NUM_ENVS, abs=1e-3)
    assert latest["reward_wrapper"]["scaler"]["count"] == pytest.approx(2 * steps * NUM_ENVS, abs=1e-3)
    assert set(latest["reward_wrapper"]["scaler"]) == set(RewardScaler(NUM_ENVS, 0.99, 10.0).state_dict())
