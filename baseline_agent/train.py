"""Train the PPO demonstrator on a Procgen game.

    python -m baseline_agent.train -c configs/cpu.yaml env.game=coinrun train.total_steps=2e6

The run folder (``run.dir``) gets ``config.yaml``, ``progress.csv``, TensorBoard events in ``tb/``,
the demonstrator series ``checkpoints/step_<step>.pt`` (``train.num_checkpoints`` files evenly
spaced from the initial to the final policy: the skill ladder T-REX draws demos from) and
``checkpoints/latest.pt`` for resuming (``train.resume=true``), written every
``train.save_interval_minutes`` and at the end.

``train_ppo`` is the PPO loop for any ``procgen_common.networks.PolicyNet``, also ``policies.train``'s ``ppo`` and
``ppo_gru`` agents'. A feed-forward policy (the demonstrator's ``ActorCritic``) is stateless and its update draws
minibatches of single steps; a recurrent one (``policies.ppo_gru``) carries its state through the rollout, zeroed
where an episode starts, and its update replays minibatches of whole environments, every step in order, from the
state the rollout began with (truncated backpropagation through time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from baseline_agent.ppo import PPOConfig, RewardScaler, compute_gae, explained_variance, ppo_loss
from procgen_common.cli import main_guard, train_main
from procgen_common.config import Checked, bounded
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig
from procgen_common.logger import LogConfig
from procgen_common.networks import ActorCritic, ModelConfig, PolicyNet, sample_actions
from procgen_common.training_run import TrainingRun

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Budget, seeding, checkpoints and resuming."""

    total_steps: int = bounded(25_000_000, 1)
    """Environment steps to train for (all environments together)."""
    seed: int = bounded(0, 0)
    """Seed for the network, the sampling and Procgen's level order."""
    num_checkpoints: int = bounded(10, 1)
    """Checkpoints in the demonstrator series, evenly spaced from step 0 to total_steps (1 = final only)."""
    save_interval_minutes: float = bounded(2.0, 0.0, low_open=True)
    """Also write checkpoints/latest.pt this often (wall-clock minutes; a save takes well under a second). Every
    series checkpoint holds the whole training state too, and a resume starts from the newest of them all."""
    resume: bool = False
    """Continue the run in run.dir from checkpoints/latest.pt (starts fresh if there is none)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device; 'auto' takes CUDA when available."""
    torch_threads: int = bounded(0, 0)
    """CPU threads for torch (0 = one per core). The count used is saved in config.yaml: it changes the order of
    the arithmetic, so the same seed gives bit-identical results only with the same count."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Network arithmetic: 'bf16' runs the convolutions and linear layers under bfloat16 autocast (losses
    and optimizer stay fp32); much faster on CPUs with AMX/AVX512-BF16 and on recent GPUs."""


@dataclass(frozen=True)
class EvalConfig(Checked):
    """Periodic evaluation during training."""

    every_steps: int = bounded(1_000_000, 0)
    """Evaluate every this many environment steps, and at the end (0 = never)."""
    episodes: int = bounded(64, 1)
    """Episodes per evaluation and split (spread evenly over up to 64 environments)."""
    splits: list[str] = field(default_factory=lambda: ["test"])
    """Level splits to evaluate on: any of train, test, all."""
    deterministic: bool = False
    """Greedy actions instead of sampling during evaluation."""
    record_video: bool = False
    """Also record an evaluation video, <run.dir>/videos/eval-step_<step>.mp4 (logged to W&B when on)."""
    video_episodes: int = bounded(1, 1, 16)
    """Episodes per evaluation video, side by side in a grid."""
    video_every_steps: int = bounded(0, 0)
    """Record a video at the first evaluation at or after every this many steps (0 = at every evaluation)."""

    def validate(self) -> None:
        for split in self.splits:
            if split not in ("train", "test", "all"):
                raise ValueError(f"splits: unknown split {split!r}; allowed train, test, all")


@dataclass(frozen=True)
class RunConfig(Checked):
    """Where outputs go."""

    dir: str | None = None
    """Run folder; null = runs/ppo-<game>-<arch>-seed<seed> (several games: <game>+<game>...)."""


