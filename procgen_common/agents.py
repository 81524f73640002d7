"""Loading any saved agent of the suite from a checkpoint file or a run folder.

Each checkpoint names its ``algo``; ``AGENT_LOADERS`` maps that name to the function that
rebuilds the agent. Loaders are named as ``module:function`` strings and imported on use, so
this shared module does not import the packages that build on it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from procgen_common.checkpoint import CheckpointError, check_finite_weights, load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig, check_game
from procgen_common.networks import ActorCritic, FeedForwardAgent, ModelConfig

AGENT_LOADERS = {
    "ppo": "procgen_common.agents:load_ppo_agent",
    "ppo_gru": "policies.ppo_gru:load_ppo_gru_agent",
    "rainbow": "policies.rainbow:load_rainbow_agent",
    "sb3_ppo": "policies.sb3_ppo:load_sb3_ppo_agent",
}


class RandomAgent:
    """Uniform random actions, with the agents' interface: the floor every learned policy must beat."""

    def __init__(self, seed: int = 0, num_actions: int = NUM_ACTIONS):
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs, state, episode_start, deterministic: bool = False):
        return self.rng.integers(0, self.num_actions, len(obs)), None


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


def load_ppo_agent(checkpoint: dict, device: torch.device | str = "cpu") -> FeedForwardAgent:
    model_config = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    net = ActorCritic(model_config, OBS_SHAPE, NUM_ACTIONS)
    net.load_state_dict(checkpoint["model"])
    return FeedForwardAgent(net.to(device), device)


def load_agent(path: str | Path, device: torch.device | str = "cpu"):
    """Load ``(agent, checkpoint, env_config)`` from a checkpoint file or run folder."""
    path = resolve_checkpoint(path)
    checkpoint = load_checkpoint(path)
    algo = checkpoint.get("algo")
    if algo not in AGENT_LOADERS:
        raise CheckpointError(f"{path} holds an agent of kind {algo!r}; this suite loads {', '.join(AGENT_LOADERS)}")
    check_finite_weights(checkpoint.get("model") or {}, path)
    module, function = AGENT_LOADERS[algo].split(":")
    loader = getattr(importlib.import_module(module), function)
    try:
        agent = loader(checkpoint, device)
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit a {algo} agent ({first})") from None
    return agent, checkpoint, env_config_of(checkpoint, path)
