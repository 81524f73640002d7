"""Train the PPO demonstrator on a Procgen game.

    python -m baseline_agent.train -c configs/cpu.yaml env.game=coinrun train.total_steps=2e6

The run folder (``run.dir``) gets ``config.yaml``, ``progress.csv``, TensorBoard events in ``tb/``,
the demonstrator series ``checkpoints/step_<step>.pt`` (``train.num_checkpoints`` files evenly
spaced from the initial to the final policy: the skill ladder T-REX draws demos from) and
``checkpoints/latest.pt`` for resuming (``train.resume=true``), written every
``train.save_interval_minutes`` and at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from tqdm import tqdm

from baseline_agent.ppo import PPOConfig, RewardScaler, compute_gae, ppo_loss
from procgen_common.checkpoint import save_checkpoint
from procgen_common.cli import config_parser, main_guard
from procgen_common.config import bounded, load_config, save_config, to_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE, EnvConfig, ProcgenVecEnv
from procgen_common.evaluation import run_episodes, summarize
from procgen_common.logger import LogConfig, RunLogger
from procgen_common.networks import ActorCritic, FeedForwardAgent, ModelConfig, sample_actions
from procgen_common.runs import pick_device, prepare_run_dir

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv


@dataclass
class TrainConfig:
    """Budget, seeding, checkpoints and resuming."""

    total_steps: int = bounded(25_000_000, 1)
    """Environment steps to train for (all environments together)."""
    seed: int = bounded(0, 0)
    """Seed for the network, the sampling and Procgen's level order."""
    num_checkpoints: int = bounded(10, 1)
    """Checkpoints in the demonstrator series, evenly spaced from step 0 to total_steps (1 = final only)."""
    save_interval_minutes: float = bounded(10.0, 0.0, low_open=True)
    """Also write checkpoints/latest.pt this often (wall-clock minutes)."""
    resume: bool = False
    """Continue the run in run.dir from checkpoints/latest.pt (starts fresh if there is none)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device; 'auto' takes CUDA when available."""
    torch_threads: int = bounded(0, 0)
    """CPU threads for torch (0 = one per core)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Network arithmetic: 'bf16' runs the convolutions and linear layers under bfloat16 autocast (losses
    and optimizer stay fp32); much faster on CPUs with AMX/AVX512-BF16 and on recent GPUs."""


@dataclass
class EvalConfig:
    """Periodic evaluation during training."""

    every_steps: int = bounded(1_000_000, 0)
    """Evaluate every this many environment steps, and at the end (0 = never)."""
    episodes: int = bounded(64, 1)
    """Episodes per evaluation and split (spread evenly over up to 64 environments)."""
    splits: list[str] = field(default_factory=lambda: ["test"])
    """Level splits to evaluate on: any of train, test, all."""
    deterministic: bool = False
    """Greedy actions instead of sampling during evaluation."""

    def validate(self) -> None:
        for split in self.splits:
            if split not in ("train", "test", "all"):
                raise ValueError(f"splits: unknown split {split!r}; allowed train, test, all")


@dataclass
class RunConfig:
    """Where outputs go."""

    dir: str | None = None
    """Run folder; null = runs/ppo-<game>-<arch>-seed<seed>."""


@dataclass
class Config:
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
        return Path("runs") / f"ppo-{self.env.game}-{self.model.arch}-seed{self.train.seed}"

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

PROGRESS_COLUMNS = [
    "time/elapsed_s",
    "time/sps",
    "charts/episodic_return",
    "charts/learned_return",
    "charts/episodic_length",
    "charts/episodes",
    "charts/learning_rate",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "eval/train_return",
    "eval/test_return",
    "eval/all_return",
]


def checkpoint_steps(total_steps: int, num_checkpoints: int) -> list[int]:
    """Target steps of the demonstrator series: evenly spaced from 0 to total_steps (final only if 1)."""
    if num_checkpoints == 1:
        return [total_steps]
    return [round(k * total_steps / (num_checkpoints - 1)) for k in range(num_checkpoints)]


