"""The learned reward: a per-frame reward r(s) (optionally r(s, a)) from uint8 Procgen frames.

The default trunk is the original T-REX network (Brown et al., 2019): four 16-channel convolutions
(7x7 stride 3, 5x5 stride 2, 3x3, 3x3) with leaky ReLU, then FC 64 and one output. Inputs are
scaled to [0, 1] inside the network (the 2020 study fed raw 0-255 values). An ensemble of K
members, each a full network from its own initialisation, gives a mean reward and a spread.

Reward-model files are suite checkpoints (``algo`` 'reward_net'): the trainer's config, whose
``reward_net`` section rebuilds the network, the ``model`` weights, and ``demos`` (game and mode
of the demos it learned from). They load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from procgen_common.checkpoint import CheckpointError, check_finite_weights, load_checkpoint, save_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import Checked, ConfigError, bounded, from_dict, to_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import ImpalaCNN, frames_to_input

ALGO = "reward_net"


@dataclass(frozen=True)
class RewardNetConfig(Checked):
    """The reward network."""

    arch: Literal["trex", "impala"] = "trex"
    """Trunk: 'trex' (the original T-REX CNN, four 16-channel convolutions) or 'impala' (the IMPALA ResNet)."""
    impala_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """Channels of the IMPALA stacks (arch=impala only)."""
    hidden_size: int = bounded(64, 1)
    """Width of the fully connected layer before the output (T-REX: 64)."""
    use_action: bool = False
    """Reward of frame and action r(s, a) (the action one-hot joins the features) instead of r(s)."""
    output: Literal["raw", "sigmoid", "tanh"] = "raw"
    """Per-frame output: 'raw' (unbounded, as T-REX trains it), or bounded by a sigmoid or tanh."""
    ensemble_size: int = bounded(1, 1)
    """Members of the ensemble, each trained on the same pairs from its own initialisation; the reward is
    their mean and their std an uncertainty estimate."""
    dropout: float = bounded(0.0, 0.0, 1.0)
    """Probability of zeroing each of the trunk's features while training (Srivastava et al., 2014), before the
    fully connected layers; a regulariser Cobbe et al. (2019) found to narrow the generalisation gap of agents on
    procedurally generated levels. Off at evaluation and in the agent's reward; must be below 1."""

    @property
    def output_center(self) -> float:
        """The middle of the output's range (0.5 for sigmoid, else 0), where train.center_coef pulls the mean reward."""
        return 0.5 if self.output == "sigmoid" else 0.0

    def validate(self) -> None:
        if not self.impala_channels or any(c < 1 for c in self.impala_channels):
            raise ValueError(f"impala_channels: {self.impala_channels} must be a non-empty list of positive ints")
        if self.dropout >= 1:
            raise ValueError(f"dropout: {self.dropout} must be below 1 (1 would zero every feature)")


