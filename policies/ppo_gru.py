"""Recurrent PPO: the suite's encoder, a GRU on its features, policy and value heads on the GRU's output.

The hidden state is reset to zero where an episode starts. Training runs on whole rollout sequences:
each minibatch is a subset of the environments with all ``ppo.num_steps`` of their steps, replayed
through the GRU from the hidden state saved at the start of the rollout, so gradients flow back
through the rollout and stop at its start (truncated backpropagation through time). Advantages,
the loss and reward scaling are the demonstrator's (``baseline_agent.ppo``).

``gru_sequence`` is the pure piece: a GRU over a ``(T, N)`` sequence with resets, equal to stepping it
one step at a time. ``gru_gate_stats`` recomputes the GRU's gates for ``gru.log_rnn_stats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from baseline_agent.ppo import RewardScaler, compute_gae, explained_variance, ppo_loss
from procgen_common.config import bounded, from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import ModelConfig, make_encoder, orthogonal_init, sample_actions
from procgen_common.training_run import TrainingRun

ALGO = "ppo_gru"


@dataclass
class GRUConfig:
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
    gi = nn.functional.linear(features, gru.weight_ih_l0, gru.bias_ih_l0)
    gh = nn.functional.linear(hidden, gru.weight_hh_l0, gru.bias_hh_l0)
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
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


class RecurrentActorCritic(nn.Module):
    """Encoder (``make_encoder``) -> GRU -> categorical policy head and value head."""

    def __init__(
        self, model: ModelConfig, gru: GRUConfig, obs_shape: tuple[int, int, int] = OBS_SHAPE, num_actions=NUM_ACTIONS
    ):
        super().__init__()
        self.encoder = make_encoder(model, obs_shape)
        self.gru = nn.GRU(self.encoder.out_features, gru.hidden_size)
        for name, param in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
        self.policy_head = orthogonal_init(nn.Linear(gru.hidden_size, num_actions), 0.01)
        self.value_head = orthogonal_init(nn.Linear(gru.hidden_size, 1), 1.0)
        self.hidden_size = gru.hidden_size
        self.to(memory_format=torch.channels_last)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(T, N, H, W, C)`` -> float32 encoder features ``(T, N, F)``."""
        num_steps, num_envs = frames.shape[:2]
        return (
            self.encoder(frames.reshape(num_steps * num_envs, *frames.shape[2:])).float().view(num_steps, num_envs, -1)
        )

    def forward(
        self, frames: torch.Tensor, hidden: torch.Tensor, episode_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 frames ``(T, N, 64, 64, 3)``, hidden ``(N, H)``, starts ``(T, N)`` -> logits ``(T, N, A)``,
        values ``(T, N)`` and the final hidden state ``(N, H)``. The GRU and heads run in float32."""
        features = self.features(frames)
        with torch.autocast(frames.device.type, enabled=False):
            out, hidden = gru_sequence(self.gru, features, hidden, episode_starts)
            return self.policy_head(out), self.value_head(out).squeeze(-1), hidden


class RecurrentAgent:
    """The agents' interface over a ``RecurrentActorCritic``; the state is the GRU hidden state ``(N, H)``."""

    def __init__(self, net: RecurrentActorCritic, device: torch.device | str = "cpu"):
        self.net = net.eval()
        self.device = torch.device(device)

    def initial_state(self, num_envs: int) -> torch.Tensor:
        return torch.zeros(num_envs, self.net.hidden_size, device=self.device)

    @torch.inference_mode()
    def act(self, obs: np.ndarray, state: torch.Tensor, episode_start: np.ndarray, deterministic: bool = False):
        frames = torch.as_tensor(obs, device=self.device)[None]
        starts = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=self.device)[None]
        logits, _, state = self.net(frames, state, starts)
        actions = logits[0].argmax(-1) if deterministic else sample_actions(logits[0])
        return actions.cpu().numpy(), state


def load_ppo_gru_agent(checkpoint: dict, device: torch.device | str = "cpu") -> RecurrentAgent:
    """Rebuild a ppo_gru agent from a checkpoint (``procgen_common.agents.AGENT_LOADERS``)."""
    model = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    gru = from_dict(GRUConfig, checkpoint["config"]["gru"], "in the checkpoint")
    net = RecurrentActorCritic(model, gru)
    net.load_state_dict(checkpoint["model"])
    return RecurrentAgent(net.to(device), device)


PROGRESS_COLUMNS = [
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "rnn/hidden_norm",
    "rnn/update_gate_mean",
    "rnn/update_gate_saturation",
    "rnn/reset_gate_saturation",
    "rnn/candidate_saturation",
]
RESUME_MUST_MATCH = ("env", "model", "ppo", "gru", "agent", "reward")


