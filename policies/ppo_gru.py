"""Recurrent PPO: the suite's encoder, a GRU on its features, policy and value heads on the GRU's output.

The hidden state is reset to zero where an episode starts. Training is the demonstrator's PPO loop
(``baseline_agent.train.train_ppo``), which replays minibatches of whole environments through the GRU from
the hidden state saved at the start of the rollout (truncated backpropagation through time).

``gru_sequence`` is the pure piece: a GRU over a ``(T, N)`` sequence with resets, equal to stepping it
one step at a time. ``gru_gate_stats`` recomputes the GRU's gates for ``gru.log_rnn_stats``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from baseline_agent.train import Rollout, train_ppo
from procgen_common.config import Checked, bounded, from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import ModelConfig, PolicyAgent, PolicyNet, make_encoder, orthogonal_init

ALGO = "ppo_gru"


@dataclass(frozen=True)
class GRUConfig(Checked):
    """The recurrent core of ppo_gru."""

    hidden_size: int = bounded(256, 1)
    """GRU hidden state size."""
    log_rnn_stats: bool = False
    """Log the GRU's hidden-state norm and gate saturation once per update (rnn/* columns)."""


def gru_sequence(
    gru: nn.GRU, features: torch.Tensor, hidden: torch.Tensor, episode_starts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a one-layer GRU over a sequence whose hidden state resets where episodes start.

    ``features`` float ``(T, N, F)``; ``hidden`` ``(N, H)``, the state before step 0; ``episode_starts``
    ``(T, N)``, true where step t is an episode's first (its input hidden state is zeroed first).
    Returns the outputs ``(T, N, H)`` (the hidden state after each step) and the final state ``(N, H)``.
    Exactly the step-by-step loop ``h = h * (1 - start[t]); h = gru(x[t], h)``, computed as one GRU call
    per stretch of steps in which no environment starts an episode.
    """
    starts = episode_starts.bool()
    num_steps = features.shape[0]
    cuts = (torch.nonzero(starts[1:].any(1)).flatten() + 1).tolist()
    outputs = []
    for begin, end in zip([0, *cuts], [*cuts, num_steps], strict=True):
        hidden = hidden.masked_fill(starts[begin, :, None], 0.0)
        out, last = gru(features[begin:end], hidden[None].contiguous())
        outputs.append(out)
        hidden = last[0]
    return torch.cat(outputs), hidden


def gru_gates(
    gru: nn.GRU, features: torch.Tensor, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reset gate r, update gate z and candidate n of one GRU step, each ``(M, H)``.

    PyTorch's GRU: r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)), and the next state h' = (1 - z) n + z h.
    """
    i_r, i_z, i_n = nn.functional.linear(features, gru.weight_ih_l0, gru.bias_ih_l0).chunk(3, 1)
    h_r, h_z, h_n = nn.functional.linear(hidden, gru.weight_hh_l0, gru.bias_hh_l0).chunk(3, 1)
    reset = torch.sigmoid(i_r + h_r)
    return reset, torch.sigmoid(i_z + h_z), torch.tanh(i_n + reset * h_n)


@torch.no_grad()
def gru_gate_stats(
    gru: nn.GRU, features: torch.Tensor, hidden: torch.Tensor, threshold: float = 0.95
) -> dict[str, float]:
    """Hidden-state norm and gate saturation of GRU steps from ``hidden`` ``(M, H)`` on ``features`` ``(M, F)``.

    A gate is saturated where it lies within ``1 - threshold`` of its bounds: it then passes almost no
    gradient, and a GRU whose gates all saturate has stopped learning.
    """
    reset, update, candidate = gru_gates(gru, features, hidden)
    low = 1.0 - threshold
    return {
        "rnn/hidden_norm": hidden.norm(dim=1).mean().item(),
        "rnn/update_gate_mean": update.mean().item(),
        "rnn/update_gate_saturation": ((update < low) | (update > threshold)).float().mean().item(),
        "rnn/reset_gate_saturation": ((reset < low) | (reset > threshold)).float().mean().item(),
        "rnn/candidate_saturation": (candidate.abs() > threshold).float().mean().item(),
    }


class RecurrentActorCritic(PolicyNet):
    """Encoder (``make_encoder``) -> GRU -> categorical policy head and value head."""

    recurrent = True

    def __init__(self, model: ModelConfig, gru: GRUConfig):
        super().__init__()
        self.encoder = make_encoder(model, OBS_SHAPE)
        self.gru = nn.GRU(self.encoder.out_features, gru.hidden_size)
        for name, param in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
        self.policy_head = orthogonal_init(nn.Linear(gru.hidden_size, NUM_ACTIONS), 0.01)
        self.value_head = orthogonal_init(nn.Linear(gru.hidden_size, 1), 1.0)
        self.hidden_size = gru.hidden_size
        self.to(memory_format=torch.channels_last)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(T, N, H, W, C)`` -> float32 encoder features ``(T, N, F)``."""
        return self.encoder(frames.flatten(0, 1)).float().view(*frames.shape[:2], -1)

    def forward(
        self, frames: torch.Tensor, hidden: torch.Tensor, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 frames ``(T, N, 64, 64, 3)``, hidden ``(N, H)``, starts ``(T, N)`` -> logits ``(T, N, A)``,
        values ``(T, N)`` and the final hidden state ``(N, H)``. The GRU and heads run in float32."""
        features = self.features(frames)
        with torch.autocast(frames.device.type, enabled=False):
            out, hidden = gru_sequence(self.gru, features, hidden, episode_starts)
            return self.policy_head(out), self.value_head(out).squeeze(-1), hidden

    def unroll(self, frames, state, episode_starts):
        return self(frames, state, episode_starts)

    def initial_state(self, num_envs: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(num_envs, self.hidden_size, device=device)


def load_ppo_gru_agent(checkpoint: dict, device: torch.device | str = "cpu") -> PolicyAgent:
    """Rebuild a ppo_gru agent from a checkpoint (``policies.registry``)."""
    model = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    gru = from_dict(GRUConfig, checkpoint["config"]["gru"], "in the checkpoint")
    net = RecurrentActorCritic(model, gru)
    net.load_state_dict(checkpoint["model"])
    return PolicyAgent(net.to(device), device)


# Columns of gru.log_rnn_stats (gru_gate_stats), after PPO's.
RNN_COLUMNS = [f"rnn/{name}" for name in ("hidden_norm", "update_gate_mean", "update_gate_saturation",
                                          "reset_gate_saturation", "candidate_saturation")]  # fmt: skip


def train(config, wrap_env: Callable[[VecEnv], VecEnv] | None, must_match: Sequence[str]) -> Path:
    """Train recurrent PPO as configured (a ``policies.train.Config``); returns the run folder."""
    make_net = partial(RecurrentActorCritic, config.model, config.gru)
    rnn_stats = rollout_rnn_stats if config.gru.log_rnn_stats else None
    return train_ppo(config, make_net, ALGO, must_match, wrap_env, RNN_COLUMNS, rnn_stats)


@torch.no_grad()
def rollout_rnn_stats(net: RecurrentActorCritic, rollout: Rollout, max_envs: int = 8) -> dict[str, float]:
    """``gru_gate_stats`` over every step of (up to ``max_envs`` environments of) a rollout, with the network as it
    is now. The encoder runs under the caller's autocast, the GRU in float32 as in training."""
    envs = slice(0, max_envs)
    features = net.features(rollout.frames[:, envs])
    hidden_start, starts = rollout.state[envs], rollout.episode_starts[:, envs]
    with torch.autocast(features.device.type, enabled=False):
        outputs, _ = gru_sequence(net.gru, features, hidden_start, starts)
        # The hidden state each step started from: the previous step's output, zeroed at episode starts.
        previous = torch.cat([hidden_start[None], outputs[:-1]]).masked_fill(starts[..., None], 0.0)
        return gru_gate_stats(net.gru, features.flatten(0, 1), previous.flatten(0, 1))