def train(config: Config, wrap_env: Callable[[VecEnv], VecEnv] | None = None) -> Path:
    """Run PPO training as configured; returns the run folder.

    ``wrap_env(env)``, if given, wraps the training env (e.g. ``policies.reward_wrapper``'s learned
    reward); when its episode infos carry ``learned_r``, their mean is logged as ``charts/learned_return``.
    """
    run_dir = config.run_dir
    resume_from = prepare_run_dir(run_dir, config, config.train.resume, RESUME_MUST_MATCH)
    device = pick_device(config.train.device)
    torch.set_num_threads(config.train.torch_threads or os.cpu_count() or 1)
    torch.manual_seed(config.train.seed)
    c, p = config, config.ppo
    T, N = p.num_steps, c.env.num_envs
    batch_size, minibatch_size = c.batch_size, c.batch_size // p.num_minibatches

    net = ActorCritic(c.model, OBS_SHAPE, NUM_ACTIONS).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.train.precision == "bf16")
    optimizer = torch.optim.Adam(net.parameters(), lr=p.learning_rate, eps=p.adam_eps)
    scaler = RewardScaler(N, p.gamma, p.reward_clip)
    step, update, elapsed = 0, 0, 0.0
    recent_returns: deque[float] = deque(maxlen=100)
    recent_lengths: deque[int] = deque(maxlen=100)
    recent_learned: deque[float] = deque(maxlen=100)
    episodes_seen = 0
    if resume_from is not None:
        net.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scaler.load_state_dict(resume_from["reward_scaler"])
        torch.set_rng_state(resume_from["rng"]["torch"])
        step, update, elapsed = resume_from["step"], resume_from["update"], resume_from["elapsed_s"]
        recent_returns.extend(resume_from["recent_returns"])
        recent_lengths.extend(resume_from["recent_lengths"])
        recent_learned.extend(resume_from.get("recent_learned_returns", []))
        episodes_seen = resume_from["episodes"]
        done = " (already finished)" if step >= c.train.total_steps else ""
        print(f"resuming {run_dir} from step {step:,}{done}", file=sys.stderr)

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    # With train.resume=true and no checkpoint, rows from the unsaved attempt are dropped (step 0).
    logger = RunLogger(
        run_dir, PROGRESS_COLUMNS, c.log, resume_step=step if c.train.resume else None, run_config=to_dict(config)
    )
    # A resumed run draws a new level order: Procgen's C++ state is not saved, so replaying the
    # first seed's levels would repeat the start of training.
    env = ProcgenVecEnv(c.env, "train", seed=c.train.seed * 1_000_003 + update)
    if wrap_env is not None:
        env = wrap_env(env)

    targets = checkpoint_steps(c.train.total_steps, c.train.num_checkpoints)
    next_eval = (step // c.eval.every_steps + 1) * c.eval.every_steps if c.eval.every_steps else None

    obs_buf = torch.zeros((T, N, *OBS_SHAPE), dtype=torch.uint8, device=device)
    actions_buf = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs_buf = torch.zeros((T, N), device=device)
    values_buf = torch.zeros((T, N), device=device)
    rewards_buf = torch.zeros((T, N), device=device)
    dones_buf = torch.zeros((T, N), device=device)

    def payload() -> dict:
        return {
            "algo": "ppo",
            "step": step,
            "mean_return": float(np.mean(recent_returns)) if recent_returns else None,
            "config": to_dict(config),
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "reward_scaler": scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "update": update,
            "elapsed_s": elapsed,
            "episodes": episodes_seen,
            "recent_returns": list(recent_returns),
            "recent_lengths": list(recent_lengths),
            "recent_learned_returns": list(recent_learned),
        }

    def save_series_due(previous_step: int) -> None:
        # One file at the first update boundary at or after each target step.
        if any(previous_step < target <= step for target in targets):
            save_checkpoint(run_dir / "checkpoints" / f"step_{step:09d}.pt", payload())

    def evaluate() -> dict:
        agent = FeedForwardAgent(net, device)
        out = {}
        for split in c.eval.splits:
            results = run_episodes(
                agent, c.env, split, c.eval.episodes, seed=c.train.seed + 10_000, deterministic=c.eval.deterministic
            )
            out[f"eval/{split}_return"] = summarize(results, c.env.game, c.env.distribution_mode)["mean_return"]
        net.train()
        return out

    obs = torch.from_numpy(env.reset()).to(device)
    if step == 0:
        save_series_due(-1)  # the initial policy opens the series
    bar = tqdm(
        total=c.train.total_steps,
        initial=step,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        desc=f"ppo {c.env.game}",
        file=sys.stderr,
        mininterval=1.0,
    )
    last_save = time.monotonic()
    try:
        while step < c.train.total_steps:
            t_start = time.monotonic()
            if p.anneal_lr:
                frac = 1.0 - step / c.train.total_steps
                optimizer.param_groups[0]["lr"] = frac * p.learning_rate

            # Rollout: the C++ env steps in its threads while we store the step's tensors.
            net.eval()
            for t in range(T):
                with torch.no_grad(), autocast:
                    logits, value = net(obs)
                    logits, value = logits.float(), value.float()
                    action = sample_actions(logits)
                    logprob = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
                env.step_async(action.cpu().numpy())
                obs_buf[t] = obs
                actions_buf[t], logprobs_buf[t], values_buf[t] = action, logprob, value
                next_obs, rewards, dones, infos = env.step_wait()
                if p.reward_scaling:
                    rewards = scaler(rewards, dones)
                rewards_buf[t] = torch.from_numpy(rewards).to(device)
                dones_buf[t] = torch.from_numpy(dones).to(device)
                obs = torch.from_numpy(next_obs).to(device)
                for i in np.flatnonzero(dones):
                    recent_returns.append(infos[i]["episode"]["r"])
                    recent_lengths.append(infos[i]["episode"]["l"])
                    if "learned_r" in infos[i]["episode"]:
                        recent_learned.append(infos[i]["episode"]["learned_r"])
                    episodes_seen += 1
            net.train()

            with torch.no_grad(), autocast:
                last_value = net(obs)[1].float()
            advantages, returns = compute_gae(rewards_buf, values_buf, dones_buf, last_value, p.gamma, p.gae_lambda)

            b_obs = obs_buf.reshape(batch_size, *OBS_SHAPE)
            b_actions, b_logprobs = actions_buf.reshape(-1), logprobs_buf.reshape(-1)
            b_values, b_advantages, b_returns = values_buf.reshape(-1), advantages.reshape(-1), returns.reshape(-1)
            stats_sum: dict[str, torch.Tensor] = {}
            num_minibatches = 0
            for _epoch in range(p.num_epochs):
                perm = torch.randperm(batch_size, device=device)
                epoch_kl = []
                for start in range(0, batch_size, minibatch_size):
                    idx = perm[start : start + minibatch_size]
                    with autocast:
                        logits, values = net(b_obs[idx])
                    loss, stats = ppo_loss(
                        logits.float(),
                        values.float(),
                        b_actions[idx],
                        b_logprobs[idx],
                        b_values[idx],
                        b_advantages[idx],
                        b_returns[idx],
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

            step += batch_size
            update += 1
            elapsed += time.monotonic() - t_start
            var_returns = b_returns.var()
            explained_var = 1 - (b_returns - b_values).var() / var_returns if var_returns > 0 else torch.tensor(0.0)
            metrics = {k: v.item() / num_minibatches for k, v in stats_sum.items()}
            mean_return = float(np.mean(recent_returns)) if recent_returns else None
            metrics.update(
                {
                    "time/elapsed_s": round(elapsed, 1),
                    "time/sps": batch_size / (time.monotonic() - t_start),
                    "charts/episodic_return": mean_return,
                    "charts/learned_return": float(np.mean(recent_learned)) if recent_learned else None,
                    "charts/episodic_length": float(np.mean(recent_lengths)) if recent_lengths else None,
                    "charts/episodes": episodes_seen,
                    "charts/learning_rate": optimizer.param_groups[0]["lr"],
                    "losses/explained_variance": explained_var.item(),
                }
            )
            if next_eval is not None and (step >= next_eval or step >= c.train.total_steps):
                metrics.update(evaluate())
                while next_eval <= step:
                    next_eval += c.eval.every_steps
            logger.log(step, metrics)
            bar.update(batch_size)
            postfix = {"sps": f"{metrics['time/sps']:.0f}"}
            if mean_return is not None:
                postfix["return"] = f"{mean_return:.2f}"
            if "eval/test_return" in metrics:
                postfix["test"] = f"{metrics['eval/test_return']:.2f}"
            bar.set_postfix(postfix)

            save_series_due(step - batch_size)
            if time.monotonic() - last_save >= 60 * c.train.save_interval_minutes or step >= c.train.total_steps:
                save_checkpoint(run_dir / "checkpoints" / "latest.pt", payload())
                last_save = time.monotonic()
    finally:
        bar.close()
        env.close()
        logger.close()
    return run_dir


DESCRIPTION = """Train a PPO agent on a Procgen game: the demonstrator whose checkpoint series T-REX draws
ranked demonstrations from. Writes config.yaml, progress.csv, tb/ and checkpoints/ to run.dir."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = config_parser(
        "python -m baseline_agent.train",
        DESCRIPTION,
        Config,
        "python -m baseline_agent.train -c configs/cpu.yaml env.game=coinrun train.total_steps=2000000",
    )
    args = parser.parse_args(argv)
    config = load_config(Config, args.config, args.overrides)
    if not config.env.held_out:
        print("note: env.num_levels=0 trains on the full level distribution, so no level is held out", file=sys.stderr)
    run_dir = train(config)
    print(f"done: {run_dir}")


if __name__ == "__main__":
    main()
