"""Play ranked demonstrations from a series of checkpoints on chosen level seeds.

    python -m trex.generate_demos -c configs/trex-cpu.yaml checkpoints=runs/ppo-starpilot-nature-seed0

Every checkpoint (this suite's ``checkpoints/step_*.pt`` series, or stable-baselines3 ``.zip``
models) plays ``episodes_per_level`` episodes on each training level seed and, separately, on each
held-out test level seed. One compressed ``.npz`` per demo and an ``index.csv`` go to ``out_dir``;
rerunning skips the demos already there, so an interrupted run continues where it stopped and a
run with more checkpoints or levels adds only the new demos.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from procgen_common.agents import load_agent
from procgen_common.cli import UserError, config_parser, main_guard
from procgen_common.config import bounded, load_config, read_yaml, save_config, to_dict
from procgen_common.env import NUM_ACTIONS, EnvConfig, ProcgenVecEnv, check_game
from procgen_common.runs import pick_device
from trex.demos import Demo, DemoInfo, DemoSplit, read_index, save_demo, write_index
from trex.sb3_agent import load_sb3_agent

MAX_LEVEL_SEED = 2**31 - 3  # Procgen seeds are int32; a one-level env also needs seed + 1 for its test range


@dataclass
class Config:
    """Demonstration generation (trex.generate_demos)."""

    checkpoints: str | list[str] = ""
    """Demonstrators: a run folder (its checkpoints/step_*.pt), a folder of step_*.pt or SB3 .zip files, or
    single .pt/.zip files; a list mixes them. Each checkpoint is one rung of the skill ladder."""
    game: str | None = None
    """Procgen game; null = the checkpoints' own (required for SB3 .zip models, which do not record it)."""
    distribution_mode: Literal["easy", "hard", "extreme", "memory", "exploration"] | None = None
    """Procgen mode; null = the checkpoints' own ('easy' for SB3 .zip models)."""
    train_levels: list[int] | None = None
    """Level seeds the reward model may learn from; null = the first num_train_levels seeds of the run's
    training range."""
    num_train_levels: int = bounded(10, 0)
    """How many training level seeds to take when train_levels is null."""
    test_levels: list[int] | None = None
    """Held-out level seeds, for evaluating the reward only; null = the first num_test_levels seeds of the
    run's test split (EnvConfig.level_range('test')). Must not share a seed with train_levels."""
    num_test_levels: int = bounded(20, 0)
    """How many held-out level seeds to take when test_levels is null."""
    episodes_per_level: int = bounded(1, 1)
    """Episodes each checkpoint plays on each level (they differ only through sampled or noisy actions)."""
    deterministic: bool = False
    """Greedy actions instead of sampling from the policy."""
    epsilon: float = bounded(0.0, 0.0, 1.0)
    """Probability of replacing an action by a uniformly random one (more variety of quality)."""
    max_length: int = bounded(1000, 1)
    """Cut episodes at this many steps (marked truncated in the index)."""
    num_envs: int = bounded(32, 1)
    """Episodes played at once (one batched forward pass of the policy per step)."""
    out_dir: str | None = None
    """Demo folder; null = <run folder>/demos when the checkpoints are a run's series."""
    seed: int = bounded(0, 0)
    """Seed for action sampling and epsilon noise."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device for the policies; 'auto' takes CUDA when available."""
    torch_threads: int = bounded(0, 0)
    """CPU threads for torch (0 = one per core)."""

    @property
    def checkpoint_entries(self) -> list[str]:
        return [self.checkpoints] if isinstance(self.checkpoints, str) else list(self.checkpoints)

    def validate(self) -> None:
        if not any(self.checkpoint_entries):
            raise ValueError("checkpoints: not set; give a run folder, a folder of checkpoints or SB3 .zip files")
        if self.game is not None:
            check_game(self.game)
        for key in ("train_levels", "test_levels"):
            levels = getattr(self, key) or []
            bad = [s for s in levels if not 0 <= s <= MAX_LEVEL_SEED]
            if bad:
                raise ValueError(f"{key}: level seed {bad[0]} is out of range; allowed 0 to {MAX_LEVEL_SEED}")
            if len(set(levels)) != len(levels):
                raise ValueError(f"{key}: {levels} repeats a seed; list each level once (see episodes_per_level)")


# Settings that change how an episode is played: a folder's demos must all share them.
MUST_MATCH = ("deterministic", "epsilon", "max_length", "seed")


