"""What every trainer of the suite does around its own updates, written once.

``Run`` is what every trainer shares, the reward model's included: the run folder's lock, the checkpoint to
resume from, the device, torch's thread count and seed, bf16 autocast, then ``config.yaml``, ``progress.csv``
and TensorBoard through ``RunLogger``, and the tqdm bar.
``TrainingRun`` adds what every RL trainer does, whatever the algorithm: the training env, the checkpoint series
``checkpoints/step_<step>.pt`` (evenly spaced from the initial to the final policy) and
``checkpoints/latest.pt`` for resuming, and the periodic held-out evaluation.
``EpisodeStats`` keeps the last 100 training episodes' true and learned returns side by side.

A multi-game run (``env.games``) logs each game beside the totals: ``charts/<game>/episodic_return`` and
``charts/<game>/episodic_length`` over that game's last 100 episodes, ``charts/normalized_score`` (the mean over
the games of their min-max normalised recent returns), and at each evaluation ``eval/<game>/<split>_return`` and
``eval/<split>_normalized_score``; ``charts/episodic_return`` and ``eval/<split>_return`` stay the mean over all
episodes, every game's alike. A single-game run logs none of these columns.

Env wrappers with state of their own (a learned reward's running scaler) are saved and restored here too, for
every algorithm: any wrapper in the training env's chain whose class has ``state_dict`` and ``load_state_dict``
(``stateful_wrappers``).

An algorithm's loop stays flat: it builds its networks, restores them from ``run.resume_from``, calls
``run.begin(...)``, then per iteration collects experience, updates, and calls ``run.end_iteration``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import tqdm
from stable_baselines3.common.vec_env import VecEnv

from procgen_common.checkpoint import save_checkpoint
from procgen_common.config import save_config, to_dict
from procgen_common.env import ProcgenVecEnv, normalized_score
from procgen_common.evaluation import run_episodes, summarize
from procgen_common.logger import RunLogger, close_bar, progress_bar
from procgen_common.runs import FolderLock, pick_device, prepare_run_dir, use_threads
from procgen_common.video import record_eval_video


def checkpoint_steps(total_steps: int, num_checkpoints: int) -> list[int]:
    """Target steps of the checkpoint series: evenly spaced from 0 to total_steps (final only if 1)."""
    if num_checkpoints == 1:
        return [total_steps]
    return [round(k * total_steps / (num_checkpoints - 1)) for k in range(num_checkpoints)]


# Columns every trainer logs; each algorithm adds its own losses.
COMMON_COLUMNS = [
    "time/elapsed_s",
    "time/sps",
    "charts/episodic_return",
    "charts/learned_return",
    "charts/episodic_length",
    "charts/episodes",
]
EVAL_SPLITS = ("train", "test", "all")
EVAL_COLUMNS = [f"eval/{split}_return" for split in EVAL_SPLITS]


def game_columns(games: Sequence[str]) -> list[str]:
    """The columns a multi-game run adds (none for one game): the recent episodes of each game and the mean
    normalised score, then each game's evaluation return and the evaluation's mean normalised score, per split."""
    if len(games) < 2:
        return []
    return [
        *(f"charts/{game}/{stat}" for game in games for stat in ("episodic_return", "episodic_length")),
        "charts/normalized_score",
        *(f"eval/{game}/{split}_return" for split in EVAL_SPLITS for game in games),
        *(f"eval/{split}_normalized_score" for split in EVAL_SPLITS),
    ]


def stateful_wrappers(env: VecEnv) -> dict[str, object]:
    """The wrappers of ``env``'s chain (from the outside in, down ``.venv``) whose class has ``state_dict`` and
    ``load_state_dict``, by their checkpoint key: the class's ``checkpoint_key``, else its name.

    The class is asked, not the object: SB3's ``VecEnvWrapper`` forwards unknown attributes down the chain, so
    every wrapper above a stateful one would seem stateful too.
    """
    found = {}
    while env is not None:
        cls = type(env)
        if callable(getattr(cls, "state_dict", None)) and callable(getattr(cls, "load_state_dict", None)):
            found[getattr(cls, "checkpoint_key", cls.__name__)] = env
        env = getattr(env, "venv", None)
    return found


class EpisodeStats:
    """The last 100 training episodes: true return, learned return (under a learned reward), length; in a
    multi-game run (several ``games``) also the last 100 returns and lengths of each game, whose normalised scores
    (Procgen's ranges for ``distribution_mode``) give ``charts/normalized_score``."""

    def __init__(self, games: Sequence[str] = (), distribution_mode: str = "easy"):
        self.returns: deque[float] = deque(maxlen=100)
        self.learned_returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.episodes = 0
        self.distribution_mode = distribution_mode
        games = list(games) if len(games) > 1 else []
        self.game_returns: dict[str, deque[float]] = {game: deque(maxlen=100) for game in games}
        self.game_lengths: dict[str, deque[int]] = {game: deque(maxlen=100) for game in games}

    def record(self, dones: np.ndarray, infos: list[dict]) -> None:
        for i in np.flatnonzero(dones):
            episode = infos[i]["episode"]
            self.returns.append(episode["r"])
            self.lengths.append(episode["l"])
            if "learned_r" in episode:
                self.learned_returns.append(episode["learned_r"])
            if self.game_returns:
                self.game_returns[episode["game"]].append(episode["r"])
                self.game_lengths[episode["game"]].append(episode["l"])
            self.episodes += 1

    @property
    def mean_return(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    def metrics(self) -> dict:
        row = {
            "charts/episodic_return": self.mean_return,
            "charts/learned_return": float(np.mean(self.learned_returns)) if self.learned_returns else None,
            "charts/episodic_length": float(np.mean(self.lengths)) if self.lengths else None,
            "charts/episodes": self.episodes,
        }
        if not self.game_returns:
            return row
        scores = []
        for game, returns in self.game_returns.items():
            mean = float(np.mean(returns)) if returns else None
            lengths = self.game_lengths[game]
            row[f"charts/{game}/episodic_return"] = mean
            row[f"charts/{game}/episodic_length"] = float(np.mean(lengths)) if lengths else None
            scores.append(None if mean is None else normalized_score(mean, game, self.distribution_mode))
        # None until every game has finished an episode (and has a normalisation range).
        row["charts/normalized_score"] = None if None in scores else float(np.mean(scores))
        return row

    def state_dict(self) -> dict:
        # The keys baseline_agent.train's checkpoints use.
        state = {
            "episodes": self.episodes,
            "recent_returns": list(self.returns),
            "recent_lengths": list(self.lengths),
            "recent_learned_returns": list(self.learned_returns),
        }
        if self.game_returns:
            state["recent_game_returns"] = {game: list(d) for game, d in self.game_returns.items()}
            state["recent_game_lengths"] = {game: list(d) for game, d in self.game_lengths.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        # Checkpoints from before multi-game runs have no per-game entries: those deques start empty.
        self.episodes = state["episodes"]
        self.returns.extend(state["recent_returns"])
        self.lengths.extend(state["recent_lengths"])
        self.learned_returns.extend(state.get("recent_learned_returns", []))
        for game, returns in state.get("recent_game_returns", {}).items():
            self.game_returns[game].extend(returns)
        for game, lengths in state.get("recent_game_lengths", {}).items():
            self.game_lengths[game].extend(lengths)


class Run:
    """One trainer's run folder, held until ``close``, with the checkpoint to resume from (``resume_from``, None for a
    fresh run), the device and bf16 autocast. ``config`` needs ``train`` and ``log`` sections; ``must_match`` names
    the sections a resume must keep."""

    def __init__(self, run_dir: Path, config, must_match: Sequence[str]):
        self.run_dir = run_dir
        self.lock = FolderLock(run_dir, "run.dir")  # held until close()
        try:
            self.resume_from = prepare_run_dir(run_dir, config, config.train.resume, must_match)
            self.device = pick_device(config.train.device, "train.device")
        except BaseException:
            self.lock.release()
            raise
        self.config = config = use_threads(config)
        torch.manual_seed(config.train.seed)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.train.precision == "bf16")
        self.logger: RunLogger | None = None
        self.bar: tqdm.tqdm | None = None

    def open_logs(self, columns: Sequence[str], step: int, **bar) -> None:
        """Write config.yaml, open progress.csv (kept up to ``step``), TensorBoard and a progress bar (``bar``: tqdm's
        arguments). A resume restores torch's random state here: call it after the networks are built."""
        c = self.config
        if self.resume_from is not None:
            torch.set_rng_state(self.resume_from["rng"]["torch"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(c, self.run_dir / "config.yaml")
        # With train.resume=true and no checkpoint, rows from the unsaved attempt are dropped (step 0).
        resume_step = step if c.train.resume else None
        self.logger = RunLogger(self.run_dir, list(columns), c.log, resume_step=resume_step, run_config=to_dict(c))
        self.bar = progress_bar(dynamic_ncols=True, mininterval=1.0, **bar)

    def close_logs(self) -> None:
        close_bar(self.bar)
        if self.logger is not None:
            self.logger.close()
        self.bar = self.logger = None

    def close(self) -> None:
        self.close_logs()
        self.lock.release()


class TrainingRun(Run):
    """The training env, checkpoint series, evaluation and episode statistics of one RL training run of ``algo``.

    ``config`` has the sections of ``baseline_agent.train.Config`` (env, train, eval, run, log).
    """

    def __init__(self, config, algo: str, columns: Sequence[str], must_match: Sequence[str]):
        super().__init__(config.run_dir, config, must_match)
        self.algo = algo
        self.columns = [*COMMON_COLUMNS, *columns, *EVAL_COLUMNS, *game_columns(config.env.game_list)]
        self.step, self.update, self.elapsed = 0, 0, 0.0
        self.episodes = EpisodeStats(config.env.game_list, config.env.distribution_mode)
        if self.resume_from is not None:
            saved = self.resume_from
            self.step, self.update, self.elapsed = saved["step"], saved["update"], saved["elapsed_s"]
            self.episodes.load_state_dict(saved)
            done = " (already finished)" if self.step >= self.config.train.total_steps else ""
            print(f"resuming {self.run_dir} from step {self.step:,}{done}", file=sys.stderr)
        self.wrappers: dict[str, object] = {}

    def make_env(self, wrap_env: Callable[[VecEnv], VecEnv] | None = None) -> VecEnv:
        """The training env, wrapped by ``wrap_env`` (e.g. the learned reward) when given."""
        c = self.config
        # A resumed run draws a new level order: Procgen's C++ state is not saved, so replaying the
        # first seed's levels would repeat the start of training.
        env = ProcgenVecEnv(c.env, "train", seed=c.train.seed * 1_000_003 + self.update)
        env = wrap_env(env) if wrap_env is not None else env
        self.wrappers = stateful_wrappers(env)
        for key, wrapper in self.wrappers.items():
            if self.resume_from is not None and key in self.resume_from:
                wrapper.load_state_dict(self.resume_from[key])
        return env

    def begin(self, state: Callable[[], dict], make_agent: Callable[[], object], net: torch.nn.Module) -> None:
        """Open the logs and the progress bar. ``state()`` gives the algorithm's checkpoint entries (at least
        ``model``); ``make_agent()`` an agent for evaluation, after which ``net`` returns to train mode."""
        c = self.config
        self.state, self.make_agent, self.net = state, make_agent, net
        bar = dict(
            total=c.train.total_steps,
            initial=self.step,
            unit="step",
            unit_scale=True,
            desc=f"{self.algo} {c.env.label}",
        )
        self.open_logs(self.columns, self.step, **bar)
        self.targets = checkpoint_steps(c.train.total_steps, c.train.num_checkpoints)
        every = c.eval.every_steps
        self.next_eval = (self.step // every + 1) * every if every else None
        self.next_video = 0  # the first evaluation records one
        if self.step == 0:
            self._save_series_due(-1)  # the initial policy opens the series
        self.last_save = time.monotonic()

    @property
    def done(self) -> bool:
        return self.step >= self.config.train.total_steps

    def payload(self) -> dict:
        return {
            "algo": self.algo,
            "step": self.step,
            "mean_return": self.episodes.mean_return,
            "config": to_dict(self.config),
            **self.state(),
            # A wrapper without state (a learned reward that is not scaled) adds no entry.
            **{key: state for key, wrapper in self.wrappers.items() if (state := wrapper.state_dict())},
            "rng": {"torch": torch.get_rng_state()},
            "update": self.update,
            "elapsed_s": self.elapsed,
            **self.episodes.state_dict(),
        }

    def _save_series_due(self, previous_step: int) -> None:
        # One file at the first iteration boundary at or after each target step.
        if any(previous_step < target <= self.step for target in self.targets):
            save_checkpoint(self.run_dir / "checkpoints" / f"step_{self.step:09d}.pt", self.payload())

    def evaluate(self) -> dict:
        c = self.config
        # The evaluation draws its sampled actions from its own seeded stream and leaves the training streams as it
        # found them, so eval.* settings never change the trained weights (and a run with its evaluations on
        # replays one with them off).
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(c.train.seed + 10_000)
            return self._evaluate()

    def _evaluate(self) -> dict:
        c = self.config
        agent = self.make_agent()
        out = {}
        try:
            for split in c.eval.splits:
                results = run_episodes(
                    agent, c.env, split, c.eval.episodes, seed=c.train.seed + 10_000, deterministic=c.eval.deterministic
                )
                summary = summarize(results, c.env.game, c.env.distribution_mode)
                if "per_game" in summary:
                    # Every game plays as many episodes: the mean over all of them is the mean of the games' means.
                    out[f"eval/{split}_return"] = float(results.returns.mean())
                    out[f"eval/{split}_normalized_score"] = summary["normalized_score"]
                    for game, of_game in summary["per_game"].items():
                        out[f"eval/{game}/{split}_return"] = of_game["mean_return"]
                else:
                    out[f"eval/{split}_return"] = summary["mean_return"]
            if c.eval.record_video and self.step >= self.next_video:
                # A multi-game run's video has one place per game.
                path = record_eval_video(agent, c.env, self.run_dir, self.step, episodes=c.eval.video_episodes,
                                         split=c.eval.splits[0], deterministic=c.eval.deterministic,
                                         seed=c.train.seed + 20_000)  # fmt: skip
                self.logger.log_video(self.step, "videos/eval", path)
                every = c.eval.video_every_steps
                self.next_video = (self.step // every + 1) * every if every else 0
        finally:
            self.net.train()
        return out

    def end_iteration(self, env_steps: int, t_start: float, metrics: dict) -> dict:
        """Count ``env_steps`` more steps, evaluate when due, log a row, checkpoint; returns the logged row."""
        c = self.config
        self.step += env_steps
        self.update += 1
        self.elapsed += time.monotonic() - t_start
        row = {
            "time/elapsed_s": round(self.elapsed, 3),
            "time/sps": env_steps / (time.monotonic() - t_start),
            **self.episodes.metrics(),
            **metrics,
        }
        if self.next_eval is not None and (self.step >= self.next_eval or self.done):
            row.update(self.evaluate())
            while self.next_eval <= self.step:
                self.next_eval += c.eval.every_steps
        self.logger.log(self.step, row)
        self.bar.update(env_steps)
        postfix = {"sps": f"{row['time/sps']:.0f}"}
        if row["charts/episodic_return"] is not None:
            postfix["return"] = f"{row['charts/episodic_return']:.2f}"
        if row["charts/learned_return"] is not None:
            postfix["learned"] = f"{row['charts/learned_return']:.2f}"
        if "eval/test_return" in row:
            postfix["test"] = f"{row['eval/test_return']:.2f}"
        self.bar.set_postfix(postfix)
        self._save_series_due(self.step - env_steps)
        if time.monotonic() - self.last_save >= 60 * c.train.save_interval_minutes or self.done:
            save_checkpoint(self.run_dir / "checkpoints" / "latest.pt", self.payload())
            self.last_save = time.monotonic()
        return row
