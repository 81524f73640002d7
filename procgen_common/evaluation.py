"""Evaluating an agent on a level split: per-episode returns, bootstrap CIs, normalised scores.

Every environment plays a fixed number of episodes, so short episodes are not over-counted (running
until N episodes finish anywhere would favour levels that end quickly). A multi-game agent plays each of its games
in turn, the same number of episodes each: the summary then has a row per game and the mean min-max normalised
score over the games, with a bootstrap CI drawn within each game (rliable's stratified bootstrap).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from procgen_common.agents import NoisyAgent, env_config_of, load_agent, resolve_checkpoint
from procgen_common.checkpoint import atomic_write_text, load_checkpoint
from procgen_common.cli import UserError
from procgen_common.env import EnvConfig, ProcgenVecEnv, Split, normalized_score
from procgen_common.episodes import Episode, Job, play_episodes
from procgen_common.logger import close_bar, progress_bar
from procgen_common.stats import bootstrap_ci, stratified_bootstrap_ci


@dataclass(frozen=True)
class EpisodeResults:
    """Per-episode results of one evaluation: arrays of shape ``(episodes,)``."""

    returns: np.ndarray
    """True episode returns (float64)."""
    lengths: np.ndarray
    """Episode lengths in steps (int64)."""
    level_seeds: np.ndarray
    """The Procgen level seed each episode was played on (int64)."""
    games: np.ndarray
    """The game each episode was played in (str)."""

    def of_game(self, game: str) -> EpisodeResults:
        """The episodes of one game."""
        keep = self.games == game
        return EpisodeResults(self.returns[keep], self.lengths[keep], self.level_seeds[keep], self.games[keep])


def run_episodes(
    agent,
    env_config: EnvConfig,
    split: Split,
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    max_envs: int = 64,
    progress=None,
) -> EpisodeResults:
    """Play ``episodes`` episodes of ``agent`` on ``split`` (``episodes`` of each game of a multi-game config); each
    env plays an equal share (its first episodes).

    ``agent`` has ``initial_state(n)`` and ``act(obs, state, episode_start, deterministic)``.
    ``progress`` is an optional callable told the number of finished episodes.
    """
    if len(env_config.game_list) > 1:
        parts, done = [], 0
        for game in env_config.game_list:
            tick = None if progress is None else (lambda n, done=done: progress(done + n))
            one_game = env_config.for_game(game)
            parts.append(run_episodes(agent, one_game, split, episodes, seed, deterministic, max_envs, tick))
            done += episodes
        fields = dataclasses.fields(EpisodeResults)
        return EpisodeResults(*(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields))
    num_envs = min(episodes, max_envs)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1

    def next_job(slot: int, ended: Episode | None) -> Job | None:
        quota[slot] -= ended is not None  # what is left of the env's share
        return Job() if quota[slot] > 0 else None

    env = ProcgenVecEnv(env_config, split=split, num_envs=num_envs, seed=seed)
    finished = []
    try:
        for episode in play_episodes(lambda _: agent, num_envs, next_job, env, deterministic, keep_frames=False):
            finished.append(episode)
            if progress is not None:
                progress(len(finished))
    finally:
        env.close()
    return EpisodeResults(
        np.array([e.true_return for e in finished], np.float64),
        np.array([e.length for e in finished], np.int64),
        np.array([e.level_seed for e in finished], np.int64),
        np.full(len(finished), env_config.game, dtype=object),
    )


def summarize(results: EpisodeResults, game: str, mode: str) -> dict:
    """Mean/std/95% CI of return, normalised score and mean length, as plain JSON-ready values.

    Results of several games give, instead, ``per_game`` (this summary of each game) and the mean normalised score
    over the games (``normalized_score``) with its stratified-bootstrap CI (``ci95_normalized_score``).
    """
    games = list(dict.fromkeys(results.games.tolist()))
    if len(games) > 1:
        per_game = {g: summarize(results.of_game(g), g, mode) for g in games}
        scores = [normalized_score(results.of_game(g).returns, g, mode) for g in games]
        known = [s for s in scores if s is not None]
        return {
            "games": games,
            "episodes": int(results.returns.size),
            "per_game": per_game,
            "normalized_score": float(np.mean([np.mean(s) for s in known])) if len(known) == len(games) else None,
            "ci95_normalized_score": list(stratified_bootstrap_ci(known)) if len(known) == len(games) else None,
        }
    r = results.returns
    mean = float(r.mean()) if r.size else float("nan")
    score = normalized_score(mean, game, mode)
    return {
        "episodes": int(r.size),
        "mean_return": mean,
        "std_return": float(r.std()) if r.size else float("nan"),
        "ci95_return": list(bootstrap_ci(r)),
        "normalized_score": score,
        "mean_length": float(results.lengths.mean()) if r.size else float("nan"),
    }


def run_folder(checkpoint_path: Path) -> Path:
    """The run folder of a checkpoint in its ``checkpoints/`` (a checkpoint outside a run: the folder it lies in)."""
    return checkpoint_path.parent.parent if checkpoint_path.parent.name == "checkpoints" else checkpoint_path.parent


def default_eval_path(checkpoint_path: Path, split: str) -> Path:
    """``<run folder>/eval/<checkpoint>-<split>.json`` (a checkpoint outside a run: beside it)."""
    return run_folder(checkpoint_path) / "eval" / f"{checkpoint_path.stem}-{split}.json"


def evaluate_agent(
    agent,
    env_config: EnvConfig,
    split: Split = "test",
    episodes: int = 100,
    seed: int = 0,
    deterministic: bool = False,
    num_envs: int = 64,
    desc: str | None = None,
) -> tuple[dict, EpisodeResults]:
    """``run_episodes`` with a progress bar; returns ``(summary, results)``: the level range played, the
    settings and ``summarize``'s figures, and the per-episode results."""
    total = episodes * len(env_config.game_list)
    bar = progress_bar(total=total, unit="episode", desc=desc or f"{env_config.label} {split}", leave=False)
    # Sampled actions come from torch's global generator: seed it here (and restore it afterwards) so an evaluation
    # gives the same episodes whatever ran before it in the process.
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            results = run_episodes(
                agent,
                env_config,
                split,
                episodes,
                seed=seed,
                deterministic=deterministic,
                max_envs=num_envs,
                progress=lambda n: bar.update(n - bar.n),
            )
    finally:
        close_bar(bar)
    start, count = env_config.level_range(split)
    summary = {
        "game": env_config.label,
        "distribution_mode": env_config.distribution_mode,
        "split": split,
        "level_range": {"start_level": start, "num_levels": count},
        "held_out": split in env_config.held_out_splits and env_config.held_out,
        "deterministic": deterministic,
        "seed": seed,
        **summarize(results, env_config.game, env_config.distribution_mode),
        "level_seeds": results.level_seeds.tolist(),
    }
    return summary, results