@dataclass(frozen=True)
class DemoJob:
    """One demo to play: which split, level and episode index."""

    split: DemoSplit
    level_seed: int
    episode: int

    def demo_id(self, checkpoint: str) -> str:
        return f"{self.split}-{checkpoint}-level{self.level_seed}-ep{self.episode}"


@dataclass(frozen=True)
class Episode:
    """A finished episode of one job: frames acted on, actions and true rewards (see ``Demo``)."""

    job: DemoJob
    obs: np.ndarray
    """uint8 ``(T, 64, 64, 3)``."""
    actions: np.ndarray
    """int64 ``(T,)``."""
    rewards: np.ndarray
    """float32 ``(T,)``."""
    truncated: bool


def checkpoint_files(entries: list[str]) -> list[Path]:
    """The checkpoint files named by ``Config.checkpoints``, each folder's in name (= step) order."""
    files: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_file():
            if path.suffix not in (".pt", ".zip"):
                raise UserError(f"checkpoints: {path} is neither a .pt checkpoint nor an SB3 .zip model")
            files.append(path)
        elif path.is_dir():
            folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
            found = sorted(folder.glob("step_*.pt")) + sorted(folder.glob("*.zip"))
            if not found:
                raise UserError(f"checkpoints: {folder} holds no step_*.pt checkpoints or SB3 .zip models")
            files.extend(found)
        else:
            raise UserError(f"checkpoints: {path} does not exist; give a run folder, a folder of checkpoints or files")
    names = [f.stem for f in files]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UserError(f"checkpoints: two files are named {duplicate}; demo names need one checkpoint per name")
    return files


def load_demonstrator(path: Path, config: Config, device: torch.device):
    """``(agent, step, agent kind, env config)`` of one checkpoint, its game checked against the config."""
    if path.suffix == ".zip":
        if config.game is None:
            raise UserError(f"game: {path} is an SB3 model, which does not record its game; set game=...")
        agent, step = load_sb3_agent(path, device)
        return agent, step, "sb3", EnvConfig(game=config.game, distribution_mode=config.distribution_mode or "easy")
    agent, checkpoint, env_config = load_agent(path, device)
    for key in ("game", "distribution_mode"):
        wanted = getattr(config, key)
        if wanted is not None and wanted != getattr(env_config, key):
            raise UserError(f"{key}: {wanted} was asked for but {path} was trained on {getattr(env_config, key)}")
    return agent, int(checkpoint.get("step", -1)), str(checkpoint["algo"]), env_config


def choose_levels(config: Config, env_config: EnvConfig) -> dict[DemoSplit, list[int]]:
    """The training and held-out level seeds: as listed, or the first N of the run's splits."""
    levels: dict[DemoSplit, list[int]] = {}
    for split, listed, count in (
        ("train", config.train_levels, config.num_train_levels),
        ("test", config.test_levels, config.num_test_levels),
    ):
        if listed is not None:
            levels[split] = list(listed)
            continue
        start, num = env_config.level_range(split)
        if split == "train" and num == 0 and count > 0:
            raise UserError("train_levels: the run trained on every level (num_levels=0); list the level seeds")
        if split == "train" and count > num:
            raise UserError(f"num_train_levels: {count} exceeds the run's {num} training levels; list train_levels")
        levels[split] = list(range(start, start + count))
    shared = sorted(set(levels["train"]) & set(levels["test"]))
    if shared:
        raise UserError(f"test_levels: seeds {shared} are also training levels; held-out levels must be unseen")
    if not levels["train"] and not levels["test"]:
        raise UserError("train_levels, test_levels: both are empty; there is nothing to play")
    return levels


def level_env_config(env_config: EnvConfig, level_seed: int) -> EnvConfig:
    """A copy of ``env_config`` whose training split is exactly one level: ``level_seed``.

    Its test split is moved to the next seed (the run's own may overlap the new one-level range), and it
    steps in the calling thread: a batch holds many one-level envs of a few slots each, too small for
    a C++ thread pool apiece.
    """
    return dataclasses.replace(
        env_config, start_level=level_seed, num_levels=1, test_start_level=None, test_num_levels=1, num_threads=0
    )


