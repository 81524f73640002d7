"""stable-baselines3's PPO on the suite's env and reward wrapper: a reference implementation for cross-checks.

The same env (``ProcgenVecEnv``, wrapped by the learned reward when asked), the same ``ppo.*``
hyperparameters and the Nature CNN (SB3's ``CnnPolicy``); ppo.reward_scaling is SB3's ``VecNormalize(norm_obs=False)``,
bit for bit the suite's ``RewardScaler``. SB3 runs one rollout and update per ``learn`` call, so the run folder,
logs, checkpoints and evaluation are the suite's (``TrainingRun``). Checkpoints hold the policy's
``state_dict`` in the suite's format (no pickled SB3 zip), so ``test_policy.py`` plays them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from procgen_common.config import from_dict
from procgen_common.env import NUM_ACTIONS, OBS_SHAPE
from procgen_common.networks import ModelConfig
from procgen_common.sb3_agent import SB3Agent
from procgen_common.training_run import TrainingRun

ALGO = "sb3_ppo"

# SB3's logged keys -> this suite's progress.csv columns (entropy: SB3 logs the negated entropy).
SB3_KEYS = {
    "train/policy_gradient_loss": "losses/policy_loss",
    "train/value_loss": "losses/value_loss",
    "train/approx_kl": "losses/approx_kl",
    "train/clip_fraction": "losses/clipfrac",
    "train/explained_variance": "losses/explained_variance",
}
PROGRESS_COLUMNS = ["charts/learning_rate", "losses/entropy", *SB3_KEYS.values()]


def policy_kwargs(model: ModelConfig, adam_eps: float = 1e-5) -> dict:
    """``CnnPolicy`` settings for ``model`` (SB3's Nature CNN with ``hidden_size`` features, no extra layers)."""
    return {"features_extractor_kwargs": {"features_dim": model.hidden_size}, "optimizer_kwargs": {"eps": adam_eps}}


def load_sb3_ppo_agent(checkpoint: dict, device: torch.device | str = "cpu") -> SB3Agent:
    """Rebuild an sb3_ppo agent from a checkpoint (``policies.registry``)."""
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    model = from_dict(ModelConfig, checkpoint["config"]["model"], "in the checkpoint")
    observation_space = spaces.Box(0, 255, (OBS_SHAPE[2], OBS_SHAPE[0], OBS_SHAPE[1]), dtype=np.uint8)
    policy = ActorCriticCnnPolicy(
        observation_space, spaces.Discrete(NUM_ACTIONS), lambda _: 0.0, **policy_kwargs(model)
    )
    policy.load_state_dict(checkpoint["model"])
    return SB3Agent(policy.to(device), device)


def train(config, wrap_env: Callable[[VecEnv], VecEnv] | None, must_match: Sequence[str]) -> Path:
    """Train SB3's PPO as configured (a ``policies.train.Config``); returns the run folder."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    c, p = config, config.ppo
    run = TrainingRun(config, ALGO, PROGRESS_COLUMNS, must_match)
    env = run.make_env(wrap_env)
    if p.reward_scaling:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, clip_reward=p.reward_clip, gamma=p.gamma)

    def learning_rate(_progress_remaining: float) -> float:
        return p.learning_rate * (1.0 - run.step / c.train.total_steps) if p.anneal_lr else p.learning_rate

    model = PPO(
        "CnnPolicy",
        env,
        learning_rate=learning_rate,
        n_steps=p.num_steps,
        batch_size=c.batch_size // p.num_minibatches,
        n_epochs=p.num_epochs,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip_coef,
        clip_range_vf=p.clip_coef if p.clip_value else None,
        normalize_advantage=p.norm_adv,
        ent_coef=p.ent_coef,
        vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm,
        target_kl=p.target_kl,
        policy_kwargs=policy_kwargs(c.model, p.adam_eps),
        seed=c.train.seed * 1_000_003 + run.update,
        device=run.device,
        verbose=0,
    )
    if run.resume_from is not None:
        model.policy.load_state_dict(run.resume_from["model"])
        model.policy.optimizer.load_state_dict(run.resume_from["optimizer"])
        if p.reward_scaling:
            saved = run.resume_from["reward_scaler"]
            env.ret_rms.mean, env.ret_rms.var, env.ret_rms.count = saved["mean"], saved["var"], saved["count"]

    def state() -> dict:
        out = {"model": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict()}
        if p.reward_scaling:
            rms = env.ret_rms
            out["reward_scaler"] = {"mean": float(rms.mean), "var": float(rms.var), "count": float(rms.count)}
        return out

    class RecordEpisodes(BaseCallback):
        def _on_step(self) -> bool:
            run.episodes.record(self.locals["dones"], self.locals["infos"])
            return True

    run.begin(state, lambda: SB3Agent(model.policy, run.device), model.policy)
    try:
        first = True
        while not run.done:
            t_start = time.monotonic()
            # One rollout and one update; the env is reset only by the first call.
            model.learn(c.batch_size, callback=RecordEpisodes(), reset_num_timesteps=first, log_interval=None)
            first = False
            logged = model.logger.name_to_value
            metrics = {column: float(logged[key]) for key, column in SB3_KEYS.items() if key in logged}
            metrics["losses/entropy"] = -float(logged["train/entropy_loss"])
            metrics["charts/learning_rate"] = model.policy.optimizer.param_groups[0]["lr"]
            run.end_iteration(c.batch_size, t_start, metrics)
    finally:
        run.close()
        env.close()
    return run.run_dir
