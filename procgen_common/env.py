"""The Procgen vector environment used by every part of the suite.

``ProcgenVecEnv`` wraps ``procgen.ProcgenGym3Env`` (all environments stepped in C++ threads, no
subprocesses) as a stable-baselines3 ``VecEnv`` with gymnasium spaces, so SB3 algorithms and
wrappers run on it unchanged. Observations are uint8 HWC frames ``(num_envs, 64, 64, 3)``.

Episode ends follow SB3's conventions: ``dones[i]`` is True on the step that ended an episode,
``obs[i]`` is then already the next episode's first frame, and ``infos[i]`` holds

- ``terminal_observation``: Procgen resets inside its C++ step and never renders the frame after
  the last action, so this is the last frame the agent acted on (the pre-action frame of the
  final step), which is also the frame a learned reward must score for that step;
- ``episode``: ``{"r": return, "l": length, "level_seed": seed}`` (SB3 Monitor's keys plus the seed);
- ``level_complete``: whether Procgen counted the level as solved.

Every step's infos also carry ``level_seed``: the level of the frame the action was chosen on.

Level splits (``EnvConfig``): ``train`` is ``[start_level, start_level + num_levels)``; ``test``
is ``[test_start_level, test_start_level + test_num_levels)``, checked never to meet the training
range; ``test@S`` for each ``S`` in ``test_splits`` is ``[S, S + test_num_levels)``, a further held-out split;
``all`` is Procgen's full level distribution.

Several games (``EnvConfig.games``, the multi-task setting of Cobbe et al. 2020): one gym3 environment per game,
``num_envs / len(games)`` environments each, concatenated in the listed order (every Procgen game shares the
15-action space and the 64x64 frames); each step's infos and each episode then carry ``game``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from procgen_common.config import Checked, bounded, closest

# Min-max return ranges from the Procgen paper (appendix), used for normalised scores: game -> (easy, hard).
_PAPER_RANGES = {
    "bigfish": ((1, 40), (0, 40)),
    "bossfight": ((0.5, 13), (0.5, 13)),
    "caveflyer": ((3.5, 12), (2, 13.4)),
    "chaser": ((0.5, 13), (0.5, 14.2)),
    "climber": ((2, 12.6), (1, 12.6)),
    "coinrun": ((5, 10), (5, 10)),
    "dodgeball": ((1.5, 19), (1.5, 19)),
    "fruitbot": ((-1.5, 32.4), (-0.5, 27.2)),
    "heist": ((3.5, 10), (2, 10)),
    "jumper": ((1, 10), (1, 10)),
    "leaper": ((1.5, 10), (1.5, 10)),
    "maze": ((5, 10), (4, 10)),
    "miner": ((1.5, 13), (1.5, 20)),
    "ninja": ((3.5, 10), (2, 10)),
    "plunder": ((4.5, 30), (3, 30)),
    "starpilot": ((2.5, 64), (1.5, 35)),
}
GAMES = tuple(_PAPER_RANGES)  # the 16 games, alphabetical
RETURN_RANGES = {mode: {game: r[k] for game, r in _PAPER_RANGES.items()} for k, mode in enumerate(("easy", "hard"))}
NUM_ACTIONS = 15
OBS_SHAPE = (64, 64, 3)
Split = str
"""``train``, ``test``, ``all`` or a named held-out split ``test@<first level seed>`` (``EnvConfig.test_splits``)."""


def check_game(game: str) -> None:
    """Raise ValueError naming the 16 games (with a did-you-mean) if ``game`` is not one."""
    if game not in GAMES:
        raise ValueError(f"game: unknown Procgen game {game!r}{closest(game, GAMES)}; choose one of {', '.join(GAMES)}")


def normalized_score(mean_return, game: str, mode: str):
    """Min-max normalised return (a float, or an array of returns elementwise) with the Procgen paper's ranges
    (None where no range exists)."""
    rng = RETURN_RANGES.get(mode, {}).get(game)
    if rng is None:
        return None
    low, high = rng
    return (mean_return - low) / (high - low)


@dataclass(frozen=True)
class EnvConfig(Checked):
    """Which Procgen game and levels to play, and Procgen's own options."""

    game: str = "starpilot"
    """Procgen game: bigfish, bossfight, caveflyer, chaser, climber, coinrun, dodgeball, fruitbot, heist,
    jumper, leaper, maze, miner, ninja, plunder or starpilot. Ignored when ``games`` is set."""
    games: list[str] = field(default_factory=list)
    """Several games trained as one multi-task run, e.g. [coinrun, starpilot, fruitbot]: num_envs is split evenly
    across them, in this order, and each plays the same level ranges. Empty = the one game ``game``."""
    num_envs: int = bounded(64, 1)
    """Environments stepped in parallel (one batch of observations per step)."""
    num_levels: int = bounded(200, 0)
    """Training levels: level seeds [start_level, start_level + num_levels). 0 = the full distribution
    (then no level is held out)."""
    start_level: int = bounded(0, 0)
    """First training level seed."""
    distribution_mode: Literal["easy", "hard", "extreme", "memory", "exploration"] = "easy"
    """Procgen difficulty mode."""
    test_start_level: int | None = bounded(None, 0)
    """First level seed of the held-out test split; null = right after the training range."""
    test_num_levels: int = bounded(1000, 1)
    """Number of level seeds in the held-out test split (must not meet the training range), and in each of
    ``test_splits``."""
    test_splits: list[int] = field(default_factory=list)
    """More held-out splits beside ``test``: the first level seed of each, test_num_levels long, named test@<seed>
    (e.g. num_levels 1000, test_num_levels 200, test_splits [1200, 1400]: test = 1000-1199, test@1200, test@1400).
    Each must meet neither the training range nor another held-out split."""
    use_backgrounds: bool = True
    """Procgen option: draw background images."""
    restrict_themes: bool = False
    """Procgen option: one visual theme per game."""
    use_monochrome_assets: bool = False
    """Procgen option: monochrome rectangles instead of sprites."""
    paint_vel_info: bool = False
    """Procgen option: paint the agent's velocity in the top-left corner."""
    use_sequential_levels: bool = False
    """Procgen option: reaching the end of a level continues into the next one."""
    center_agent: bool = True
    """Procgen option: centre the view on the agent."""
    num_threads: int = bounded(4, 0)
    """C++ threads Procgen steps the environments with (0 = step in the calling thread; fork-safe)."""

    @property
    def test_start(self) -> int:
        return self.start_level + self.num_levels if self.test_start_level is None else self.test_start_level

    @property
    def game_list(self) -> list[str]:
        """The games this config plays: ``games``, or ``[game]``."""
        return list(self.games) or [self.game]

    @property
    def label(self) -> str:
        """The game, or the games joined by '+', for titles and progress bars."""
        return "+".join(self.game_list)

    @property
    def held_out_splits(self) -> list[str]:
        """The held-out split names: ``test``, then ``test@<seed>`` for each of ``test_splits``."""
        return ["test", *(f"test@{start}" for start in self.test_splits)]

    def level_range(self, split: Split) -> tuple[int, int]:
        """``(start_level, num_levels)`` for a split, in Procgen's terms (num_levels 0 = unbounded)."""
        if split == "train":
            return self.start_level, self.num_levels
        if split == "test":
            return self.test_start, self.test_num_levels
        if split == "all":
            return 0, 0
        if split in self.held_out_splits:
            return int(split.removeprefix("test@")), self.test_num_levels
        raise ValueError(f"split: unknown split {split!r}; choose train, {', '.join(self.held_out_splits)} or all")

    def for_game(self, game: str) -> EnvConfig:
        """This config for one of its games alone (a multi-game agent's evaluation, demos or videos of one game)."""
        if game not in self.game_list:
            raise ValueError(f"game: {game} is not one of this run's games ({', '.join(self.game_list)})")
        return dataclasses.replace(self, game=game, games=[])

    @property
    def held_out(self) -> bool:
        """Whether the test split is unseen in training (False when training uses every level)."""
        return self.num_levels > 0

    def validate(self) -> None:
        check_game(self.game)
        for game in self.games:
            if game not in GAMES:
                hint = closest(game, GAMES)
                raise ValueError(f"games: unknown Procgen game {game!r}{hint}; choose from {', '.join(GAMES)}")
        if len(set(self.games)) < len(self.games):
            twice = next(g for g in self.games if self.games.count(g) > 1)
            raise ValueError(f"games: {twice} is listed twice; list each game once")
        if self.games and self.num_envs % len(self.games):
            raise ValueError(
                f"num_envs: {self.num_envs} environments do not divide evenly across {len(self.games)} games; "
                f"choose a multiple of {len(self.games)}"
            )
        train_end = self.start_level + self.num_levels
        tests = [("test_start_level", self.test_start), *(("test_splits", start) for start in self.test_splits)]
        for i, (key, start) in enumerate(tests):
            end = start + self.test_num_levels
            if self.num_levels > 0 and start < train_end and self.start_level < end:
                raise ValueError(
                    f"{key}: the held-out levels [{start}, {end}) meet the training levels "
                    f"[{self.start_level}, {train_end}); choose a first level >= {train_end} "
                    f"or a range ending at or before {self.start_level}"
                )
            for other_key, other in tests[:i]:
                if start < other + self.test_num_levels and other < end:
                    raise ValueError(
                        f"test_splits: the held-out split at {start} meets the one at {other} ({other_key}); "
                        f"held-out splits of {self.test_num_levels} levels must not overlap"
                    )
            if end > 2**31 - 1:
                raise ValueError(f"{key}: level seeds must stay below 2**31 - 1")