def play_episodes(
    agent,
    env_config: EnvConfig,
    jobs: list[DemoJob],
    max_length: int,
    deterministic: bool,
    epsilon: float,
    rng: np.random.Generator,
) -> Iterator[Episode]:
    """Play the first episode of every job in one batch; yield each as it finishes.

    A Procgen env with ``start_level=s, num_levels=1`` plays level ``s`` and nothing else, so each
    level gets its own env (with one slot per job on it); their frames are stacked so the policy
    runs one forward pass per step for all jobs.
    """
    seeds = sorted({job.level_seed for job in jobs})
    slots = {s: [j for j in jobs if j.level_seed == s] for s in seeds}
    envs = [ProcgenVecEnv(level_env_config(env_config, s), "train", num_envs=len(slots[s])) for s in seeds]
    order = [job for s in seeds for job in slots[s]]  # the job in each row of the stacked batch
    bounds = np.cumsum([0] + [env.num_envs for env in envs])
    frames: list[list[np.ndarray]] = [[] for _ in order]
    actions_taken: list[list[int]] = [[] for _ in order]
    rewards_got: list[list[float]] = [[] for _ in order]
    active = np.ones(len(order), dtype=bool)
    try:
        obs = np.concatenate([env.reset() for env in envs])
        state = agent.initial_state(len(order))
        episode_start = np.ones(len(order), dtype=bool)
        while active.any():
            actions, state = agent.act(obs, state, episode_start, deterministic)
            actions = np.asarray(actions, dtype=np.int64)
            noisy = rng.random(len(order)) < epsilon
            actions[noisy] = rng.integers(0, NUM_ACTIONS, int(noisy.sum()))
            for k, env in enumerate(envs):
                env.step_async(actions[bounds[k] : bounds[k + 1]])
            results = [env.step_wait() for env in envs]
            next_obs = np.concatenate([r[0] for r in results])
            rewards = np.concatenate([r[1] for r in results])
            dones = np.concatenate([r[2] for r in results])
            infos = [info for r in results for info in r[3]]
            for i in np.flatnonzero(active):
                # Store the frame the action was chosen on; on a done step next_obs is already the next
                # episode's first frame and is never stored.
                frames[i].append(obs[i].copy())
                actions_taken[i].append(int(actions[i]))
                rewards_got[i].append(float(rewards[i]))
                truncated = not dones[i] and len(frames[i]) >= max_length
                if dones[i] or truncated:
                    assert infos[i]["level_seed"] == order[i].level_seed, "a one-level env left its level"
                    active[i] = False
                    yield Episode(
                        order[i],
                        np.stack(frames[i]),
                        np.array(actions_taken[i], dtype=np.int64),
                        np.array(rewards_got[i], dtype=np.float32),
                        truncated,
                    )
                    frames[i], actions_taken[i], rewards_got[i] = [], [], []
            obs, episode_start = next_obs, dones
    finally:
        for env in envs:
            env.close()


def stable_seed(*parts) -> int:
    """A seed that depends only on ``parts`` (Python's hash() of strings changes between runs)."""
    return zlib.crc32(repr(parts).encode())


def prepare_out_dir(config: Config, files: list[Path], env_config: EnvConfig) -> Path:
    """The demo folder, checked to hold only demos of this game, mode and play settings."""
    if config.out_dir:
        out = Path(config.out_dir)
    elif files[0].parent.name == "checkpoints":
        out = files[0].parent.parent / "demos"
    else:
        raise UserError("out_dir: not set and the checkpoints are not a run's checkpoints/ folder; set out_dir=...")
    existing = read_index(out)
    kinds = {(i.game, i.distribution_mode) for i in existing}
    if kinds - {(env_config.game, env_config.distribution_mode)}:
        game, mode = sorted(kinds)[0]
        raise UserError(
            f"out_dir: {out} holds {game} ({mode}) demos, not {env_config.game} ({env_config.distribution_mode}); "
            "choose another out_dir"
        )
    if (out / "config.yaml").is_file():
        saved = read_yaml(out / "config.yaml")
        differ = [k for k in MUST_MATCH if k in saved and saved[k] != to_dict(config)[k]]
        if differ:
            was = ", ".join(f"{k}={saved[k]}" for k in differ)
            raise UserError(f"out_dir: the demos in {out} were played with {was}; use the same or another out_dir")
    return out