@dataclass(frozen=True)
class Config(Checked):
    """PPO demonstrator training (baseline_agent.train)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The game, levels and Procgen options."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy network."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Budget, seeding, checkpoints and resuming."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Periodic held-out evaluation."""
    run: RunConfig = field(default_factory=RunConfig)
    """Where outputs go."""
    log: LogConfig = field(default_factory=LogConfig)
    """TensorBoard and Weights & Biases."""

    @property
    def batch_size(self) -> int:
        return self.env.num_envs * self.ppo.num_steps

    @property
    def run_dir(self) -> Path:
        if self.run.dir:
            return Path(self.run.dir)
        return Path("runs") / f"ppo-{self.env.label}-{self.model.arch}-seed{self.train.seed}"

    def validate(self) -> None:
        n = self.train.num_checkpoints
        if n > 1 and self.train.total_steps / (n - 1) < self.batch_size:
            fit = self.train.total_steps // self.batch_size + 1
            raise ValueError(
                f"train.num_checkpoints: {n} checkpoints are closer than one update ({self.batch_size} steps) "
                f"over {self.train.total_steps} steps; at most {fit} fit"
            )
        if self.batch_size % self.ppo.num_minibatches:
            raise ValueError(
                f"ppo.num_minibatches: {self.ppo.num_minibatches} must divide env.num_envs * ppo.num_steps "
                f"= {self.batch_size}"
            )


# Sections that must match the saved run for a resume to make sense.
RESUME_MUST_MATCH = ("env", "model", "ppo")

# PPO's own columns of progress.csv (TrainingRun adds the time, episode and evaluation columns).
PPO_COLUMNS = [
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
]


