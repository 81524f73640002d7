"""Rainbow DQN (Hessel et al., 2018) in the variant EDE used on Procgen (Jiang et al., 2023).

Components, each switchable on its own (``rainbow.*``): a distributional C51 head (Bellemare et al.,
2017), double Q-learning, a dueling head, noisy linear layers for exploration (factorised Gaussian,
Fortunato et al., 2018; epsilon-greedy when off), n-step returns, prioritized replay with importance
weights (Schaul et al., 2016) and a target network. ``env.num_envs`` actors (EDE: 64) feed one replay
buffer that stores each frame once (``policies.replay``); ``rainbow.replay_ratio`` sets how many
replayed transitions each collected one pays for. The encoder is the suite's IMPALA or Nature CNN.

Pure pieces, tested alone: ``project_distribution`` (the C51 target projection), ``td_loss`` (the loss and
priorities of a replayed batch), ``NoisyLinear``, and in ``policies.replay`` the sum tree and ``nstep_targets``.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from policies.replay import ReplayBuffer
from procgen_common.config import Checked, bounded, from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import ModelConfig, make_encoder
from procgen_common.training_run import TrainingRun

ALGO = "rainbow"


@dataclass(frozen=True)
class RainbowConfig(Checked):
    """Rainbow DQN; defaults are the Procgen settings of EDE (Jiang, Kolter and Raileanu, 2022)."""

    distributional: bool = True
    """C51: a categorical return distribution over num_atoms atoms in [v_min, v_max] (off: one Q value per
    action and a Huber loss)."""
    double_q: bool = True
    """Double Q-learning: the online network picks the next action, the target network values it."""
    dueling: bool = True
    """Dueling head: a state-value stream plus mean-centred action advantages."""
    noisy: bool = True
    """Noisy linear layers in the head explore (off: epsilon-greedy with the epsilon_* schedule)."""
    noisy_std: float = bounded(0.5, 0.0)
    """Initial noise scale sigma_0 of the factorised Gaussian noisy layers."""
    prioritized: bool = True
    """Prioritized replay (sum tree) with importance-sampling weights (off: uniform replay)."""
    target_network: bool = True
    """Bootstrap from a periodically copied target network (off: from the online network itself)."""
    n_step: int = bounded(3, 1)
    """Steps of reward summed before bootstrapping."""
    gamma: float = bounded(0.99, 0.0, 1.0)
    """Discount factor."""
    num_atoms: int = bounded(51, 2)
    """Atoms of the C51 return distribution."""
    v_min: float = -10.0
    """Lowest atom of the return distribution."""
    v_max: float = 10.0
    """Highest atom of the return distribution."""
    head_hidden: int = bounded(512, 0)
    """Width of the hidden layer of each head stream (0 = linear heads on the encoder features)."""
    buffer_size: int = bounded(1_000_000, 1)
    """Replay capacity in transitions (all environments together). Each 64x64x3 uint8 frame is stored
    once (12,288 bytes), so 1M transitions need about 12.3 GB of memory."""
    batch_size: int = bounded(512, 1)
    """Transitions per gradient update."""
    replay_ratio: float = bounded(8.0, 0.0, low_open=True)
    """Replayed transitions per collected one (batch_size x updates / env steps); EDE: 512 per 64-env step = 8."""
    learning_starts: int = bounded(20_000, 1)
    """Transitions in the buffer before updates begin (after a resume too: the buffer is not saved)."""
    learning_rate: float = bounded(2.5e-4, 0.0, low_open=True)
    """Adam learning rate."""
    adam_eps: float = bounded(1.5e-4, 0.0, low_open=True)
    """Adam epsilon."""
    max_grad_norm: float = bounded(10.0, 0.0, low_open=True)
    """Gradient norm clip."""
    target_update_steps: int = bounded(32_000, 1)
    """Copy the online network to the target network every this many environment steps."""
    priority_alpha: float = bounded(0.5, 0.0)
    """Prioritized replay: sample in proportion to priority ** alpha (0 = uniform)."""
    priority_beta: float = bounded(0.4, 0.0, 1.0)
    """Prioritized replay: importance-sampling exponent at the start, annealed linearly to 1 over training."""
    epsilon_start: float = bounded(1.0, 0.0, 1.0)
    """Without noisy layers: random-action probability at the start."""
    epsilon_final: float = bounded(0.01, 0.0, 1.0)
    """Without noisy layers: random-action probability after epsilon_decay_steps (also a saved agent's,
    when it does not act greedily)."""
    epsilon_decay_steps: int = bounded(250_000, 1)
    """Without noisy layers: environment steps over which epsilon falls linearly."""
    log_every: int = bounded(256, 1)
    """Vector steps (of env.num_envs environment steps each) between rows of progress.csv; checkpoints and
    evaluation are checked at the same points."""

    def validate(self) -> None:
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min: {self.v_min} must be below v_max {self.v_max}")


class NoisyLinear(nn.Module):
    """A linear layer with learned factorised Gaussian noise on its weights (Fortunato et al., 2018).

    ``w = mu_w + sigma_w * (f(eps_out) f(eps_in)^T)``, ``b = mu_b + sigma_b * f(eps_out)`` with
    ``f(x) = sign(x) sqrt(|x|)`` and standard normal ``eps``. The noise is drawn by ``reset_noise()``
    and used in training mode; in eval mode the layer is deterministic (the mean weights).
    """

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        # Not saved: noise is redrawn, never restored.
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, std_init * bound)
        nn.init.constant_(self.bias_sigma, std_init * bound)
        self.reset_noise()

    @staticmethod
    def _scaled_noise(size: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        x = torch.randn(size, device=device, generator=generator)
        return x.sign() * x.abs().sqrt()

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        self.eps_in.copy_(self._scaled_noise(self.in_features, self.eps_in.device, generator))
        self.eps_out.copy_(self._scaled_noise(self.out_features, self.eps_out.device, generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nn.functional.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return nn.functional.linear(x, weight, bias)


class QNetwork(nn.Module):
    """Encoder -> (dueling) head -> per-action return distributions (C51) or Q values.

    ``forward`` gives float32 ``(B, A, num_atoms)`` logits over atoms (distributional) or ``(B, A, 1)``
    Q values; ``q_values`` gives ``(B, A)`` expected returns either way.
    """

    def __init__(self, model: ModelConfig, config: RainbowConfig):
        super().__init__()
        self.encoder = make_encoder(model, OBS_SHAPE)
        self.num_actions = NUM_ACTIONS
        self.distributional = config.distributional
        self.num_atoms = config.num_atoms if config.distributional else 1
        self.noisy = config.noisy
        features = self.encoder.out_features

        def linear(n_in: int, n_out: int) -> nn.Module:
            return NoisyLinear(n_in, n_out, config.noisy_std) if config.noisy else nn.Linear(n_in, n_out)

        def stream(n_out: int) -> nn.Module:
            if config.head_hidden == 0:
                return linear(features, n_out)
            return nn.Sequential(linear(features, config.head_hidden), nn.ReLU(), linear(config.head_hidden, n_out))

        self.advantage = stream(self.num_actions * self.num_atoms)
        self.value = stream(self.num_atoms) if config.dueling else None
        self.register_buffer("support", torch.linspace(config.v_min, config.v_max, config.num_atoms), persistent=False)
        self.to(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        features = self.encoder(frames)
        out = self.advantage(features).float().view(-1, self.num_actions, self.num_atoms)
        if self.value is not None:
            value = self.value(features).float().view(-1, 1, self.num_atoms)
            out = value + out - out.mean(1, keepdim=True)
        return out

    def q_from(self, out: torch.Tensor) -> torch.Tensor:
        """Expected returns ``(B, A)`` from ``forward``'s output."""
        if self.distributional:
            return (torch.softmax(out, -1) * self.support).sum(-1)
        return out[..., 0]

    def q_values(self, frames: torch.Tensor) -> torch.Tensor:
        return self.q_from(self(frames))

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise(generator)


