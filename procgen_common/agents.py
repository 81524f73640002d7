"""Loading any saved agent of the suite from a checkpoint file or a run folder.

Each checkpoint names its ``algo``, the kind of agent it holds. The demonstrator's ``ppo`` loads here (its
network is the shared ``ActorCritic``). Every other kind is defined in a layer above, which declares its
loader, ``load(checkpoint, device) -> agent``, as an entry point of the group ``procgen_trex.agents`` in
pyproject.toml (its registry of algorithms says why): the installed package's metadata names it, and it is
imported only when a checkpoint of its kind is loaded, so this module names none of those layers and every
caller loads every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import torch

from procgen_common.checkpoint import CheckpointError, check_finite_weights, load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig, check_game
from procgen_common.networks import ActorCritic, ModelConfig, PolicyAgent

AGENT_ENTRY_POINTS = "procgen_trex.agents"


def agent_kinds() -> list[str]:
    """The kinds of agent this suite loads: ``ppo`` and those declared under ``AGENT_ENTRY_POINTS``."""
    return ["ppo", *sorted(entry_points(group=AGENT_ENTRY_POINTS).names)]


def agent_loader(algo: str) -> Callable | None:
    """The function that rebuilds an agent of kind ``algo`` from its checkpoint, or None for an unknown kind."""
    if algo == "ppo":
        return load_ppo_agent
    declared = list(entry_points(group=AGENT_ENTRY_POINTS, name=algo)) if isinstance(algo, str) else []
    return declared[0].load() if declared else None


class RandomAgent:
    """Uniform random actions, with the agents' interface: the floor every learned policy must beat."""

    def __init__(self, seed: int = 0, num_actions: int = NUM_ACTIONS):
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, episode_start, deterministic: bool = False):
        return self.rng.integers(0, self.num_actions, len(obs)), None


class NoisyAgent:
    """An agent whose every action is replaced, with probability ``epsilon``, by a uniform random one: a rung of a
    D-REX noise ladder (Brown et al. 2019b) played outside demo generation, e.g. to evaluate the best demonstration.

    The noise comes from a generator of its own (seeded by ``seed``), so the wrapped agent draws the same random
    numbers as it does unwrapped.
    """

    def __init__(self, agent, epsilon: float, seed: int = 0, num_actions: int = NUM_ACTIONS):
        self.agent = agent
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def initial_state(self, num_envs: int):
        return self.agent.initial_state(num_envs)

    def act(self, obs, state, episode_start, deterministic: bool = False):
        actions, state = self.agent.act(obs, state, episode_start, deterministic)
        actions = np.asarray(actions).copy()
        noisy = self.rng.random(len(actions)) < self.epsilon
        actions[noisy] = self.rng.integers(0, self.num_actions, int(noisy.sum()))
        return actions, state


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run folder's ``checkpoints/latest.pt``."""
    path = Path(path)
    if path.is_dir():
        latest = path / "checkpoints" / "latest.pt"
        if not latest.is_file():
            raise UserError(f"{path} is a folder without checkpoints/latest.pt; pass a run folder or a checkpoint file")
        return latest
    if not path.exists():
        raise UserError(f"{path} does not exist; pass a run folder or a checkpoint file")
    return path


def env_config_of(checkpoint: dict, path: Path) -> EnvConfig:
    """The training env config saved in a checkpoint."""
    try:
        env = from_dict(EnvConfig, checkpoint["config"]["env"], f"in {path}")
        check_game(env.game)
        return env
    except (KeyError, TypeError, ValueError) as err:  # ConfigError, and an unknown game, are ValueErrors
        raise CheckpointError(f"{path} has no usable env config ({err})") from None


def load_ppo_agent(checkpoint: dict, device: torch.device | str = "cpu") -> PolicyAgent:
    model_config = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    net = ActorCritic(model_config, OBS_SHAPE, NUM_ACTIONS)
    net.load_state_dict(checkpoint["model"])
    return PolicyAgent(net.to(device), device)


def load_agent(path: str | Path, device: torch.device | str = "cpu"):
    """Load ``(agent, checkpoint, env_config)`` from a checkpoint file or run folder."""
    path = resolve_checkpoint(path)
    checkpoint = load_checkpoint(path)
    algo = checkpoint.get("algo")
    loader = agent_loader(algo)
    if loader is None:
        kinds = agent_kinds()
        missing = " (the others once the suite is installed: pip install -e .)" if kinds == ["ppo"] else ""
        raise CheckpointError(f"{path} holds an agent of kind {algo!r}; this suite loads {', '.join(kinds)}{missing}")
    check_finite_weights(checkpoint.get("model") or {}, path)
    try:
        agent = loader(checkpoint, device)
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit a {algo} agent ({first})") from None
    return agent, checkpoint, env_config_of(checkpoint, path)
