"""The suite's networks: IMPALA and Nature CNN encoders and the actor-critic built on them.

Encoders take uint8 frames ``(batch, 64, 64, 3)`` straight from the environment and scale them
to [0, 1] themselves, so callers never hold a float copy of a batch of frames. The HWC -> CHW
permute leaves the tensor channels_last in memory, and the convolutions are kept channels_last
too: on these CPUs that made IMPALA convolutions about 3x faster than NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from procgen_common.config import Checked, bounded


@dataclass(frozen=True)
class ModelConfig(Checked):
    """The policy network."""

    arch: Literal["impala", "nature"] = "impala"
    """Encoder: 'impala' (the Procgen paper's IMPALA ResNet) or 'nature' (DQN's 3-layer CNN, fast on CPU)."""
    impala_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """Channels of the IMPALA stacks (the paper's 16/32/32)."""
    hidden_size: int = bounded(256, 1)
    """Width of the fully connected layer after the convolutions."""

    def validate(self) -> None:
        if not self.impala_channels or any(c < 1 for c in self.impala_channels):
            raise ValueError(f"impala_channels: {self.impala_channels} must be a non-empty list of positive ints")


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` -> float ``(B, C, H, W)`` in [0, 1], channels_last in memory.

    Under autocast the frames go straight to the autocast dtype (bfloat16): half the memory traffic
    of a float32 copy, and the first convolution need not cast its input again.
    """
    device = frames.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    return frames.permute(0, 3, 1, 2).to(dtype).mul_(1.0 / 255.0)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStack(nn.Module):
    """Conv, 3x3 max-pool with stride 2, two residual blocks (Espeholt et al., 2018)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0 = ResidualBlock(channels)
        self.res1 = ResidualBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(nn.Module):
    """IMPALA ResNet encoder: uint8 frames -> ``hidden_size`` features."""

    def __init__(self, obs_shape: tuple[int, int, int], channels: list[int], hidden_size: int):
        super().__init__()
        h, w, c = obs_shape
        stacks = []
        for out in channels:
            stacks.append(ImpalaStack(c, out))
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.stacks = nn.Sequential(*stacks)
        self.fc = nn.Linear(c * h * w, hidden_size)
        self.out_features = hidden_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.stacks(frames_to_input(frames))
        return torch.relu(self.fc(torch.relu(x).flatten(1)))


def space_to_depth_conv(frames: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` (kernel 2s, stride s) on uint8 frames, computed as a 2x2 stride-1 convolution on s x s blocks.

    Exactly the same function and parameters as ``conv(frames_to_input(frames))``: each s x s block of
    pixels becomes one position with s*s*C channels and the kernel is rearranged to match. Under bf16
    autocast the 3-channel, stride-4 first layer of the Nature CNN is the slowest layer to train on
    CPU (oneDNN's weight gradient for it); as a 48-channel 2x2 convolution it trains 1.5x faster and
    the whole network about 1.3x. In fp32 the direct convolution is as fast, so it stays.
    """
    batch, height, width, channels = frames.shape
    s = conv.stride[0]
    # Block channels ordered (row in block, column in block, colour): each block row is then one
    # contiguous run of s * C bytes in the frame, which keeps this rearranging copy cheap.
    blocks = frames.view(batch, height // s, s, width // s, s, channels).permute(0, 1, 3, 2, 4, 5)
    x = frames_to_input(blocks.reshape(batch, height // s, width // s, s * s * channels))
    out_channels = conv.weight.shape[0]
    weight = conv.weight.view(out_channels, channels, 2, s, 2, s).permute(0, 3, 5, 1, 2, 4)
    weight = weight.reshape(out_channels, channels * s * s, 2, 2)
    return nn.functional.conv2d(x, weight.contiguous(memory_format=torch.channels_last), conv.bias)


class NatureCNN(nn.Module):
    """The DQN Nature encoder (Mnih et al., 2015), the same layers as SB3's ``NatureCNN``."""

    def __init__(self, obs_shape: tuple[int, int, int], hidden_size: int):
        super().__init__()
        h, w, c = obs_shape
        self.conv1 = nn.Conv2d(c, 32, 8, stride=4)
        self.convs = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.convs(self.conv1(torch.zeros(1, c, h, w))).shape[1]
        self.fc = nn.Linear(n_flat, hidden_size)
        self.out_features = hidden_size
        # The block trick needs frames that tile into stride x stride blocks.
        self.tiles = h % 4 == 0 and w % 4 == 0

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.tiles and torch.is_autocast_enabled(frames.device.type):
            x = space_to_depth_conv(frames, self.conv1)
        else:
            x = self.conv1(frames_to_input(frames))
        return torch.relu(self.fc(self.convs(x)))


def make_encoder(config: ModelConfig, obs_shape: tuple[int, int, int]) -> nn.Module:
    if config.arch == "impala":
        return ImpalaCNN(obs_shape, config.impala_channels, config.hidden_size)
    return NatureCNN(obs_shape, config.hidden_size)


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class PolicyNet(nn.Module):
    """An actor-critic over sequences: what PPO (``baseline_agent.train.train_ppo``) needs of a network.

    Frames come as ``(T, N)``: T steps of N environments. A feed-forward net (``recurrent = False``) has no
    state and scores every step alone; a recurrent one carries its state from step to step, zeroed where an
    episode starts, so its updates replay whole sequences from the state they began with.
    """

    recurrent = False

    def initial_state(self, num_envs: int, device: torch.device) -> torch.Tensor | None:
        """The state before any episode, ``(N, ...)``; None for a feed-forward net."""
        return None

    def unroll(
        self, frames: torch.Tensor, state: torch.Tensor | None, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """uint8 frames ``(T, N, H, W, C)``, the state before step 0 and bool ``episode_starts`` ``(T, N)`` ->
        action logits ``(T, N, A)``, values ``(T, N)`` and the state after the last step."""
        raise NotImplementedError

    def agent(self, device: torch.device) -> PolicyAgent:
        """The agents' interface (``initial_state``, ``act``) over this net, for evaluation."""
        return PolicyAgent(self, device)


class ActorCritic(PolicyNet):
    """Shared encoder with a categorical policy head and a value head."""

    def __init__(self, config: ModelConfig, obs_shape: tuple[int, int, int], num_actions: int):
        super().__init__()
        self.encoder = make_encoder(config, obs_shape)
        # Small policy-head init keeps the first policy near uniform (Andrychowicz et al., 2021).
        self.policy_head = orthogonal_init(nn.Linear(self.encoder.out_features, num_actions), 0.01)
        self.value_head = orthogonal_init(nn.Linear(self.encoder.out_features, 1), 1.0)
        self.to(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames -> (action logits, state values)."""
        features = self.encoder(frames)
        return self.policy_head(features), self.value_head(features).squeeze(-1)

    def unroll(self, frames, state, episode_starts):
        logits, values = self(frames.flatten(0, 1))
        return logits.unflatten(0, frames.shape[:2]), values.unflatten(0, frames.shape[:2]), None


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample from the categorical distributions given by ``logits`` (Gumbel-max: one kernel, no Categorical),
    drawing from ``generator`` (None: torch's global one)."""
    noise = torch.empty_like(logits).exponential_(generator=generator).log_()
    return (logits - noise).argmax(-1)


class PolicyAgent:
    """Acts with a ``PolicyNet`` on numpy frames: the interface evaluation, demos and video use.

    Agents expose ``initial_state(num_envs)`` and ``act(obs, state, episode_start, deterministic) -> (actions,
    state)``. One step is an unroll of length 1; the state is the net's (None for a feed-forward net). Sampled
    actions draw from ``generator`` (None: torch's global one), so players in several threads each keep their own
    stream.
    """

    def __init__(self, net: PolicyNet, device: torch.device | str = "cpu"):
        self.net = net.eval()
        self.device = torch.device(device)
        self.generator: torch.Generator | None = None

    def initial_state(self, num_envs: int) -> torch.Tensor | None:
        return self.net.initial_state(num_envs, self.device)

    @torch.inference_mode()
    def act(self, obs: np.ndarray, state: torch.Tensor | None, episode_start: np.ndarray, deterministic: bool = False):
        frames = torch.as_tensor(obs, device=self.device)[None]
        starts = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=self.device)[None]
        logits, _, state = self.net.unroll(frames, state, starts)
        actions = logits[0].argmax(-1) if deterministic else sample_actions(logits[0], self.generator)
        return actions.cpu().numpy(), state