def project_distribution(
    next_probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """The C51 target: the distribution of ``returns + discounts * Z'`` projected back onto ``support``.

    ``next_probs`` ``(B, K)``: probabilities of the next state's return over the atoms ``support`` ``(K,)``
    (evenly spaced); ``returns``, ``discounts`` ``(B,)``. Each shifted atom is clipped to
    ``[v_min, v_max]`` and its probability split between the two nearest atoms in proportion to
    closeness (all of it to one atom it lands on exactly), as Bellemare et al. (2017), algorithm 1.
    """
    num_atoms = support.shape[0]
    v_min, v_max = support[0].item(), support[-1].item()
    delta = (v_max - v_min) / (num_atoms - 1)
    shifted = (returns[:, None] + discounts[:, None] * support[None]).clamp(v_min, v_max)
    position = ((shifted - v_min) / delta).clamp(0, num_atoms - 1)
    lower, upper = position.floor(), position.ceil()
    exact = (lower == upper).to(next_probs.dtype)
    target = torch.zeros_like(next_probs)
    target.scatter_add_(1, lower.long(), next_probs * (upper - position + exact))
    target.scatter_add_(1, upper.long(), next_probs * (position - lower))
    return target


def td_loss(
    out: torch.Tensor,
    next_out: torch.Tensor,
    actions: torch.Tensor,
    next_actions: torch.Tensor,
    returns: torch.Tensor,
    discounts: torch.Tensor,
    weights: torch.Tensor,
    support: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rainbow's loss on a replayed batch (Hessel et al., 2018): ``(loss, priorities, q_taken)``.

    ``out`` ``(B, A, K)``: ``QNetwork`` outputs, valued at ``actions`` ``(B,)``; ``next_out``: the bootstrap network's
    on the n-th next frames, at ``next_actions``; ``returns``, ``discounts``: n-step returns and gamma^n (0 past an
    episode's end); ``weights``: importance weights. With ``support`` (C51, Bellemare et al., 2017) a sample's loss is
    the cross-entropy to the projected target distribution and its priority their KL divergence; without (K = 1), the
    Huber loss to ``returns + discounts * Q'`` and the absolute TD error. ``q_taken``: expected returns, detached.
    """
    rows = torch.arange(len(actions), device=actions.device)
    if support is not None:
        log_probs = torch.log_softmax(out[rows, actions], -1)
        with torch.no_grad():
            next_probs = torch.softmax(next_out[rows, next_actions], -1)
            target_probs = project_distribution(next_probs, returns, discounts, support)
        per_sample = -(target_probs * log_probs).sum(-1)  # cross-entropy to the projected target
        # Priority: the KL divergence, which differs from the cross-entropy by the target's entropy.
        priority = per_sample.detach() + (target_probs * target_probs.clamp_min(1e-8).log()).sum(-1)
        q_taken = (log_probs.exp() * support).sum(-1)
    else:
        q_taken = out[rows, actions, 0]
        td_target = returns + discounts * next_out[rows, next_actions, 0]
        per_sample = nn.functional.smooth_l1_loss(q_taken, td_target, reduction="none")
        priority = (q_taken - td_target).detach().abs()
    return (weights * per_sample).mean(), priority, q_taken.detach()


class QAgent:
    """The agents' interface over a ``QNetwork``: greedy actions when ``deterministic``; otherwise the
    training behaviour, i.e. greedy under freshly drawn noise (noisy nets) or epsilon-greedy, drawn from
    ``generator`` (None: torch's global one)."""

    def __init__(self, net: QNetwork, epsilon: float = 0.01, device: torch.device | str = "cpu"):
        self.net = net.eval()
        self.epsilon = epsilon
        self.device = torch.device(device)
        self.generator: torch.Generator | None = None

    def initial_state(self, num_envs: int) -> None:
        return None

    @torch.inference_mode()
    def act(self, obs: np.ndarray, state: None, episode_start: np.ndarray, deterministic: bool = False):
        noisy = not deterministic and self.net.noisy
        if noisy:  # noisy layers use their noise in training mode only
            self.net.train()
            self.net.reset_noise(self.generator)
        actions = self.net.q_values(torch.as_tensor(obs, device=self.device)).argmax(-1)
        if noisy:
            self.net.eval()
        if not deterministic and not self.net.noisy and self.epsilon > 0:
            explore = torch.rand(len(actions), device=self.device, generator=self.generator) < self.epsilon
            random = torch.randint(0, self.net.num_actions, actions.shape, device=self.device, generator=self.generator)
            actions = torch.where(explore, random, actions)
        return actions.cpu().numpy(), None


def load_rainbow_agent(checkpoint: dict, device: torch.device | str = "cpu") -> QAgent:
    """Rebuild a Rainbow agent from a checkpoint (``policies.registry``)."""
    model = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    rainbow = from_dict(RainbowConfig, checkpoint["config"]["rainbow"], "in the checkpoint")
    net = QNetwork(model, rainbow)
    net.load_state_dict(checkpoint["model"])
    return QAgent(net.to(device), rainbow.epsilon_final, device)


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end``."""
    return end + (start - end) * max(0.0, 1.0 - step / duration)


PROGRESS_COLUMNS = ["charts/epsilon", "losses/loss", "losses/q_mean", "replay/size", "replay/beta", "replay/updates"]


def train(config, wrap_env: Callable[[VecEnv], VecEnv] | None, must_match: Sequence[str]) -> Path:
    """Train Rainbow as configured (a ``policies.train.Config``); returns the run folder."""
    c, r = config, config.rainbow
    run = TrainingRun(config, ALGO, PROGRESS_COLUMNS, must_match)
    device, autocast = run.device, run.autocast
    N = c.env.num_envs

    net = QNetwork(c.model, r).to(device)
    target = copy.deepcopy(net).requires_grad_(False) if r.target_network else net
    optimizer = torch.optim.Adam(net.parameters(), lr=r.learning_rate, eps=r.adam_eps)
    buffer = ReplayBuffer(r.buffer_size, N, r.n_step, r.gamma, r.prioritized, r.priority_alpha)
    full_gb = ReplayBuffer.bytes_needed(r.buffer_size, prioritized=r.prioritized) / 1e9
    print(f"replay buffer: {r.buffer_size:,} transitions, {full_gb:.1f} GB when full", file=sys.stderr)
    env = run.make_env(wrap_env)
    updates_due, num_updates, next_target_update = 0.0, 0, r.target_update_steps
    if run.resume_from is not None:
        saved = run.resume_from
        net.load_state_dict(saved["model"])
        if r.target_network:
            target.load_state_dict(saved["target"])
        optimizer.load_state_dict(saved["optimizer"])
        updates_due, num_updates = saved["updates_due"], saved["num_updates"]
        next_target_update = saved["next_target_update"]
    # Replay order from the seed and the iteration: a resumed run draws anew, as its levels do.
    rng = np.random.default_rng([c.train.seed, run.update])

    def state() -> dict:
        out = {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "updates_due": updates_due,
            "num_updates": num_updates,
            "next_target_update": next_target_update,
        }
        if r.target_network:
            out["target"] = target.state_dict()
        return out

    run.begin(state, lambda: QAgent(net, r.epsilon_final, device), net)

    def learn(beta: float) -> tuple[float, float]:
        """One gradient update on a replayed batch; returns (loss, mean Q of the taken actions)."""
        batch = buffer.sample(r.batch_size, rng, beta)
        obs, next_obs, actions, returns, discounts, weights = (
            torch.from_numpy(x).to(device)
            for x in (batch.obs, batch.next_obs, batch.actions, batch.returns, batch.discounts, batch.weights)
        )
        if r.noisy:
            net.reset_noise()
            if target is not net:
                target.reset_noise()
        with autocast:
            out = net(obs)
        with torch.no_grad(), autocast:
            next_target = target(next_obs)
            next_online = net(next_obs) if r.double_q and target is not net else next_target
        next_actions = net.q_from(next_online).argmax(-1)
        support = net.support if r.distributional else None
        loss, priority, q_taken = td_loss(out, next_target, actions, next_actions, returns, discounts, weights, support)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), r.max_grad_norm)
        optimizer.step()
        buffer.update_priorities(batch.indices, priority.clamp_min(0).cpu().numpy())
        return loss.item(), q_taken.mean().item()

    obs = env.reset()
    try:
        while not run.done:
            t_start = time.monotonic()
            step = run.step
            losses, q_means = [], []
            for _ in range(r.log_every):
                epsilon = (
                    0.0 if r.noisy else linear_schedule(r.epsilon_start, r.epsilon_final, r.epsilon_decay_steps, step)
                )
                beta = linear_schedule(r.priority_beta, 1.0, c.train.total_steps, step)
                with torch.no_grad(), autocast:
                    if r.noisy:
                        net.reset_noise()
                    actions = net.q_values(torch.from_numpy(obs).to(device)).argmax(-1)
                if epsilon > 0:
                    explore = torch.rand(N, device=device) < epsilon
                    actions = torch.where(explore, torch.randint_like(actions, NUM_ACTIONS), actions)
                actions = actions.cpu().numpy()
                env.step_async(actions)
                # Learn from what is stored, at the configured replay ratio.
                if len(buffer) >= r.learning_starts:
                    updates_due += N * r.replay_ratio / r.batch_size
                    while updates_due >= 1.0:
                        loss, q_mean = learn(beta)
                        losses.append(loss)
                        q_means.append(q_mean)
                        updates_due -= 1.0
                        num_updates += 1
                next_obs, rewards, dones, infos = env.step_wait()
                buffer.add(obs, actions, rewards, dones)
                run.episodes.record(dones, infos)
                obs = next_obs
                step += N
                if r.target_network and step >= next_target_update:
                    target.load_state_dict(net.state_dict())
                    next_target_update += r.target_update_steps
                if step >= c.train.total_steps:
                    break

            metrics = {
                "charts/epsilon": epsilon,
                "losses/loss": float(np.mean(losses)) if losses else None,
                "losses/q_mean": float(np.mean(q_means)) if q_means else None,
                "replay/size": len(buffer),
                "replay/beta": beta if r.prioritized else None,
                "replay/updates": num_updates,
            }
            run.end_iteration(step - run.step, t_start, metrics)
    finally:
        run.close()
        env.close()
    return run.run_dir