def write_evaluation(summary: dict, results: EpisodeResults, out: str | Path) -> None:
    """The JSON summary to ``out`` and the per-episode CSV (level_seed, return, length) beside it, atomically."""
    out = Path(out)
    atomic_write_text(out, json.dumps(summary, indent=2) + "\n")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["episode", "level_seed", "return", "length", "game"])
    rows = zip(results.level_seeds, results.returns, results.lengths, results.games, strict=True)
    for i, (level, ret, length, game) in enumerate(rows):
        writer.writerow([i, int(level), float(ret), int(length), game])
    atomic_write_text(out.with_suffix(".csv"), text.getvalue())


def read_episode_returns(summary_path: str | Path) -> np.ndarray:
    """The per-episode returns of an evaluation: the ``return`` column of the CSV ``write_evaluation`` put beside
    its JSON summary ``summary_path``."""
    with Path(summary_path).with_suffix(".csv").open(newline="") as f:
        return np.array([float(row["return"]) for row in csv.DictReader(f)])


HELD_OUT = "held-out"
"""What ``--split`` calls every held-out split of a config at once (``test`` and each ``test@<seed>``)."""


def checkpoint_splits(env_config: EnvConfig, split: str, what: str) -> list[Split]:
    """The splits ``split`` names for a checkpoint trained with ``env_config``: itself (train, test, all or one of
    its named held-out splits) or, for ``held-out``, every held-out split; anything else is a UserError naming the
    splits ``what`` (the checkpoint) has."""
    if split == HELD_OUT:
        return env_config.held_out_splits
    if split in ("train", "all", *env_config.held_out_splits):
        return [split]
    allowed = ", ".join(["train", *env_config.held_out_splits, "all", HELD_OUT])
    raise UserError(f"--split: {what} has no split {split!r}; choose one of {allowed}")