def one_level_config(env_config: EnvConfig, level_seed: int) -> EnvConfig:
    """A copy of ``env_config`` whose training split is exactly one level, ``level_seed``.

    Its test split moves to the next seed (the run's own may meet the new one-level range), and it steps
    in the calling thread: callers hold many one-env instances, too small for a C++ thread pool apiece.
    """
    return dataclasses.replace(
        env_config, start_level=level_seed, num_levels=1, test_start_level=None, test_num_levels=1, num_threads=0
    )


def import_procgen() -> None:
    """Import procgen with the old gym it needs, keeping gym's own deprecation banner (printed on import by the
    gym_notices package) off the user's terminal: the suite uses gymnasium and only Procgen touches gym."""
    if "gym" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()):
            import gym  # noqa: F401

    import procgen  # noqa: F401


class ProcgenVecEnv(VecEnv):
    """Procgen as an SB3 ``VecEnv``: uint8 HWC frames, episode statistics and level seeds in infos."""

    render_mode = "rgb_array"  # get_images() returns the current frames

    def __init__(self, config: EnvConfig, split: Split = "train", num_envs: int | None = None, seed: int = 0):
        config.validate()
        self.config = config
        self.split = split
        self.seed_value = seed
        self.start_level, self.num_levels = config.level_range(split)
        n = num_envs if num_envs is not None else config.num_envs
        super().__init__(n, gym.spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8), gym.spaces.Discrete(NUM_ACTIONS))
        self._gym3 = None
        self._game_envs: list = []
        self._actions: np.ndarray | None = None
        self._seed_pending = False
        self._make()

    def _make(self) -> None:
        import_procgen()
        import gym3
        import procgen  # imported here: it loads the C++ library, which tools that only read configs skip

        self.close()
        c = self.config
        games = c.game_list
        per_game = self.num_envs // len(games)
        if per_game * len(games) != self.num_envs:
            raise ValueError(f"num_envs: {self.num_envs} environments do not divide evenly across {len(games)} games")
        # The game of each environment index, in the order ConcatEnv stacks them.
        self.env_games = np.repeat(np.array(games, dtype=object), per_game)
        self._game_envs = [self._make_game(procgen, game, per_game, k) for k, game in enumerate(games)]
        self._gym3 = self._game_envs[0] if len(games) == 1 else gym3.ConcatEnv(self._game_envs)
        _, ob, _ = self._gym3.observe()
        self._obs = ob["rgb"]
        self._level_seeds = self._current_level_seeds()
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._started = False

    def _make_game(self, procgen, game: str, num: int, index: int):
        c = self.config
        # Each game of a multi-game env draws its own level order (the first game's is the single-game one).
        return procgen.ProcgenGym3Env(
            num=num,
            env_name=game,
            num_levels=self.num_levels,
            start_level=self.start_level,
            distribution_mode=c.distribution_mode,
            use_backgrounds=c.use_backgrounds,
            restrict_themes=c.restrict_themes,
            use_monochrome_assets=c.use_monochrome_assets,
            paint_vel_info=c.paint_vel_info,
            use_sequential_levels=c.use_sequential_levels,
            center_agent=c.center_agent,
            num_threads=c.num_threads,
            rand_seed=(int(self.seed_value) + 7_919 * index) % (2**31 - 1),
        )

    def _current_level_seeds(self) -> np.ndarray:
        return np.array([info["level_seed"] for info in self._gym3.get_info()], dtype=np.int64)

    def reset(self) -> np.ndarray:
        # Procgen cannot reset one environment by itself: the first reset uses the fresh environments,
        # a later one (e.g. SB3 calling learn() twice) builds them anew with the next seed.
        if self._started:
            if not self._seed_pending:
                self.seed_value += 1
            self._make()
        self._started, self._seed_pending = True, False
        return self._obs.copy()

    def seed(self, seed: int | None = None):
        if seed is not None:
            self.seed_value = seed
            self._started, self._seed_pending = True, True  # the next reset rebuilds with this seed
        return [self.seed_value] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        # gym3's act() steps every environment (in Procgen's C++ threads) before it returns;
        # step_wait's observe() only collects the results.
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int32)
        self._gym3.act(self._actions)

    def step_wait(self):
        rewards, ob, first = self._gym3.observe()
        prev_obs, prev_seeds = self._obs, self._level_seeds
        self._obs = ob["rgb"]
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{"level_seed": int(s)} for s in prev_seeds]
        if len(self.config.game_list) > 1:
            for info, game in zip(infos, self.env_games, strict=True):
                info["game"] = game
        if first.any():
            gym3_infos = self._gym3.get_info()
            self._level_seeds = np.array([info["level_seed"] for info in gym3_infos], dtype=np.int64)
            for i in np.flatnonzero(first):
                infos[i]["terminal_observation"] = prev_obs[i].copy()
                infos[i]["TimeLimit.truncated"] = False
                infos[i]["level_complete"] = bool(gym3_infos[i]["prev_level_complete"])
                infos[i]["episode"] = {
                    "r": float(self._returns[i]),
                    "l": int(self._lengths[i]),
                    "level_seed": int(prev_seeds[i]),
                    "game": self.env_games[i],
                }
            self._returns[first] = 0.0
            self._lengths[first] = 0
        return self._obs, rewards.astype(np.float32), first.copy(), infos

    def close(self) -> None:
        for env in self._game_envs:  # gym3's ConcatEnv does not close the environments it holds
            env.close()
        self._game_envs, self._gym3 = [], None

    def get_images(self) -> list[np.ndarray]:
        return list(self._obs)

    def get_state(self) -> list[bytes]:
        """Procgen's serialised state of each environment: its level, the level's seed range and every random
        generator, so ``set_state`` on any environment of the same game and options plays on exactly as this one."""
        if len(self.config.game_list) > 1:
            raise ValueError("get_state: an env of several games has no single Procgen state")
        return self._gym3.get_state()

    def set_state(self, states: list[bytes], rows: Sequence[int] | None = None) -> np.ndarray:
        """Restore ``get_state``'s ``states`` on ``rows`` (default: every environment, in order), each taken at an
        episode's first frame (their episode statistics restart), and return those rows' frames. A row becomes an
        environment of its state's level: switching levels this way takes ~0.3 ms, building an env ~5-30 ms."""
        if len(self.config.game_list) > 1:
            raise ValueError("set_state: an env of several games has no single Procgen state")
        rows = range(self.num_envs) if rows is None else rows
        if len(states) != len(rows):
            raise ValueError(f"set_state: {len(states)} states for {len(rows)} rows")
        for row, state in zip(rows, states, strict=True):
            self._gym3.call_c_func("set_state", row, state, len(state))  # procgen's own set_state does every row
        _, ob, _ = self._gym3.observe()
        self._obs = ob["rgb"]
        rows = list(rows)
        self._level_seeds = self._current_level_seeds()
        self._returns[rows], self._lengths[rows] = 0, 0
        return self._obs[rows].copy()

    # Procgen has no per-environment Python objects; these answer SB3's generic queries.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        raise AttributeError(f"ProcgenVecEnv has no per-environment method {method_name!r}")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
