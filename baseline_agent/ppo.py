"""The pure pieces of PPO: hyperparameters, advantage estimation, reward scaling and the loss.

Each is a small function or class with its own tests; ``baseline_agent.train`` wires them into
the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from procgen_common.config import Checked, bounded


@dataclass(frozen=True)
class PPOConfig(Checked):
    """PPO hyperparameters; defaults are the Procgen paper's (Cobbe et al., 2020, table)."""

    num_steps: int = bounded(256, 1)
    """Rollout length per environment between updates."""
    num_epochs: int = bounded(3, 1)
    """Passes over each rollout."""
    num_minibatches: int = bounded(8, 1)
    """Minibatches per epoch (minibatch size = num_envs * num_steps / num_minibatches)."""
    learning_rate: float = bounded(5e-4, 0.0, low_open=True)
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over train.total_steps."""
    adam_eps: float = bounded(1e-5, 0.0, low_open=True)
    """Adam epsilon."""
    gamma: float = bounded(0.999, 0.0, 1.0)
    """Discount factor."""
    gae_lambda: float = bounded(0.95, 0.0, 1.0)
    """GAE lambda."""
    clip_coef: float = bounded(0.2, 0.0, low_open=True)
    """Policy ratio clip range."""
    clip_value: bool = True
    """Clip the value update to clip_coef around the old values (as baselines' PPO2)."""
    ent_coef: float = bounded(0.01, 0.0)
    """Entropy bonus coefficient."""
    vf_coef: float = bounded(0.5, 0.0)
    """Value loss coefficient."""
    max_grad_norm: float = bounded(0.5, 0.0, low_open=True)
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    reward_scaling: bool = True
    """Divide rewards by a running std of discounted returns (baselines' VecNormalize on rewards only)."""
    reward_clip: float = bounded(10.0, 0.0, low_open=True)
    """Clip scaled rewards to [-reward_clip, reward_clip]."""
    target_kl: float | None = bounded(None, 0.0, low_open=True)
    """Stop an update's epochs early when the approximate KL exceeds this (null = never)."""


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over a rollout.

    Shapes ``(T, N)`` for rewards, values and dones; ``last_value`` is ``(N,)``, the value of the
    observation after the rollout. ``dones[t]`` is 1 where step t ended an episode: nothing is
    bootstrapped across it. Returns ``(advantages, returns)``, both ``(T, N)``.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(num_steps)):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * gae_lambda * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect value function, 0 no better than a constant."""
    var_returns = returns.var()
    return float(1 - (returns - values).var() / var_returns) if var_returns > 0 else 0.0


class RunningMeanStd:
    """Running mean and variance over batches (Chan et al.'s parallel algorithm)."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch_mean, batch_var, n = float(np.mean(batch)), float(np.var(batch)), batch.size
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total


class RewardScaler:
    """Scales rewards by the running std of discounted returns, as the Procgen paper's PPO did."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.stats = RunningMeanStd()

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.stats.update(self.returns)
        scaled = np.clip(rewards / np.sqrt(self.stats.var + self.eps), -self.clip, self.clip)
        self.returns[dones] = 0.0
        return scaled.astype(np.float32)

    def state_dict(self) -> dict:
        s = self.stats
        return {"returns": torch.from_numpy(self.returns.copy()), "mean": s.mean, "var": s.var, "count": s.count}

    def load_state_dict(self, state: dict) -> None:
        if state["returns"].shape[0] == self.returns.shape[0]:
            self.returns = state["returns"].numpy().astype(np.float64)
        self.stats.mean, self.stats.var, self.stats.count = state["mean"], state["var"], state["count"]


def ppo_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped-surrogate PPO loss for one minibatch; returns (loss, detached statistics)."""
    if config.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_probs = torch.log_softmax(logits, -1)
    log_ratio = log_probs.gather(1, actions[:, None]).squeeze(1) - old_logprobs
    ratio = log_ratio.exp()
    clip = config.clip_coef
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    if config.clip_value:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((values - returns) ** 2).mean()
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "losses/policy_loss": policy_loss.detach(),
            "losses/value_loss": value_loss.detach(),
            "losses/entropy": entropy.detach(),
            # Schulman's low-variance KL estimator (http://joschu.net/blog/kl-approx.html).
            "losses/approx_kl": ((ratio - 1) - log_ratio).mean(),
            "losses/clipfrac": ((ratio - 1).abs() > clip).float().mean(),
        }
    return loss, stats