def train(config, wrap_env: Callable[[VecEnv], VecEnv] | None = None) -> Path:
    """Train recurrent PPO as configured (a ``policies.train.Config``); returns the run folder."""
    c, p = config, config.ppo
    run = TrainingRun(config, ALGO, PROGRESS_COLUMNS, RESUME_MUST_MATCH)
    device, autocast = run.device, run.autocast
    T, N = p.num_steps, c.env.num_envs
    envs_per_minibatch = N // p.num_minibatches

    net = RecurrentActorCritic(c.model, c.gru).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=p.learning_rate, eps=p.adam_eps)
    scaler = RewardScaler(N, p.gamma, p.reward_clip)
    env = run.make_env(wrap_env)
    if run.resume_from is not None:
        net.load_state_dict(run.resume_from["model"])
        optimizer.load_state_dict(run.resume_from["optimizer"])
        scaler.load_state_dict(run.resume_from["reward_scaler"])

    def state() -> dict:
        return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "reward_scaler": scaler.state_dict()}

    run.begin(state, lambda: RecurrentAgent(net, device), net)

    obs_buf = torch.zeros((T, N, *OBS_SHAPE), dtype=torch.uint8, device=device)
    starts_buf = torch.zeros((T, N), dtype=torch.bool, device=device)
    actions_buf = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs_buf = torch.zeros((T, N), device=device)
    values_buf = torch.zeros((T, N), device=device)
    rewards_buf = torch.zeros((T, N), device=device)
    dones_buf = torch.zeros((T, N), device=device)

    obs = torch.from_numpy(env.reset()).to(device)
    episode_start = torch.ones(N, dtype=torch.bool, device=device)
    hidden = torch.zeros(N, c.gru.hidden_size, device=device)
    try:
        while not run.done:
            t_start = time.monotonic()
            if p.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - run.step / c.train.total_steps) * p.learning_rate

            # Rollout, keeping the hidden state it started from: training replays the rollout from there.
            net.eval()
            hidden_start = hidden.clone()
            for t in range(T):
                with torch.no_grad(), autocast:
                    logits, value, hidden = net(obs[None], hidden, episode_start[None])
                    logits, value = logits[0], value[0]
                    action = sample_actions(logits)
                    logprob = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
                env.step_async(action.cpu().numpy())
                obs_buf[t], starts_buf[t] = obs, episode_start
                actions_buf[t], logprobs_buf[t], values_buf[t] = action, logprob, value
                next_obs, rewards, dones, infos = env.step_wait()
                if p.reward_scaling:
                    rewards = scaler(rewards, dones)
                rewards_buf[t] = torch.from_numpy(rewards).to(device)
                dones_buf[t] = torch.from_numpy(dones).to(device)
                obs = torch.from_numpy(next_obs).to(device)
                episode_start = torch.from_numpy(dones).to(device)
                run.episodes.record(dones, infos)
            net.train()

            with torch.no_grad(), autocast:
                last_value = net(obs[None], hidden, episode_start[None])[1][0]
            advantages, returns = compute_gae(rewards_buf, values_buf, dones_buf, last_value, p.gamma, p.gae_lambda)

            # Minibatches of whole environments: every step of the rollout, in order, for the GRU.
            stats_sum: dict[str, torch.Tensor] = {}
            rnn_stats: dict[str, float] = {}
            num_minibatches = 0
            for _epoch in range(p.num_epochs):
                perm = torch.randperm(N, device=device)
                epoch_kl = []
                for start in range(0, N, envs_per_minibatch):
                    envs = perm[start : start + envs_per_minibatch]
                    with autocast:
                        logits, values, _ = net(obs_buf[:, envs], hidden_start[envs], starts_buf[:, envs])
                    loss, stats = ppo_loss(
                        logits.reshape(-1, logits.shape[-1]).float(),
                        values.reshape(-1).float(),
                        actions_buf[:, envs].reshape(-1),
                        logprobs_buf[:, envs].reshape(-1),
                        values_buf[:, envs].reshape(-1),
                        advantages[:, envs].reshape(-1),
                        returns[:, envs].reshape(-1),
                        p,
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), p.max_grad_norm)
                    optimizer.step()
                    for k, v in stats.items():
                        stats_sum[k] = stats_sum.get(k, 0) + v
                    epoch_kl.append(stats["losses/approx_kl"])
                    num_minibatches += 1
                if p.target_kl is not None and torch.stack(epoch_kl).mean().item() > p.target_kl:
                    break

            if c.gru.log_rnn_stats:
                rnn_stats = rollout_rnn_stats(net, obs_buf, hidden_start, starts_buf, autocast)
            b_returns, b_values = returns.reshape(-1), values_buf.reshape(-1)
            metrics = {k: v.item() / num_minibatches for k, v in stats_sum.items()}
            metrics.update(
                {
                    "charts/learning_rate": optimizer.param_groups[0]["lr"],
                    "losses/explained_variance": explained_variance(b_values, b_returns),
                    **rnn_stats,
                }
            )
            run.end_iteration(T * N, t_start, metrics)
    finally:
        run.close()
        env.close()
    return run.run_dir


@torch.no_grad()
def rollout_rnn_stats(
    net: RecurrentActorCritic,
    frames: torch.Tensor,
    hidden_start: torch.Tensor,
    starts: torch.Tensor,
    autocast,
    max_envs: int = 8,
) -> dict[str, float]:
    """``gru_gate_stats`` over every step of (up to ``max_envs`` environments of) the last rollout."""
    envs = slice(0, max_envs)
    with autocast:
        features = net.features(frames[:, envs])
    outputs, _ = gru_sequence(net.gru, features, hidden_start[envs], starts[:, envs])
    # The hidden state each step started from: the previous step's output, zeroed at episode starts.
    previous = torch.cat([hidden_start[envs][None], outputs[:-1]]).masked_fill(starts[:, envs, None], 0.0)
    return gru_gate_stats(net.gru, features.flatten(0, 1), previous.flatten(0, 1))