def generate(config: Config) -> Path:
    """Play every missing demo and keep the index up to date; returns the demo folder."""
    device = pick_device(config.device)
    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    files = checkpoint_files(config.checkpoint_entries)
    # The first checkpoint fixes the game, mode and level splits; the others are checked against it.
    _, _, _, env_config = load_demonstrator(files[0], config, device)
    levels = choose_levels(config, env_config)
    out = prepare_out_dir(config, files, env_config)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")

    jobs = [
        DemoJob(split, seed, episode)
        for split in ("train", "test")
        for seed in levels[split]
        for episode in range(config.episodes_per_level)
    ]
    index = {info.demo_id: info for info in read_index(out)}
    wanted = {job.demo_id(f.stem) for f in files for job in jobs}
    bar = tqdm(
        total=len(wanted),
        initial=len(wanted & index.keys()),
        unit="demo",
        desc=f"demos {env_config.game}",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    new = 0
    try:
        for path in files:
            todo = [job for job in jobs if job.demo_id(path.stem) not in index]
            if not todo:
                continue
            agent, step, kind, agent_env = load_demonstrator(path, config, device)
            if (agent_env.game, agent_env.distribution_mode) != (env_config.game, env_config.distribution_mode):
                raise UserError(
                    f"checkpoints: {path} plays {agent_env.game} ({agent_env.distribution_mode}) but {files[0]} "
                    f"plays {env_config.game} ({env_config.distribution_mode}); one game per demo folder"
                )
            for start in range(0, len(todo), config.num_envs):
                chunk = todo[start : start + config.num_envs]
                seed = stable_seed(config.seed, path.stem, chunk[0].demo_id(path.stem))
                torch.manual_seed(seed)
                rng = np.random.default_rng(seed)
                for ep in play_episodes(
                    agent, env_config, chunk, config.max_length, config.deterministic, config.epsilon, rng
                ):
                    demo_id = ep.job.demo_id(path.stem)
                    info = DemoInfo(
                        demo_id=demo_id,
                        file=f"{demo_id}.npz",
                        game=env_config.game,
                        distribution_mode=env_config.distribution_mode,
                        split=ep.job.split,
                        level_seed=ep.job.level_seed,
                        episode=ep.job.episode,
                        checkpoint=path.stem,
                        checkpoint_step=step,
                        agent=kind,
                        episode_return=float(ep.rewards.sum(dtype=np.float64)),
                        length=len(ep.actions),
                        truncated=ep.truncated,
                    )
                    save_demo(out / info.file, Demo(info, ep.obs, ep.actions, ep.rewards))
                    index[demo_id] = info
                    new += 1
                    bar.update(1)
                write_index(out, sorted(index.values(), key=index_order))
    finally:
        bar.close()
    print(f"{new} new demos, {len(index)} in {out}", file=sys.stderr)
    return out


def index_order(info: DemoInfo) -> tuple:
    """Rows of index.csv go by checkpoint step, then split, level and episode."""
    return info.checkpoint_step, info.checkpoint, info.split, info.level_seed, info.episode


def summary_lines(infos: list[DemoInfo]) -> list[str]:
    """Mean true return per checkpoint and split: the skill ladder the ranking relies on."""
    lines = [f"{'checkpoint':<24} {'step':>10} {'train return':>14} {'test return':>13}"]
    checkpoints = dict.fromkeys(i.checkpoint for i in sorted(infos, key=index_order))
    for name in checkpoints:
        rows = [i for i in infos if i.checkpoint == name]
        cells = []
        for split in ("train", "test"):
            returns = [i.episode_return for i in rows if i.split == split]
            cells.append(f"{np.mean(returns):.2f} ({len(returns)})" if returns else "-")
        lines.append(f"{name:<24} {rows[0].checkpoint_step:>10} {cells[0]:>14} {cells[1]:>13}")
    return lines


DESCRIPTION = """Play ranked demonstrations for T-REX: every checkpoint of a demonstrator series plays episodes on
an explicit set of training level seeds and, separately, on held-out level seeds. Writes one .npz per demo and
index.csv to out_dir; rerunning skips demos already written."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = config_parser(
        "python -m trex.generate_demos",
        DESCRIPTION,
        Config,
        "python -m trex.generate_demos -c configs/trex-cpu.yaml checkpoints=runs/ppo-starpilot-nature-seed0",
    )
    args = parser.parse_args(argv)
    config = load_config(Config, args.config, args.overrides)
    out = generate(config)
    print("\n".join(summary_lines(read_index(out))))
    print(f"done: {out}")


if __name__ == "__main__":
    main()