class TrexCNN(nn.Module):
    """The original T-REX reward trunk: uint8 frames -> flattened conv features (leaky ReLU)."""

    def __init__(self, obs_shape: tuple[int, int, int]):
        super().__init__()
        h, w, c = obs_shape
        self.convs = nn.Sequential(
            nn.Conv2d(c, 16, 7, stride=3),
            nn.LeakyReLU(),
            nn.Conv2d(16, 16, 5, stride=2),
            nn.LeakyReLU(),
            nn.Conv2d(16, 16, 3, stride=1),
            nn.LeakyReLU(),
            nn.Conv2d(16, 16, 3, stride=1),
            nn.LeakyReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_features = self.convs(torch.zeros(1, c, h, w)).shape[1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.convs(frames_to_input(frames))


class RewardMember(nn.Module):
    """One network of the ensemble: trunk, optional action one-hot, FC hidden_size, one raw output."""

    def __init__(self, config: RewardNetConfig, obs_shape: tuple[int, int, int], num_actions: int):
        super().__init__()
        if config.arch == "impala":
            self.trunk = ImpalaCNN(obs_shape, config.impala_channels, config.hidden_size)
        else:
            self.trunk = TrexCNN(obs_shape)
        self.num_actions = num_actions if config.use_action else 0
        # Outside ``head`` so that its parameter names, and so every saved model, stay as they were without it.
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.head = nn.Sequential(
            nn.Linear(self.trunk.out_features + self.num_actions, config.hidden_size),
            nn.LeakyReLU(),
            nn.Linear(config.hidden_size, 1),
        )

    def forward(self, frames: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        features = self.dropout(self.trunk(frames))
        if self.num_actions:
            features = torch.cat([features, nn.functional.one_hot(actions, self.num_actions).float()], 1)
        return self.head(features).squeeze(-1)


class RewardNet(nn.Module):
    """Per-frame learned reward: uint8 frames ``(B, 64, 64, 3)`` (and int64 actions ``(B,)`` when
    ``use_action``) -> rewards of every member, float ``(ensemble_size, B)``."""

    def __init__(self, config: RewardNetConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(RewardMember(config, OBS_SHAPE, NUM_ACTIONS) for _ in range(config.ensemble_size))
        self.to(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.use_action and actions is None:
            raise ValueError("this reward net is r(s, a): pass the actions")
        raw = torch.stack([member(frames, actions) for member in self.members])
        if self.config.output == "sigmoid":
            return torch.sigmoid(raw)
        if self.config.output == "tanh":
            return torch.tanh(raw)
        return raw

    def reward(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """The ensemble-mean reward per frame, ``(B,)``."""
        return self(frames, actions).mean(0)


class InverseDynamics(nn.Module):
    """An auxiliary head per member that predicts the action taken between two consecutive frames from that member's
    trunk features of both: self-supervised shaping of the reward's features towards what the agent controls (the
    inverse-dynamics loss of B-REX, Brown et al., 2020). Only the trainer holds it; a saved reward model does not."""

    def __init__(self, net: RewardNet, hidden_size: int = 64):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(2 * member.trunk.out_features, hidden_size),
                nn.LeakyReLU(),
                nn.Linear(hidden_size, NUM_ACTIONS),
            )
            for member in net.members
        )

    def forward(self, net: RewardNet, frames: torch.Tensor, next_frames: torch.Tensor) -> torch.Tensor:
        """Action logits of every member, float ``(ensemble_size, B, NUM_ACTIONS)``, from uint8 frame batches
        ``(B, 64, 64, 3)`` at ``t`` and ``t + 1``; gradients reach each member's trunk."""
        logits = []
        for member, head in zip(net.members, self.heads, strict=True):
            now, after = member.trunk(torch.cat([frames, next_frames])).chunk(2)
            logits.append(head(torch.cat([now, after], 1)))
        return torch.stack(logits)


def load_reward_net(path: str | Path) -> tuple[RewardNet, dict]:
    """``(net in eval mode, checkpoint)`` from a reward-model file or a reward run folder (its reward_net.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / "reward_net.pt"
    checkpoint = load_checkpoint(path)
    if checkpoint.get("algo") != ALGO:
        raise CheckpointError(f"{path} holds a {checkpoint.get('algo')!r} model, not a reward model ('{ALGO}')")
    try:
        config = from_dict(RewardNetConfig, checkpoint["config"]["reward_net"], f"in {path}")
        net = RewardNet(config)
        net.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: not a usable reward model ({first})") from None
    check_finite_weights(checkpoint["model"], path)
    return net.eval(), checkpoint


def stack_reward_nets(paths: list[str | Path], out: str | Path) -> Path:
    """Save as one ensemble the members of several reward models of one game and network (e.g. the same trainer run
    with different seeds): its reward is the mean of theirs, and its recorded per-frame mean (``reward.center``)
    the mean of theirs. Models of different games, modes or networks, and an ``out`` that exists, are refused with a
    ``UserError``. The ensemble records the union of its members' training demos (``demo_ids``)."""
    if len(paths) < 2:
        raise UserError(f"stack: {len(paths)} model(s) given; an ensemble needs at least 2")
    if Path(out).exists():  # never over an earlier result, e.g. one of the models being stacked
        raise UserError(f"stack: {out} exists; choose a new file for the ensemble")
    loaded = [load_reward_net(path) for path in paths]
    config, first_checkpoint = loaded[0][0].config, loaded[0][1]
    for path, (net, checkpoint) in zip(paths[1:], loaded[1:], strict=True):
        if dataclasses.replace(net.config, ensemble_size=1) != dataclasses.replace(config, ensemble_size=1):
            raise UserError(f"{path}: its reward_net settings differ from {paths[0]}'s; only one network can stack")
        if checkpoint.get("demos", {}).get("game") != first_checkpoint.get("demos", {}).get("game"):
            raise UserError(f"{path}: learned from another game's demos than {paths[0]}")
    stacked = RewardNet(dataclasses.replace(config, ensemble_size=sum(len(net.members) for net, _ in loaded)))
    stacked.members = nn.ModuleList(member for net, _ in loaded for member in net.members)
    means = [checkpoint.get("reward_per_frame", {}).get("mean") for _, checkpoint in loaded]
    # Members trained with different seeds draw different demos (data.num_demos): the ensemble learned from all of
    # them, which a demo budget has to count.
    demo_ids = list(dict.fromkeys(i for _, checkpoint in loaded for i in checkpoint.get("demo_ids", [])))
    save_checkpoint(
        out,
        {
            **{key: first_checkpoint[key] for key in ("algo", "step", "mean_return", "demos")},
            "config": {**first_checkpoint["config"], "reward_net": to_dict(stacked.config)},
            "model": stacked.state_dict(),
            "stacked_from": [str(path) for path in paths],
            **({"demo_ids": demo_ids} if demo_ids else {}),
            **({"reward_per_frame": {"mean": sum(means) / len(means)}} if None not in means else {}),
        },
    )
    return Path(out)


def save_untrained_reward_net(
    path: str | Path, config: RewardNetConfig, game: str, distribution_mode: str = "easy", seed: int = 0
) -> Path:
    """Save a freshly initialised reward model in the format ``trex.train_reward`` writes (for tests and speed
    benchmarks, where the weights do not matter)."""
    torch.manual_seed(seed)
    save_checkpoint(
        path,
        {
            "algo": ALGO,
            "step": 0,
            "mean_return": None,
            "config": {"reward_net": to_dict(config)},
            "model": RewardNet(config).state_dict(),
            "demos": {"game": game, "distribution_mode": distribution_mode},
        },
    )
    return Path(path)
