"""Evaluating an agent on a level split: per-episode returns, bootstrap CIs, normalised scores.

Every environment plays a fixed number of episodes, so short episodes are not over-counted (running
until N episodes finish anywhere would favour levels that end quickly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procgen_common.env import EnvConfig, ProcgenVecEnv, Split, normalized_score


@dataclass(frozen=True)
class EpisodeResults:
    """Per-episode results of one evaluation: arrays of shape ``(episodes,)``."""

    returns: np.ndarray
    """True episode returns (float64)."""
    lengths: np.ndarray
    """Episode lengths in steps (int64)."""
    level_seeds: np.ndarray
    """The Procgen level seed each episode was played on (int64)."""


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, samples: int = 10_000, seed: int = 0):
    """Percentile bootstrap confidence interval of the mean: ``(low, high)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(samples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def run_episodes(
    agent,
    env_config: EnvConfig,
    split: Split,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    max_envs: int = 64,
    max_steps: int = 100_000,
    progress=None,
) -> EpisodeResults:
    """Play ``episodes`` episodes of ``agent`` on ``split``; each env plays an equal share.

    ``agent`` has ``initial_state(n)`` and ``act(obs, state, episode_start, deterministic)``.
    ``progress`` is an optional callable told the number of finished episodes.
    """
    num_envs = min(episodes, max_envs)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    env = ProcgenVecEnv(env_config, split=split, num_envs=num_envs, seed=seed)
    returns, lengths, seeds = [], [], []
    try:
        obs = env.reset()
        state = agent.initial_state(num_envs)
        episode_start = np.ones(num_envs, dtype=bool)
        done_count = np.zeros(num_envs, dtype=np.int64)
        for _ in range(max_steps):
            actions, state = agent.act(obs, state, episode_start, deterministic)
            obs, _, dones, infos = env.step(actions)
            episode_start = dones
            for i in np.flatnonzero(dones):
                if done_count[i] < quota[i]:
                    ep = infos[i]["episode"]
                    returns.append(ep["r"])
                    lengths.append(ep["l"])
                    seeds.append(ep["level_seed"])
                    done_count[i] += 1
                    if progress is not None:
                        progress(len(returns))
            if (done_count >= quota).all():
                break
    finally:
        env.close()
    return EpisodeResults(np.array(returns, np.float64), np.array(lengths, np.int64), np.array(seeds, np.int64))


def summarize(results: EpisodeResults, game: str, mode: str) -> dict:
    """Mean/std/95% CI of return, normalised score and mean length, as plain JSON-ready values."""
    r = results.returns
    low, high = bootstrap_ci(r)
    mean = float(r.mean()) if r.size else float("nan")
    score = normalized_score(mean, game, mode)
    return {
        "episodes": int(r.size),
        "mean_return": mean,
        "std_return": float(r.std()) if r.size else float("nan"),
        "ci95_return": [low, high],
        "normalized_score": score,
        "mean_length": float(results.lengths.mean()) if r.size else float("nan"),
    }
