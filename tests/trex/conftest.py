"""Fixtures for the T-REX tests: synthetic demo folders with a known pixel reward, and real tiny demos.

The synthetic task: every frame shows a few 8x8 red squares, and the true reward of a frame is how
many (a known function of its pixels), among 0-3 blue distractor squares at random places on black. A
demo has a level m in 0..4 and shows m red squares in each of its 30 frames, so its return is 30 m:
pairs of demos are ranked exactly, and episodes of equal length keep a constant offset in the learned
reward (which equal-length snippet pairs cannot identify) from affecting the episode ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trex.demos import Demo, DemoInfo, save_demo, write_index

CELLS = 8  # the 64x64 frame as an 8x8 grid of 8x8 cells
RED, BLUE = (255, 0, 0), (0, 0, 255)  # RGB, as Procgen frames


def synthetic_frame(rng: np.random.Generator, num_red: int) -> np.ndarray:
    """A frame with ``num_red`` red squares (its true reward) and 0-3 blue ones, all in distinct cells."""
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    cells = rng.permutation(CELLS * CELLS)
    num_blue = rng.integers(0, 4)
    for k, cell in enumerate(cells[: num_red + num_blue]):
        row, col = divmod(int(cell), CELLS)
        frame[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = RED if k < num_red else BLUE
    return frame


def synthetic_demo(
    rng: np.random.Generator, demo_id: str, split: str, level_seed: int, step: int, game: str = "starpilot"
) -> Demo:
    level, length = int(rng.integers(0, 5)), 30
    frames = np.stack([synthetic_frame(rng, level) for _ in range(length)])
    rewards = np.full(length, level, dtype=np.float32)
    info = DemoInfo(
        demo_id=demo_id,
        file=f"{demo_id}.npz.zst",
        game=game,
        distribution_mode="easy",
        split=split,
        level_seed=level_seed,
        episode=0,
        checkpoint=f"step_{step:09d}",
        checkpoint_step=step,
        agent="synthetic",
        episode_return=float(rewards.sum()),
        length=length,
        truncated=False,
    )
    return Demo(info, frames, rng.integers(0, 15, length).astype(np.int64), rewards)


def write_synthetic_demos(folder: Path, num_train: int, num_test: int, seed: int = 0, game: str = "starpilot") -> Path:
    """A demo folder of synthetic demos (train levels 0.., test levels 1000..)."""
    rng = np.random.default_rng(seed)
    infos = []
    for k in range(num_train + num_test):
        split = "train" if k < num_train else "test"
        level = k if split == "train" else 1000 + k
        demo = synthetic_demo(rng, f"{split}-{k}", split, level, step=k, game=game)
        save_demo(folder / demo.info.file, demo)
        infos.append(demo.info)
    write_index(folder, infos)
    return folder


@pytest.fixture(scope="session")
def synthetic_demos(tmp_path_factory) -> Path:
    """40 training-level and 30 held-out synthetic demos (read-only)."""
    return write_synthetic_demos(tmp_path_factory.mktemp("synthetic"), 40, 30)


@pytest.fixture(scope="session")
def demonstrator_run(tmp_path_factory) -> Path:
    """A tiny PPO run (2 updates of 64 steps) with the checkpoint series step_000000000.pt, step_000000128.pt."""
    from tests.conftest import train_tiny

    run_dir = tmp_path_factory.mktemp("demonstrator") / "run"
    return train_tiny(run_dir, "ppo.num_steps=16", "train.total_steps=128", "train.num_checkpoints=2")


def reward_config(demos: Path, run_dir: Path, *extra: str):
    """A checked ``trex.train_reward.Config`` for a run of a few seconds on synthetic demos."""
    from procgen_common.config import load_config
    from trex.train_reward import Config

    overrides = [
        f"data.demos={demos}",
        "data.min_len=4",
        "data.max_len=8",
        "data.pairs_per_epoch=256",
        "data.val_pairs=128",
        "train.batch_size=16",
        "train.epochs=3",
        "train.learning_rate=0.001",
        "train.patience=0",
        "train.device=cpu",
        "train.torch_threads=1",
        "eval.num_traces=2",
        "log.tensorboard=false",
        f"run.dir={run_dir}",
    ]
    return load_config(Config, None, [*overrides, *extra])


@pytest.fixture(scope="session")
def reward_run(synthetic_demos, tmp_path_factory) -> Path:
    """A reward model trained for 3 epochs on the synthetic demos and evaluated (read-only)."""
    import torch

    from trex.train_reward import train

    run_dir = train(reward_config(synthetic_demos, tmp_path_factory.mktemp("reward") / "run", "log.tensorboard=true"))
    torch.set_num_threads(1)  # train() sets the process-wide thread count; keep tests on one thread
    return run_dir
