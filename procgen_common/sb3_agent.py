"""Playing stable-baselines3 ``.zip`` models of Procgen, without running code from the file.

``PPO.load`` unpickles parts of the zip (the policy class, spaces, schedules), so loading someone
else's model could execute anything. Here only ``policy.pth`` is read, with
``torch.load(weights_only=True)``, into a freshly built ``ActorCriticCnnPolicy``; the JSON ``data``
entry is read for plain values only. This covers models trained with SB3's ``CnnPolicy`` (its
Nature CNN, any plain ``net_arch``) on this suite's ``ProcgenVecEnv`` or any Procgen env with
64x64x3 frames and 15 actions; a model with custom classes in its ``policy_kwargs`` is refused.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from procgen_common.checkpoint import CheckpointError
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import sample_actions

SUPPORTED_POLICY = "ActorCriticCnnPolicy"


class SB3Agent:
    """The suite's agent interface (``initial_state``, ``act``) over an SB3 actor-critic policy."""

    def __init__(self, policy, device: torch.device | str = "cpu"):
        self.policy = policy.eval()
        self.device = torch.device(device)
        self.generator: torch.Generator | None = None  # where sampled actions draw from (None: torch's global)

    def initial_state(self, num_envs: int) -> None:
        return None

    @torch.inference_mode()
    def act(self, obs: np.ndarray, state: None, episode_start: np.ndarray, deterministic: bool = False):
        # SB3 trained behind VecTransposeImage: the policy sees channel-first frames.
        frames = torch.as_tensor(obs, device=self.device).permute(0, 3, 1, 2)
        dist = self.policy.get_distribution(frames)
        if deterministic:
            actions = dist.mode()
        elif self.generator is None:
            actions = dist.sample()  # SB3's own draws, as before generators
        else:
            actions = sample_actions(dist.distribution.logits, self.generator)
        return actions.cpu().numpy(), None


def _readable(entry, key: str, path: Path) -> str:
    """A readable attribute SB3 writes beside a pickled object in its ``data`` JSON."""
    if not isinstance(entry, dict) or key not in entry:
        raise CheckpointError(f"{path} is not a stable-baselines3 model this suite can read (no {key} in its data)")
    return str(entry[key])


def load_sb3_agent(path: str | Path, device: torch.device | str = "cpu") -> tuple[SB3Agent, int]:
    """Load ``(agent, num_timesteps)`` from an SB3 ``.zip``; a file that is not one raises CheckpointError."""
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            weights = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"SB3 model {path} does not exist") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{path} is not a stable-baselines3 model ({type(err).__name__})") from None

    init = _readable(data.get("policy_class"), "__init__", path)
    match = re.search(r"function (\w+)\.__init__", init)
    if not match or match.group(1) != SUPPORTED_POLICY:
        found = match.group(1) if match else "unknown"
        raise CheckpointError(f"{path} holds an SB3 {found}; this suite plays {SUPPORTED_POLICY} (CnnPolicy) models")
    obs_shape = json.loads(_readable(data.get("observation_space"), "_shape", path))
    num_actions = int(_readable(data.get("action_space"), "n", path))
    if tuple(obs_shape) != (OBS_SHAPE[2], OBS_SHAPE[0], OBS_SHAPE[1]) or num_actions != NUM_ACTIONS:
        raise CheckpointError(
            f"{path} was trained on observations {obs_shape} with {num_actions} actions; Procgen needs "
            f"[3, 64, 64] (channel-first) and {NUM_ACTIONS}"
        )
    kwargs = data.get("policy_kwargs") or {}
    if ":serialized:" in kwargs:  # SB3 pickles policy_kwargs that hold classes (custom extractors, activations)
        custom = ", ".join(k for k in kwargs if not k.startswith(":"))
        raise CheckpointError(
            f"{path} has custom policy_kwargs ({custom}) that only unpickling could rebuild; "
            "this suite loads SB3 models without running code from the file"
        )
    observation_space = spaces.Box(0, 255, (OBS_SHAPE[2], OBS_SHAPE[0], OBS_SHAPE[1]), dtype=np.uint8)
    try:
        policy = ActorCriticCnnPolicy(observation_space, spaces.Discrete(NUM_ACTIONS), lambda _: 0.0, **kwargs)
        policy.load_state_dict(weights)
    except (TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit an SB3 CnnPolicy ({first})") from None
    return SB3Agent(policy.to(device), device), int(data.get("num_timesteps", -1))