def splits_of_checkpoint(path: str | Path, split: str) -> list[Split]:
    """``checkpoint_splits`` of a saved agent (checkpoint file or run folder), read from its saved config."""
    checkpoint_path = resolve_checkpoint(path)
    env_config = env_config_of(load_checkpoint(checkpoint_path), checkpoint_path)
    return checkpoint_splits(env_config, split, str(checkpoint_path))


def games_of(env_config: EnvConfig, games: Sequence[str] | None, what: str) -> EnvConfig:
    """``env_config`` restricted to ``games`` (None: all of them, as trained), in the run's order; a game the run
    did not play is a UserError naming its games."""
    if games is None:
        return env_config
    played = env_config.game_list
    missing = next((g for g in games if g not in played), None)
    if missing is not None:
        raise UserError(f"--games: {what} did not learn {missing}; its games are {', '.join(played)}")
    keep = [g for g in played if g in games]
    if len(keep) == 1:
        return env_config.for_game(keep[0])
    per_game = env_config.num_envs // len(played)  # keeps num_envs a multiple of the games, as validate() asks
    return dataclasses.replace(env_config, games=keep, num_envs=per_game * len(keep))


def evaluate_checkpoint(
    path: str | Path,
    split: Split = "test",
    episodes: int = 100,
    seed: int = 0,
    deterministic: bool = False,
    num_envs: int = 64,
    device: str = "cpu",
    out: str | Path | None = None,
    games: Sequence[str] | None = None,
    epsilon: float = 0.0,
) -> tuple[dict, Path]:
    """Play a saved agent (checkpoint file or run folder) on ``split`` and write the results.

    ``split`` is train, test, all or one of the checkpoint's named held-out splits (``test@1200``; see
    ``checkpoint_splits`` for ``held-out``); ``games`` restricts a multi-game agent to some of its games
    (``games_of``); ``epsilon`` > 0 replaces that share of its actions by uniform random ones (``NoisyAgent``: a
    rung of a noise ladder, seeded by ``seed``). Writes ``evaluate_agent``'s summary, with the checkpoint's path,
    algorithm and step (and ``epsilon`` where > 0), to ``out`` (default ``default_eval_path``, the split's name
    followed by the games' where ``games`` is given) and the per-episode CSV beside it; returns
    ``(summary, json_path)``.
    """
    checkpoint_path = resolve_checkpoint(path)
    agent, checkpoint, env_config = load_agent(checkpoint_path, device)
    splits = checkpoint_splits(env_config, split, str(checkpoint_path))
    if len(splits) > 1:
        raise UserError(f"--split: {split} names {len(splits)} splits of {checkpoint_path}; evaluate one at a time")
    split = splits[0]
    env_config = games_of(env_config, games, str(checkpoint_path))
    if split in env_config.held_out_splits and not env_config.held_out:
        print(
            f"note: {checkpoint_path} trained on the full level distribution (num_levels=0): no level is held out",
            file=sys.stderr,
        )
    if epsilon > 0:
        agent = NoisyAgent(agent, epsilon, seed)
    summary, results = evaluate_agent(agent, env_config, split, episodes, seed, deterministic, num_envs)
    summary = (
        {
            "checkpoint": str(checkpoint_path),
            "algo": checkpoint.get("algo"),
            "step": checkpoint.get("step"),
        }
        | ({"epsilon": epsilon} if epsilon > 0 else {})
        | summary
    )
    name = split if games is None else f"{split}-{env_config.label}"
    out = Path(out) if out else default_eval_path(checkpoint_path, name)
    write_evaluation(summary, results, out)
    return summary, out
