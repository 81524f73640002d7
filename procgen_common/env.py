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
range; ``all`` is Procgen's full level distribution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from procgen_common.config import Checked, bounded, closest

GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
NUM_ACTIONS = 15
OBS_SHAPE = (64, 64, 3)
Split = Literal["train", "test", "all"]

# Min-max return ranges from the Procgen paper (appendix), used for normalised scores.
RETURN_RANGES = {
    "easy": {
        "coinrun": (5, 10),
        "starpilot": (2.5, 64),
        "caveflyer": (3.5, 12),
        "dodgeball": (1.5, 19),
        "fruitbot": (-1.5, 32.4),
        "chaser": (0.5, 13),
        "miner": (1.5, 13),
        "jumper": (1, 10),
        "leaper": (1.5, 10),
        "maze": (5, 10),
        "bigfish": (1, 40),
        "heist": (3.5, 10),
        "climber": (2, 12.6),
        "plunder": (4.5, 30),
        "ninja": (3.5, 10),
        "bossfight": (0.5, 13),
    },
    "hard": {
        "coinrun": (5, 10),
        "starpilot": (1.5, 35),
        "caveflyer": (2, 13.4),
        "dodgeball": (1.5, 19),
        "fruitbot": (-0.5, 27.2),
        "chaser": (0.5, 14.2),
        "miner": (1.5, 20),
        "jumper": (1, 10),
        "leaper": (1.5, 10),
        "maze": (4, 10),
        "bigfish": (0, 40),
        "heist": (2, 10),
        "climber": (1, 12.6),
        "plunder": (3, 30),
        "ninja": (2, 10),
        "bossfight": (0.5, 13),
    },
}


def check_game(game: str) -> None:
    """Raise ValueError naming the 16 games (with a did-you-mean) if ``game`` is not one."""
    if game not in GAMES:
        raise ValueError(f"game: unknown Procgen game {game!r}{closest(game, GAMES)}; choose one of {', '.join(GAMES)}")


def normalized_score(mean_return: float, game: str, mode: str) -> float | None:
    """Min-max normalised return with the Procgen paper's ranges (None where no range exists)."""
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
    jumper, leaper, maze, miner, ninja, plunder or starpilot."""
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
    """Number of level seeds in the held-out test split (must not meet the training range)."""
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

    def level_range(self, split: Split) -> tuple[int, int]:
        """``(start_level, num_levels)`` for a split, in Procgen's terms (num_levels 0 = unbounded)."""
        if split == "train":
            return self.start_level, self.num_levels
        if split == "test":
            return self.test_start, self.test_num_levels
        if split == "all":
            return 0, 0
        raise ValueError(f"split: unknown split {split!r}; choose train, test or all")

    @property
    def held_out(self) -> bool:
        """Whether the test split is unseen in training (False when training uses every level)."""
        return self.num_levels > 0

    def validate(self) -> None:
        check_game(self.game)
        if self.num_levels > 0:
            train_end = self.start_level + self.num_levels
            test_end = self.test_start + self.test_num_levels
            if self.test_start < train_end and self.start_level < test_end:
                raise ValueError(
                    f"test_start_level: the test levels [{self.test_start}, {test_end}) meet the training levels "
                    f"[{self.start_level}, {train_end}); choose a test_start_level >= {train_end} "
                    f"or a range ending at or before {self.start_level}"
                )
        if self.test_start + self.test_num_levels > 2**31 - 1:
            raise ValueError("test_num_levels: level seeds must stay below 2**31 - 1")


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
        observation_space = gym.spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8)
        super().__init__(n, observation_space, gym.spaces.Discrete(NUM_ACTIONS))
        self._gym3 = None
        self._actions: np.ndarray | None = None
        self._seed_pending = False
        self._make()

    def _make(self) -> None:
        import_procgen()
        import procgen  # imported here: it loads the C++ library, which tools that only read configs skip

        if self._gym3 is not None:
            self._gym3.close()
        c = self.config
        self._gym3 = procgen.ProcgenGym3Env(
            num=self.num_envs,
            env_name=c.game,
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
            rand_seed=int(self.seed_value) % (2**31 - 1),
        )
        _, ob, _ = self._gym3.observe()
        self._obs = ob["rgb"]
        self._level_seeds = self._current_level_seeds()
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._started = False

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
                }
            self._returns[first] = 0.0
            self._lengths[first] = 0
        return self._obs, rewards.astype(np.float32), first.copy(), infos

    def close(self) -> None:
        if self._gym3 is not None:
            self._gym3.close()
            self._gym3 = None

    def get_images(self) -> list[np.ndarray]:
        return list(self._obs)

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