@dataclass
class Rollout:
    """T steps of N environments, each tensor ``(T, N)``: uint8 ``frames`` ``(T, N, 64, 64, 3)`` (what each action
    saw), ``episode_starts`` (bool: the frame is an episode's first, where a recurrent state is zeroed), actions,
    logprobs, values, rewards (scaled), ``dones`` (float: the step ended an episode), then advantages and returns;
    ``state`` is the policy's state before step 0, ``(N, ...)`` (None for a feed-forward policy)."""

    frames: torch.Tensor
    episode_starts: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    state: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def train_ppo(
    config,
    make_policy: Callable[[], PolicyNet],
    algo: str,
    must_match: Sequence[str],
    wrap_env: Callable[[VecEnv], VecEnv] | None = None,
    extra_columns: Sequence[str] = (),
    rollout_metrics: Callable[[PolicyNet, Rollout], dict[str, float]] | None = None,
) -> Path:
    """Train ``make_policy()`` with PPO as ``config`` says (the sections of ``baseline_agent.train.Config``);
    returns the run folder.

    ``algo`` names the checkpoints' kind, ``must_match`` the config sections a resume must keep, ``wrap_env`` wraps
    the training env (e.g. ``policies.reward_wrapper``'s learned reward). ``rollout_metrics(policy, rollout)``, if
    given, adds columns (``extra_columns``) to each row after the update, under the run's autocast.
    """
    c, p = config, config.ppo
    run = TrainingRun(config, algo, [*PPO_COLUMNS, *extra_columns], must_match)
    device, autocast = run.device, run.autocast
    T, N = p.num_steps, c.env.num_envs

    # The policy is built after TrainingRun seeds torch: its initialisation draws from the seeded generator.
    policy = make_policy().to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate, eps=p.adam_eps)
    scaler = RewardScaler(N, p.gamma, p.reward_clip)
    env = run.make_env(wrap_env)
    if run.resume_from is not None:
        policy.load_state_dict(run.resume_from["model"])
        optimizer.load_state_dict(run.resume_from["optimizer"])
        scaler.load_state_dict(run.resume_from["reward_scaler"])

    def checkpoint_entries() -> dict:
        return {"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "reward_scaler": scaler.state_dict()}

    run.begin(checkpoint_entries, lambda: policy.agent(device), policy)

    rollout = Rollout(
        torch.zeros((T, N, *OBS_SHAPE), dtype=torch.uint8, device=device),
        torch.zeros((T, N), dtype=torch.bool, device=device),
        torch.zeros((T, N), dtype=torch.long, device=device),
        *(torch.zeros((T, N), device=device) for _ in range(4)),
    )
    obs = torch.from_numpy(env.reset()).to(device)
    episode_start = torch.ones(N, dtype=torch.bool, device=device)
    state = policy.initial_state(N, device)
    try:
        while not run.done:
            t_start = time.monotonic()
            if p.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - run.step / c.train.total_steps) * p.learning_rate

            # Rollout: frames stay uint8 on their way into the buffer; the network scales them itself. The state it
            # starts from is kept: a recurrent update replays the rollout from there.
            policy.eval()
            rollout.state = state
            for t in range(T):
                with torch.no_grad(), autocast:
                    logits, value, state = policy.unroll(obs[None], state, episode_start[None])
                    logits, value = logits[0].float(), value[0].float()
                    action = sample_actions(logits)
                    logprob = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
                env.step_async(action.cpu().numpy())
                rollout.frames[t], rollout.episode_starts[t] = obs, episode_start
                rollout.actions[t], rollout.logprobs[t], rollout.values[t] = action, logprob, value
                next_obs, rewards, dones, infos = env.step_wait()
                if p.reward_scaling:
                    rewards = scaler(rewards, dones)
                rollout.rewards[t] = torch.from_numpy(rewards).to(device)
                episode_start = torch.from_numpy(dones).to(device)
                rollout.dones[t] = episode_start
                obs = torch.from_numpy(next_obs).to(device)
                run.episodes.record(dones, infos)
            policy.train()

            with torch.no_grad(), autocast:
                last_value = policy.unroll(obs[None], state, episode_start[None])[1][0].float()
            rollout.advantages, rollout.returns = compute_gae(
                rollout.rewards, rollout.values, rollout.dones, last_value, p.gamma, p.gae_lambda
            )

            # The update's sequences: for a recurrent policy the N environments' whole rollouts, replayed from the state
            # the rollout began with; for a feed-forward one the T * N steps, each a sequence of one.
            sequences = [rollout.frames, rollout.episode_starts, rollout.actions, rollout.logprobs, rollout.values,
                         rollout.advantages, rollout.returns]  # fmt: skip
            if not policy.recurrent:
                sequences = [x.flatten(0, 1)[None] for x in sequences]
            frames, starts, actions, logprobs, values, advantages, returns = sequences
            num_sequences = frames.shape[1]
            per_minibatch = num_sequences // p.num_minibatches
            stats_sum: dict[str, torch.Tensor] = {}
            num_minibatches = 0
            for _epoch in range(p.num_epochs):
                perm = torch.randperm(num_sequences, device=device)
                epoch_kl = []
                for start in range(0, num_sequences, per_minibatch):
                    idx = perm[start : start + per_minibatch]
                    with autocast:
                        state_before = rollout.state[idx] if policy.recurrent else None
                        new_logits, new_values, _ = policy.unroll(frames[:, idx], state_before, starts[:, idx])
                    loss, stats = ppo_loss(
                        new_logits.flatten(0, 1).float(),
                        new_values.flatten().float(),
                        *(x[:, idx].flatten() for x in (actions, logprobs, values, advantages, returns)),
                        p,
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
                    optimizer.step()
                    for k, v in stats.items():
                        stats_sum[k] = stats_sum.get(k, 0) + v
                    epoch_kl.append(stats["losses/approx_kl"])
                    num_minibatches += 1
                if p.target_kl is not None and torch.stack(epoch_kl).mean().item() > p.target_kl:
                    break

            metrics = {k: v.item() / num_minibatches for k, v in stats_sum.items()}
            metrics["losses/explained_variance"] = explained_variance(values.flatten(), returns.flatten())
            metrics["charts/learning_rate"] = optimizer.param_groups[0]["lr"]
            if rollout_metrics is not None:
                with torch.no_grad(), autocast:
                    metrics.update(rollout_metrics(policy, rollout))
            run.end_iteration(T * N, t_start, metrics)
    finally:
        env.close()
        run.close()
    return run.run_dir


def train(
    config: Config,
    wrap_env: Callable[[VecEnv], VecEnv] | None = None,
    must_match: Sequence[str] = RESUME_MUST_MATCH,
) -> Path:
    """Run PPO training as configured; returns the run folder.

    ``wrap_env(env)``, if given, wraps the training env (e.g. ``policies.reward_wrapper``'s learned
    reward); when its episode infos carry ``learned_r``, their mean is logged as ``charts/learned_return``.
    ``must_match``: the config sections a resume must keep (``policies.registry`` adds the agent and reward).
    """
    make_net = partial(ActorCritic, config.model, OBS_SHAPE, NUM_ACTIONS)
    return train_ppo(config, make_net, "ppo", must_match, wrap_env)


DESCRIPTION = """Train a PPO agent on a Procgen game: the demonstrator whose checkpoint series T-REX draws
ranked demonstrations from. Writes config.yaml, progress.csv, tb/ and checkpoints/ to run.dir."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    train_main(
        "python -m baseline_agent.train",
        DESCRIPTION,
        Config,
        "python -m baseline_agent.train -c configs/cpu.yaml env.game=coinrun train.total_steps=2000000",
        train,
        argv,
    )


if __name__ == "__main__":
    main()
