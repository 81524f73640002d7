"""Learning check: this PPO against stable-baselines3's PPO at the same budget, seeds and settings.

    python bench/learning.py [-c configs/cpu.yaml] [--seeds 0 1 2] [--episodes 100] [--out bench/results/learning]

For each seed it trains this suite's PPO from the config and SB3's PPO with the same hyperparameters
(the Nature CNN of the config, return-based reward scaling through SB3's VecNormalize on rewards
only), then plays ``--episodes`` episodes of each final policy, and of a uniform random policy, on
the held-out test levels. Writes ``<out>/summary.json``, ``<out>/summary.md`` (the README table)
and ``<out>/curves.csv`` (step, method, seed, mean training return). Finished runs are skipped, so
an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from baseline_agent.train import Config, train
from procgen_common.agents import RandomAgent, load_agent
from procgen_common.checkpoint import atomic_write_text
from procgen_common.config import load_config
from procgen_common.env import ProcgenVecEnv
from procgen_common.evaluation import bootstrap_ci, run_episodes, summarize


class SB3Agent:
    def __init__(self, model):
        self.model = model

    def initial_state(self, num_envs):
        return None

    def act(self, obs, state, episode_start, deterministic=False):
        # SB3's CnnPolicy expects CHW frames (VecTransposeImage did this during training).
        actions, _ = self.model.predict(obs.transpose(0, 3, 1, 2), deterministic=deterministic)
        return actions, None


def train_sb3(config: Config, run_dir: Path) -> None:
    """SB3's PPO with the config's hyperparameters; writes progress.csv and model.zip."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize, VecTransposeImage

    p = config.ppo
    env = ProcgenVecEnv(config.env, "train", seed=config.train.seed * 1_000_003)
    venv = VecTransposeImage(env)
    if p.reward_scaling:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=p.gamma, clip_reward=p.reward_clip)

    class Curve(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns: deque[float] = deque(maxlen=100)
            self.rows: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
            return True

        def _on_rollout_end(self) -> None:
            if self.returns:
                self.rows.append((self.num_timesteps, float(np.mean(self.returns))))

    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=p.num_steps,
        batch_size=config.batch_size // p.num_minibatches,
        n_epochs=p.num_epochs,
        learning_rate=p.learning_rate,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip_coef,
        clip_range_vf=p.clip_coef if p.clip_value else None,
        ent_coef=p.ent_coef,
        vf_coef=p.vf_coef,
        max_grad_norm=p.max_grad_norm,
        policy_kwargs={"features_extractor_kwargs": {"features_dim": config.model.hidden_size}},
        seed=config.train.seed,
        device="cpu",
        verbose=0,
    )
    curve = Curve()
    start = time.monotonic()
    model.learn(total_timesteps=config.train.total_steps, callback=curve, progress_bar=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["step,charts/episodic_return"] + [f"{s},{r:.6g}" for s, r in curve.rows]
    atomic_write_text(run_dir / "progress.csv", "\n".join(lines) + "\n")
    model.save(run_dir / "model.zip")
    atomic_write_text(run_dir / "time.json", json.dumps({"train_seconds": time.monotonic() - start}))
    venv.close()


def read_curve(path: Path) -> list[tuple[int, float]]:
    with open(path) as f:
        return [
            (int(r["step"]), float(r["charts/episodic_return"]))
            for r in csv.DictReader(f)
            if r["charts/episodic_return"]
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default="configs/cpu.yaml", help="PPO preset (default configs/cpu.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes per policy (default 100)")
    parser.add_argument(
        "--methods", nargs="+", default=["ours", "sb3"], choices=["ours", "sb3"], help="what to train (default both)"
    )
    parser.add_argument("--out", default="bench/results/learning", help="output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both methods")
    args = parser.parse_args()
    out = Path(args.out)

    results: dict[str, list[dict]] = {"random": [], "ours": [], "sb3": []}
    curves: list[tuple[int, str, int, float]] = []
    for seed in args.seeds:
        config = load_config(
            Config,
            args.config,
            [*args.overrides, f"train.seed={seed}", f"run.dir={out / f'ours-seed{seed}'}", "train.resume=true"],
        )
        env_cfg = config.env
        if "ours" in args.methods:
            run_dir = out / f"ours-seed{seed}"
            latest = run_dir / "checkpoints" / "latest.pt"
            if not (latest.exists() and torch.load(latest, weights_only=True)["step"] >= config.train.total_steps):
                train(config)
            agent, _, _ = load_agent(run_dir)
            res = run_episodes(agent, env_cfg, "test", args.episodes, seed=seed)
            results["ours"].append({"seed": seed, **summarize(res, env_cfg.game, env_cfg.distribution_mode)})
            curves += [(s, "ours", seed, r) for s, r in read_curve(run_dir / "progress.csv")]
            print(f"ours seed {seed}: held-out return {results['ours'][-1]['mean_return']:.2f}", file=sys.stderr)
        if "sb3" in args.methods:
            from stable_baselines3 import PPO

            run_dir = out / f"sb3-seed{seed}"
            if not (run_dir / "model.zip").exists():
                train_sb3(config, run_dir)
            model = PPO.load(run_dir / "model.zip", device="cpu")
            res = run_episodes(SB3Agent(model), env_cfg, "test", args.episodes, seed=seed)
            results["sb3"].append({"seed": seed, **summarize(res, env_cfg.game, env_cfg.distribution_mode)})
            curves += [(s, "sb3", seed, r) for s, r in read_curve(run_dir / "progress.csv")]
            print(f"sb3 seed {seed}: held-out return {results['sb3'][-1]['mean_return']:.2f}", file=sys.stderr)
        res = run_episodes(RandomAgent(seed), env_cfg, "test", args.episodes, seed=seed)
        results["random"].append({"seed": seed, **summarize(res, env_cfg.game, env_cfg.distribution_mode)})

    table = ["| method | held-out return per seed | mean over seeds (95% CI over seeds) |", "|---|---|---|"]
    summary = {
        "config": args.config,
        "overrides": args.overrides,
        "seeds": args.seeds,
        "episodes": args.episodes,
        "results": results,
    }
    for method, rows in results.items():
        if not rows:
            continue
        means = np.array([r["mean_return"] for r in rows])
        low, high = bootstrap_ci(means)
        summary[f"{method}_mean"] = float(means.mean())
        per_seed = ", ".join(f"{m:.2f}" for m in means)
        table.append(f"| {method} | {per_seed} | {means.mean():.2f} ({low:.2f} to {high:.2f}) |")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", "\n".join(table) + "\n")
    lines = ["step,method,seed,train_return"] + [f"{s},{m},{sd},{r:.6g}" for s, m, sd, r in curves]
    atomic_write_text(out / "curves.csv", "\n".join(lines) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
