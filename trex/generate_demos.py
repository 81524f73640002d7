"""Play ranked demonstrations from a series of checkpoints on chosen level seeds.

    python -m trex.generate_demos -c configs/trex-cpu.yaml checkpoints=runs/ppo-starpilot-nature-seed0

Every checkpoint (this suite's ``checkpoints/step_*.pt`` series, or stable-baselines3 ``.zip``
models), at every noise level of ``epsilon`` (a D-REX noise ladder, Brown et al. 2019b: each
(checkpoint, epsilon) is one rung), plays ``episodes_per_level`` episodes on each training level seed
and, separately, on each held-out test level seed. All of them go through one batched step loop (``play_demos``), or
``play_threads`` such loops each playing its share, while writer threads compress and write the finished ones: one
``.npz.zst`` per demo and an ``index.csv`` go to ``out_dir``. Rerunning skips the demos already there (indexed,
with their file), so an interrupted run continues where it stopped and a run with more checkpoints or levels adds
only the new demos.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from baseline_agent import zoo
from procgen_common.agents import env_config_of, load_agent
from procgen_common.checkpoint import load_checkpoint
from procgen_common.cli import UserError, main_guard, parse_config
from procgen_common.config import Checked, bounded, read_yaml, save_config, to_dict
from procgen_common.env import EnvConfig, ProcgenVecEnv, check_game, one_level_config
from procgen_common.episodes import MAX_LEVEL_SEED, Episode, Job, play_episodes
from procgen_common.logger import close_bar, progress_bar
from procgen_common.runs import FolderLock, merge_threads, pick_device, torch_threads, use_threads
from procgen_common.sb3_agent import load_sb3_agent
from trex.demos import SUFFIX, Demo, DemoInfo, DemoSplit, encode_demo, read_index, save_demo, write_index


@dataclass(frozen=True)
class Config(Checked):
    """Demonstration generation (trex.generate_demos)."""

    checkpoints: str | list[str] = ""
    """Demonstrators: a run folder (its checkpoints/step_*.pt), a folder of step_*.pt or SB3 .zip files, single
    .pt/.zip files, or a zoo series (zoo:starpilot) or zoo checkpoint (zoo:starpilot/step_003000000); a list mixes
    them. Each checkpoint is one rung of the skill ladder."""
    game: str | None = None
    """Procgen game; null = the checkpoints' own (required for SB3 .zip models, which do not record it, and for
    multi-game checkpoints: it picks the one of their games the demos play)."""
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
    epsilon: float | list[float] = 0.0
    """Probability of replacing each action by a uniformly random one; a list is a D-REX noise ladder (Brown et
    al., CoRL 2019): every checkpoint plays at every level, e.g. [1.0, 0.75, 0.5, 0.25, 0.02], and each
    (checkpoint, epsilon) is one rung (rank with trex.train_reward's data.rank_by=noise). Values in [0, 1]."""
    max_length: int = bounded(1000, 1)
    """Cut episodes at this many steps (marked truncated in the index)."""
    num_envs: int = bounded(32, 1)
    """Episodes played at once; a finished one's slot takes the next demo to play, of the same or the next
    checkpoint (each step: one batched forward pass per checkpoint in the batch)."""
    play_threads: int = bounded(1, 1)
    """Threads playing demos at once, each its own share of the demos (every play_threads-th) on its own vector env
    of num_envs rows, with its own random streams and torch_threads / play_threads of torch's threads; the forward
    passes of one then overlap the other's Procgen steps and compressing. 2 on a 2-core CPU plays 1.2-1.5x as
    fast as 1, 3 or 4 slower again (README, T-REX speed). Which thread plays a demo changes its random draws: the
    same seed gives the same demos only with the same play_threads (1, the default, keeps the demos, and so the
    figures, of earlier versions)."""
    writer_threads: int = bounded(1, 1)
    """Threads writing finished demos while play goes on, and compressing them too where the machine has a core
    beyond torch's threads and theirs (else the playing thread compresses: see ``play_missing_demos``); more of
    them help where writing, not play, is the bottleneck and cores are free."""
    out_dir: str | None = None
    """Demo folder; null = <run folder>/demos when the checkpoints are a run's series."""
    seed: int = bounded(0, 0)
    """Seed for action sampling and epsilon noise."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device for the policies; 'auto' takes CUDA when available."""
    torch_threads: int = bounded(0, 0)
    """CPU threads for torch (0 = one per core). The count used is saved in config.yaml: it changes the order of
    the arithmetic, so the same seed gives bit-identical results only with the same count."""

    @property
    def checkpoint_entries(self) -> list[str]:
        return [self.checkpoints] if isinstance(self.checkpoints, str) else list(self.checkpoints)

    @property
    def epsilons(self) -> list[float]:
        """The noise ladder's levels, as given (one level when ``epsilon`` is a number)."""
        return [float(e) for e in self.epsilon] if isinstance(self.epsilon, list) else [float(self.epsilon)]

    def validate(self) -> None:
        if not any(self.checkpoint_entries):
            raise ValueError("checkpoints: not set; give a run folder, a folder of checkpoints or SB3 .zip files")
        if self.game is not None:
            check_game(self.game)
        epsilons = self.epsilons
        if not epsilons:
            raise ValueError("epsilon: an empty list; give one noise level or a list of them, each in [0, 1]")
        bad = next((e for e in epsilons if not 0.0 <= e <= 1.0), None)  # NaN fails the test too
        if bad is not None:
            raise ValueError(f"epsilon: {bad} is not a probability; allowed values are in [0, 1]")
        if len(set(epsilons)) != len(epsilons):
            raise ValueError(f"epsilon: {epsilons} repeats a noise level; list each level once")
        for key in ("train_levels", "test_levels"):
            levels = getattr(self, key) or []
            bad = [s for s in levels if not 0 <= s <= MAX_LEVEL_SEED]
            if bad:
                raise ValueError(f"{key}: level seed {bad[0]} is out of range; allowed 0 to {MAX_LEVEL_SEED}")
            if len(set(levels)) != len(levels):
                raise ValueError(f"{key}: {levels} repeats a seed; list each level once (see episodes_per_level)")


# Settings that change how an episode is played: a folder's demos must all share them (each demo records its own
# epsilon, so a folder can grow new noise levels).
MUST_MATCH = ("deterministic", "max_length", "seed")


@dataclass(frozen=True)
class DemoJob:
    """One demo to play: which demonstrator, split, level and episode index."""

    split: DemoSplit
    level_seed: int
    episode: int
    demonstrator: int = 0
    """Which agent plays it: the index ``play_demos`` loads it by (``generate``: the checkpoint's place in its list)."""
    epsilon: float = 0.0
    """Probability of replacing each of its actions by a uniformly random one."""

    def demo_id(self, checkpoint: str) -> str:
        noise = f"-eps{self.epsilon:g}" if self.epsilon > 0 else ""
        return f"{self.split}-{checkpoint}{noise}-level{self.level_seed}-ep{self.episode}"


def checkpoint_files(entries: list[str]) -> list[Path]:
    """The checkpoint files named by ``Config.checkpoints``, each folder's in name (= step) order."""
    files: list[Path] = []
    for entry in entries:
        path = zoo.resolve(entry) if zoo.is_zoo_entry(entry) else Path(entry)
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


def demos_env(env_config: EnvConfig, path: Path, game: str | None) -> EnvConfig:
    """The one-game env config the demos of a checkpoint trained with ``env_config`` play: its own, or for a
    multi-game checkpoint that of its game ``game`` (``EnvConfig.for_game``: the same level splits); a multi-game
    checkpoint without ``game``, or with another game, is a UserError naming its games."""
    games = env_config.game_list
    if len(games) == 1:
        return env_config.for_game(games[0])
    if game not in games:
        asked = "no game= is set" if game is None else f"game={game} is not one of them"
        raise UserError(
            f"game: {path} is a multi-game agent ({', '.join(games)}) and {asked}; set game= to the one its demos play"
        )
    return env_config.for_game(game)


def load_demonstrator(path: Path, config: Config, device: torch.device):
    """``(agent, step, agent kind, env config)`` of one checkpoint, its game checked against the config (the env
    config is that of the demos' game: ``demos_env``)."""
    if path.suffix == ".zip":
        if config.game is None:
            raise UserError(f"game: {path} is an SB3 model, which does not record its game; set game=...")
        agent, step = load_sb3_agent(path, device)
        return agent, step, "sb3", EnvConfig(game=config.game, distribution_mode=config.distribution_mode or "easy")
    agent, checkpoint, env_config = load_agent(path, device)
    env_config = demos_env(env_config, path, config.game)
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


def first_frame_states(env_config: EnvConfig, levels: Iterable[int]) -> dict[int, bytes]:
    """Level seed -> the Procgen state of the level's first frame, each taken from a new one-level env."""
    states = {}
    for level in sorted(set(levels)):
        one = ProcgenVecEnv(one_level_config(env_config, level), "train", num_envs=1)
        one.reset()
        [states[level]] = one.get_state()
        one.close()
    return states


def play_demos(
    demonstrator: Callable[[int], Any],
    env_config: EnvConfig,
    jobs: Sequence[DemoJob],
    num_envs: int,
    max_length: int,
    deterministic: bool,
    rng: np.random.Generator,
    starts: dict[int, bytes] | None = None,
) -> Iterator[Episode]:
    """Play every job, ``num_envs`` at a time (``play_episodes``), each slot on its row of one vector env, taking
    the next job of the queue when one ends (a batch spans two checkpoints where one's jobs run out); yield each
    episode (its ``job`` the ``DemoJob``) as it ends. A job's row is set to the state of its level's first frame
    (``starts``, or ``first_frame_states`` of the jobs' levels), so it plays exactly as a new env of that level
    would; one vector env steps every row in one call, where an env per slot took a Python call per slot and step,
    and a new env per episode. ``demonstrator(k)`` loads the agent of ``job.demonstrator == k``; ``rng`` draws the
    epsilon noise.
    """
    if not jobs:
        return
    queue = deque(jobs)
    num_slots = min(num_envs, len(jobs))
    starts = starts if starts is not None else first_frame_states(env_config, (job.level_seed for job in jobs))

    def next_job(slot: int, ended: Episode | None) -> Job | None:
        if ended is not None:
            assert ended.level_seed == ended.job.level_seed, "a row left its level"
        if not queue:
            return None
        job = queue.popleft()
        return Job(job, job.demonstrator, job.epsilon, state=starts[job.level_seed])

    # Procgen steps the rows in its own threads while torch waits (env_config.num_threads; every row's play is
    # its own, so the thread count changes no frame).
    shared = replace(one_level_config(env_config, jobs[0].level_seed), num_threads=env_config.num_threads)
    env = ProcgenVecEnv(shared, "train", num_envs=num_slots)
    try:
        yield from play_episodes(
            demonstrator, num_slots, next_job, env, deterministic, max_length, rng=rng, idle_act=False
        )
    finally:
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


# How often index.csv is rewritten while demos are being written (and once at the end): a kill loses at most
# this many seconds of demos, which a rerun plays again.
INDEX_EVERY_S = 5.0
# Demos handed to the writer threads but not yet written, per thread: past this, play waits for the writers.
MAX_UNWRITTEN_PER_WRITER = 8


def generate(config: Config) -> Path:
    """Play every missing demo and keep the index up to date; returns the demo folder.

    All checkpoints' missing demos go through one job queue (checkpoint by checkpoint, then split, level and
    episode) played ``num_envs`` at a time (``play_demos``), in ``play_threads`` threads each taking every
    ``play_threads``-th job. Writer threads compress and write each demo while
    play goes on; ``index.csv`` lists a demo once its file is complete and is rewritten every
    ``INDEX_EVERY_S`` seconds and at the end. A demo counts as done when it is in the index and its file exists.
    """
    device = pick_device(config.device)
    config = use_threads(config, None)
    files = checkpoint_files(config.checkpoint_entries)
    # The first checkpoint fixes the game, mode and level splits; the others are checked against it.
    _, _, _, env_config = load_demonstrator(files[0], config, device)
    check_one_game(files, env_config, config.game)
    levels = choose_levels(config, env_config)
    out = prepare_out_dir(config, files, env_config)
    with FolderLock(out, "out_dir"):
        return play_missing_demos(config, files, env_config, levels, out, device)


def check_one_game(files: list[Path], env_config: EnvConfig, game: str | None = None) -> None:
    """Refuse, before any demo is played, a demonstrator set whose suite checkpoints play another game or mode
    than the first one (SB3 models record no game: they play ``game=``; a multi-game checkpoint plays its game
    ``game``, see ``demos_env``)."""
    for path in files[1:]:
        if path.suffix != ".zip":
            env = demos_env(env_config_of(load_checkpoint(path), path), path, game)
            check_same_play(path, env, files[0], env_config)


def check_same_play(path: Path, env: EnvConfig, first: Path, first_env: EnvConfig) -> None:
    """Refuse the demonstrator ``path`` playing ``env`` when the first one, ``first``, plays another game or mode."""
    if (env.game, env.distribution_mode) != (first_env.game, first_env.distribution_mode):
        raise UserError(
            f"checkpoints: {path} plays {env.game} ({env.distribution_mode}) but {first} plays {first_env.game} "
            f"({first_env.distribution_mode}); one game per demo folder"
        )


def play_missing_demos(
    config: Config, files: list[Path], env_config: EnvConfig, levels: dict, out: Path, device: torch.device
) -> Path:
    """The body of ``generate``, run while holding the demo folder's lock."""
    save_config(config, out / "config.yaml")

    index = {info.demo_id: info for info in read_index(out) if (out / info.file).is_file()}
    jobs = [
        DemoJob(split, seed, episode, k, epsilon)
        for k, path in enumerate(files)
        for epsilon in config.epsilons
        for split in ("train", "test")
        for seed in levels[split]
        for episode in range(config.episodes_per_level)
    ]
    todo = [job for job in jobs if job.demo_id(files[job.demonstrator].stem) not in index]
    played: dict[int, tuple[int, str]] = {}  # demonstrator -> (checkpoint step, agent kind)

    def demonstrator(k: int):
        agent, step, kind, agent_env = load_demonstrator(files[k], config, device)
        check_same_play(files[k], agent_env, files[0], env_config)
        played[k] = step, kind
        return agent

    def demo_of(episode: Episode) -> Demo:
        job = episode.job
        checkpoint = files[job.demonstrator].stem
        step, kind = played[job.demonstrator]
        demo_id = job.demo_id(checkpoint)
        info = DemoInfo(
            demo_id=demo_id,
            file=f"{demo_id}{SUFFIX}",
            game=env_config.game,
            distribution_mode=env_config.distribution_mode,
            split=job.split,
            level_seed=job.level_seed,
            episode=job.episode,
            checkpoint=checkpoint,
            checkpoint_step=step,
            agent=kind,
            episode_return=float(episode.rewards.sum(dtype=np.float64)),
            length=len(episode.actions),
            truncated=episode.truncated,
            epsilon=job.epsilon,
        )
        return Demo(info, episode.obs, episode.actions, episode.rewards)

    bar = progress_bar(
        total=len(jobs),
        initial=len(jobs) - len(todo),
        unit="demo",
        desc=f"demos {env_config.game}",
        dynamic_ncols=True,
    )
    new, index_written = 0, time.monotonic()
    unwritten: deque[tuple[Future, DemoInfo]] = deque()  # in the order handed to the writers
    max_unwritten = MAX_UNWRITTEN_PER_WRITER * config.writer_threads

    def collect(wait: bool) -> None:
        """Index the demos the writer has finished (and wait for the rest when ``wait``)."""
        nonlocal new
        while unwritten and (wait or unwritten[0][0].done() or len(unwritten) > max_unwritten):
            future, info = unwritten.popleft()
            future.result()
            index[info.demo_id] = info
            new += 1
            bar.update(1)

    # One seed per call: sampled actions and noise depend on the whole batch schedule, so a fresh run is
    # reproducible; the first missing demo's name in it keeps a resumed run from replaying the same draws.
    first = todo[0].demo_id(files[todo[0].demonstrator].stem) if todo else ""
    seed = stable_seed(config.seed, first)
    torch.manual_seed(seed)
    players = max(1, min(config.play_threads, len(todo)))
    starts = first_frame_states(env_config, (job.level_seed for job in todo))  # shared by the players
    threads_each = max(1, torch.get_num_threads() // players)
    # Compressing in a writer thread while torch's threads hold every core stalls their forward passes more than
    # the compressing costs in the playing thread (200 starpilot demos, 2 cores, 2 torch threads, 12 runs each
    # side by side: 3,050 frames/s end to end against 3,800, medians, with Zstandard level 3 and 1 respectively);
    # the writer threads then only write, which waits on the disk, not a core.
    encode_here = threads_each * players + config.writer_threads > (os.cpu_count() or 1)

    def play_share(player: int) -> Iterator[tuple[Demo, bytes | None]]:
        """One player's demos (every ``players``-th job), encoded where ``encode_here``. A lone player draws from
        torch's global generator (None), seeded above, as earlier versions did; several each draw from their own."""
        own_seed = seed if players == 1 else stable_seed(seed, player)
        generator = None if players == 1 else torch.Generator().manual_seed(own_seed)

        def agent(k: int):
            loaded = demonstrator(k)
            loaded.generator = generator
            return loaded

        share = todo[player::players]
        rng = np.random.default_rng(own_seed)
        for episode in play_demos(
            agent, env_config, share, config.num_envs, config.max_length, config.deterministic, rng, starts
        ):
            demo = demo_of(episode)
            yield demo, (encode_demo(demo) if encode_here else None)

    try:
        with ThreadPoolExecutor(config.writer_threads, thread_name_prefix="demo-writer") as writer:
            try:
                # closing(): on an error here the play threads stop and are joined before anything else happens.
                shares = [partial(play_share, p) for p in range(players)]
                with torch_threads(threads_each), closing(merge_threads(shares)) as played_demos:
                    for demo, encoded in played_demos:
                        unwritten.append((writer.submit(save_demo, out / demo.info.file, demo, encoded), demo.info))
                        collect(wait=False)
                        if time.monotonic() - index_written > INDEX_EVERY_S:
                            write_index(out, sorted(index.values(), key=index_order))
                            index_written = time.monotonic()
            finally:
                collect(wait=True)  # on an error too: what was played and written is kept
    finally:
        write_index(out, sorted(index.values(), key=index_order))
        close_bar(bar)
    print(f"{new} new demos, {len(index)} in {out}", file=sys.stderr)
    return out


def index_order(info: DemoInfo) -> tuple:
    """Rows of index.csv go by checkpoint step, then noise (most first), split, level and episode."""
    return info.checkpoint_step, info.checkpoint, -info.epsilon, info.split, info.level_seed, info.episode


def summary_lines(infos: list[DemoInfo]) -> list[str]:
    """Mean true return per rung (checkpoint and noise level) and split: the skill ladder the ranking relies on."""
    lines = [f"{'checkpoint':<24} {'step':>10} {'epsilon':>8} {'train return':>14} {'test return':>13}"]
    rungs = dict.fromkeys((i.checkpoint, i.epsilon) for i in sorted(infos, key=index_order))
    for name, epsilon in rungs:
        rows = [i for i in infos if (i.checkpoint, i.epsilon) == (name, epsilon)]
        cells = []
        for split in ("train", "test"):
            returns = [i.episode_return for i in rows if i.split == split]
            cells.append(f"{np.mean(returns):.2f} ({len(returns)})" if returns else "-")
        lines.append(f"{name:<24} {rows[0].checkpoint_step:>10} {epsilon:>8g} {cells[0]:>14} {cells[1]:>13}")
    return lines


DESCRIPTION = """Play ranked demonstrations for T-REX: every checkpoint of a demonstrator series (at every noise level
of a D-REX ladder, epsilon=[...]) plays episodes on an explicit set of training level seeds and, separately, on
held-out level seeds. Writes one .npz.zst per demo and index.csv to out_dir; rerunning skips demos already written."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    example = "python -m trex.generate_demos -c configs/trex-cpu.yaml checkpoints=runs/ppo-starpilot-nature-seed0"
    out = generate(parse_config("python -m trex.generate_demos", DESCRIPTION, Config, example, argv))
    print("\n".join(summary_lines(read_index(out))))
    print(f"done: {out}")


if __name__ == "__main__":
    main()
