"""Videos of agents and demonstrations: recording episodes, overlays, grids, mp4/GIF files, reward traces.

Three steps, each usable alone:

- ``record_episodes`` plays an agent (the suite's ``initial_state``/``act`` interface) and returns each
  episode as an ``Episode`` (``procgen_common.episodes``): the frames actions were chosen on, the actions, the
  true rewards and, given a ``RewardFn``, the learned reward of every step. ``overlay_values(episode)`` is the
  per-frame text of the overlay as data (step, action, true return so far, learned reward and its sum).
- ``episode_frames`` / ``trace_frames`` turn episodes into video frames: each game frame upscaled
  (nearest neighbour) with the overlay panel under it, one episode after another or several in a grid (a
  multi-game agent's: one place per game, ``game_tiles``); or a frame beside the curve of the learned per-step
  reward so far (what the reward model rewards).
- ``write_video`` writes an H.264 mp4 (yuv420p, even frame sizes: plays in browsers) through the
  ffmpeg binary that imageio-ffmpeg ships, or a GIF through pillow. Both work headless.

``record_eval_video`` strings them together for a trainer's periodic evaluation videos.

Frame ``t`` of an episode is the frame action ``t`` was chosen on (Procgen never renders the frame after
the last action, see ``procgen_common.env``), so the learned reward of step ``t`` is the reward model's
output on that frame, as in the demos and the reward wrapper. The overlay of frame ``t`` shows the true
return *including* the reward of step ``t``: the last frame shows the episode's return.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from procgen_common.checkpoint import atomic_write_bytes
from procgen_common.cli import UserError
from procgen_common.env import EnvConfig, ProcgenVecEnv, Split, one_level_config
from procgen_common.episodes import MAX_LEVEL_SEED, Episode, Job, play_episodes

# Procgen's 15 actions are these button combinations (procgen.env.ProcgenGym3Env.get_combos).
ACTION_NAMES = (
    "LEFT+DOWN",
    "LEFT",
    "LEFT+UP",
    "DOWN",
    "NOOP",
    "UP",
    "RIGHT+DOWN",
    "RIGHT",
    "RIGHT+UP",
    "D",
    "A",
    "W",
    "S",
    "Q",
    "E",
)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE_HEIGHT = 14  # pixels per overlay text line
WHITE, GREY, BLUE, RED, DARK = (255, 255, 255), (190, 190, 190), (30, 90, 200), (220, 40, 40), (24, 24, 24)  # RGB

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A learned reward: frames uint8 ``(T, 64, 64, 3)`` and actions int64 ``(T,)`` -> per-step rewards ``(T,)``."""


def overlay_values(episode: Episode) -> list[dict]:
    """The overlay of every frame as data: ``step``, ``action``, ``action_name``, ``reward`` (true, of this step),
    ``return`` (true, up to and including this step), ``learned_reward`` and ``learned_return`` (running sum;
    both None without a reward model), ``level_seed``."""
    returns = np.cumsum(episode.rewards, dtype=np.float64)
    learned = None if episode.learned_rewards is None else np.cumsum(episode.learned_rewards)
    return [
        {
            "step": t,
            "action": int(episode.actions[t]),
            "action_name": ACTION_NAMES[int(episode.actions[t])],
            "reward": float(episode.rewards[t]),
            "return": float(returns[t]),
            "learned_reward": None if learned is None else float(episode.learned_rewards[t]),
            "learned_return": None if learned is None else float(learned[t]),
            "level_seed": episode.level_seed,
        }
        for t in range(episode.length)
    ]


# ---------------------------------------------------------------------------------------------------------
# Recording


def record_episodes(
    agent,
    env_config: EnvConfig,
    split: Split = "test",
    episodes: int = 1,
    levels: Sequence[int] | None = None,
    num_envs: int = 1,
    seed: int = 0,
    deterministic: bool = False,
    max_steps: int | None = None,
    reward_fn: RewardFn | None = None,
) -> list[Episode]:
    """Play ``episodes`` episodes of ``agent`` and return them in episode order.

    Without ``levels`` the episodes are drawn from ``split``'s levels; with ``levels``, episode ``k`` plays
    level ``levels[k % len(levels)]``. Episodes run ``num_envs`` at a time (one batched ``act`` per step),
    episode ``k`` in slot ``k % num_envs``; each slot is a one-environment ``ProcgenVecEnv``, rebuilt for
    a new level or after an episode cut at ``max_steps``, so every episode starts at its level's start.

    A multi-game config plays ``episodes`` episodes of each game in turn (``EnvConfig.for_game``), returned game
    after game, each episode named after its game (``game_tiles`` lays them out one place per game).
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes ({episodes}) and num_envs ({num_envs}) must be >= 1")
    if len(env_config.game_list) > 1:
        settings = (split, episodes, levels, num_envs, seed, deterministic, max_steps, reward_fn)
        return [
            dataclasses.replace(episode, name=game)
            for game in env_config.game_list
            for episode in record_episodes(agent, env_config.for_game(game), *settings)
        ]
    if levels is not None:
        if not levels:
            raise UserError("--levels: give at least one level seed")
        bad = next((s for s in levels if not 0 <= s <= MAX_LEVEL_SEED), None)
        if bad is not None:
            raise UserError(f"--levels: level seed {bad} is out of range; allowed 0 to {MAX_LEVEL_SEED}")
    num_envs = min(num_envs, episodes)
    plan = [list(range(slot, episodes, num_envs)) for slot in range(num_envs)]  # episode numbers per slot
    env_config = dataclasses.replace(env_config, num_threads=0)
    envs: list[ProcgenVecEnv | None] = [None] * num_envs
    builds = [0] * num_envs

    def next_job(slot: int, ended: Episode | None) -> Job | None:
        done = 0 if ended is None else plan[slot].index(ended.job) + 1
        if done == len(plan[slot]):
            return None  # this slot has played its share; its env only keeps the batch shape
        episode = plan[slot][done]
        if envs[slot] is not None and levels is None and not ended.truncated:
            return Job(episode)
        # A new level, or an episode cut short: start the next one from a fresh env.
        if envs[slot] is not None:
            envs[slot].close()
        builds[slot] += 1
        if levels is not None:
            envs[slot] = ProcgenVecEnv(one_level_config(env_config, levels[episode % len(levels)]), "train", 1, seed)
        else:
            envs[slot] = ProcgenVecEnv(env_config, split, 1, seed=seed * 1_000_003 + slot * 1_009 + builds[slot])
        envs[slot].reset()
        return Job(episode, env=envs[slot])

    finished: dict[int, Episode] = {}
    try:
        for episode in play_episodes(lambda _: agent, num_envs, next_job, None, deterministic, max_steps):
            finished[episode.job] = episode.with_learned_rewards(reward_fn) if reward_fn is not None else episode
    finally:
        for env in (e for e in envs if e is not None):
            env.close()
    return [finished[k] for k in range(episodes)]


# ---------------------------------------------------------------------------------------------------------
# Rendering


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor (keeps Procgen's pixels sharp)."""
    return frame if scale == 1 else np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def overlay_lines(values: dict) -> list[str]:
    """The overlay text of one frame (from ``overlay_values``)."""
    gain = f" ({values['reward']:+g})" if values["reward"] else ""
    lines = [
        f"step {values['step']}  {values['action_name']}",
        f"return {values['return']:g}{gain}",
    ]
    if values["learned_reward"] is not None:
        lines.append(f"learned {values['learned_reward']:+.3f} sum {values['learned_return']:.2f}")
    return lines


def _font_scale(lines: list[str], width: int) -> float:
    """The largest font scale (at most 0.4) at which every line fits ``width`` pixels."""
    widest = max(cv2.getTextSize(line, FONT, 0.4, 1)[0][0] for line in lines)
    return max(0.25, min(0.4, 0.4 * (width - 6) / max(widest, 1)))


def render_cell(frame: np.ndarray, values: dict, scale: int, num_lines: int, dim: bool = False) -> np.ndarray:
    """One upscaled game frame with ``num_lines`` overlay lines in a dark panel under it (RGB uint8).

    ``dim`` greys out a cell whose episodes are over.
    """
    image = upscale(frame, scale)
    width = image.shape[1]
    panel = np.full((num_lines * LINE_HEIGHT + 6, width, 3), DARK, np.uint8)
    lines = overlay_lines(values)
    font_scale = _font_scale(lines, width)
    for k, line in enumerate(lines):
        _text(panel, line, 3, (k + 1) * LINE_HEIGHT, font_scale, WHITE)
    cell = np.concatenate([image, panel])
    if dim:
        cell = (cell * 0.35).astype(np.uint8)
        _text(cell, "done", 4, 16, 0.5, WHITE)
    return cell


def grid(cells: Sequence[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """Equal-size cells in rows of ``columns``, separated by ``gap`` dark pixels (empty places stay dark)."""
    h, w, _ = cells[0].shape
    rows = math.ceil(len(cells) / columns)
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), DARK, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = cell
    return out


def even_size(frame: np.ndarray) -> np.ndarray:
    """Pad a frame by one dark row/column where its height/width is odd (yuv420p needs even sizes)."""
    h, w, _ = frame.shape
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=DARK[0])


def episode_frames(episodes: Sequence[Episode], scale: int = 4, cells: int = 1) -> Iterator[np.ndarray]:
    """Video frames of ``episodes``: with ``cells`` 1 one episode after another, else a grid of ``cells``
    places, place ``c`` playing episodes ``c, c + cells, ...`` one after another, all places in step (a
    place whose episodes are over shows its last frame greyed out)."""
    num_lines = 3 if any(e.learned_rewards is not None for e in episodes) else 2
    cells = max(1, min(cells, len(episodes)))
    columns = math.ceil(math.sqrt(cells))
    # Each place's timeline: (episode, step, its overlay values) per frame.
    timelines = [
        [(episode, t, values) for episode in episodes[c::cells] for t, values in enumerate(overlay_values(episode))]
        for c in range(cells)
    ]
    for i in range(max(len(t) for t in timelines)):
        images = []
        for timeline in timelines:
            episode, t, values = timeline[min(i, len(timeline) - 1)]
            images.append(render_cell(episode.obs[t], values, scale, num_lines, dim=i >= len(timeline)))
        yield even_size(images[0] if cells == 1 else grid(images, columns))


def game_tiles(episodes: Sequence[Episode], num_games: int) -> list[Episode]:
    """Episodes recorded game after game (``record_episodes`` of a multi-game config, the same number of each)
    reordered so that ``episode_frames(..., cells=num_games)`` gives each game one place of the grid, in order,
    where its episodes follow one another."""
    per_game, extra = divmod(len(episodes), num_games)
    if extra:
        raise ValueError(f"{len(episodes)} episodes do not split evenly across {num_games} games")
    return [episodes[g * per_game + k] for k in range(per_game) for g in range(num_games)]


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.35, color=DARK) -> None:
    cv2.putText(image, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)


def trace_frames(episode: Episode, scale: int = 4, plot_width: int | None = None) -> Iterator[np.ndarray]:
    """Video frames of one episode with its learned reward: the frame (and overlay) beside the curve of
    the learned per-step reward so far, on axes fixed for the whole episode; red ticks mark the steps
    where the game paid a reward, so one can see what the reward model rewards."""
    if episode.learned_rewards is None:
        raise ValueError("a trace video needs the episode's learned rewards (give a reward model)")
    height = 64 * scale + 3 * LINE_HEIGHT + 6
    width = plot_width or max(320, 96 * scale)
    left, right, top, bottom = 52, width - 10, 24, height - 28
    learned = episode.learned_rewards
    low, high = min(float(learned.min()), 0.0), max(float(learned.max()), 0.0)
    pad = (high - low) * 0.08 or 0.5
    low, high = low - pad, high + pad
    px = (left + np.arange(episode.length) / max(episode.length - 1, 1) * (right - left)).round().astype(np.int32)
    py = (bottom - (learned - low) / (high - low) * (bottom - top)).round().astype(np.int32)
    points = np.stack([px, py], 1)
    paid = np.flatnonzero(episode.rewards)

    background = np.full((height, width, 3), 255, np.uint8)
    zero_y = int(round(bottom - (0 - low) / (high - low) * (bottom - top)))
    cv2.line(background, (left, zero_y), (right, zero_y), GREY, 1)
    cv2.rectangle(background, (left, top), (right, bottom), DARK, 1)
    _text(background, f"{high:.2g}", 4, top + 8)
    _text(background, f"{low:.2g}", 4, bottom)
    _text(background, "0", left - 2, bottom + 14)
    _text(background, f"{episode.length - 1}", right - 24, bottom + 14)
    _text(background, "step", (left + right) // 2 - 12, bottom + 14)
    _text(background, "learned reward per step", left, 15, 0.4, BLUE)
    _text(background, "| true r != 0", left + 190, 15, 0.35, RED)

    for values in overlay_values(episode):
        t = values["step"]
        plot = background.copy()
        for step in paid[paid <= t]:
            cv2.line(plot, (int(px[step]), bottom - 8), (int(px[step]), bottom), RED, 1)
        if t > 0:
            cv2.polylines(plot, [points[: t + 1]], False, BLUE, 1, cv2.LINE_AA)
        cv2.circle(plot, (int(px[t]), int(py[t])), 3, BLUE, -1, cv2.LINE_AA)
        cell = render_cell(episode.obs[t], values, scale, 3)
        canvas = np.full((height, cell.shape[1], 3), DARK, np.uint8)
        canvas[: cell.shape[0]] = cell
        yield even_size(np.concatenate([canvas, plot], axis=1))


# ---------------------------------------------------------------------------------------------------------
# Writing


def find_ffmpeg() -> str:
    """The ffmpeg executable: $IMAGEIO_FFMPEG_EXE, the binary imageio-ffmpeg ships, or ffmpeg on the PATH."""
    if exe := os.environ.get("IMAGEIO_FFMPEG_EXE"):
        return exe
    # Look for the bundled binary without importing imageio_ffmpeg: the 0.3 series gym3 pins imports
    # pkg_resources, which recent setuptools no longer ship.
    spec = importlib.util.find_spec("imageio_ffmpeg")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder, "binaries").glob("ffmpeg-*"))
        found = [f for f in found if os.access(f, os.X_OK) and f.suffix != ".md"]
        if found:
            return str(found[-1])
    if system := shutil.which("ffmpeg"):
        return system
    raise UserError("no ffmpeg found to write mp4: pip install imageio-ffmpeg, install ffmpeg, or pass --gif")


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: int = 15, crf: int = 20) -> int:
    """Stream RGB frames (all one size, even sides) into an H.264 mp4 (yuv420p, faststart: plays in
    browsers), written to a temporary file and renamed; returns the number of frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    h, w, _ = first.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 in yuv420p needs even frame sides, got {w}x{h} (see even_size)")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    command = [
        find_ffmpeg(), "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", "-f", "mp4", tmp,
    ]  # fmt: skip
    count = 0
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for frame in itertools.chain([first], frames):
                if frame.shape != first.shape:
                    raise ValueError(f"frame {count} is {frame.shape}, the video is {first.shape}")
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
                count += 1
        except BrokenPipeError:
            pass  # ffmpeg stopped; its message is read below
        finally:
            proc.stdin.close()
            error = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            code = proc.wait()
        if code != 0:
            last = error.splitlines()[-1] if error else f"exit status {code}"
            raise UserError(f"ffmpeg could not write {path}: {last}")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return count


def write_gif(path: str | Path, frames: Iterable[np.ndarray], fps: int = 15) -> int:
    """Write RGB frames as a looping GIF (pillow picks a palette per frame), atomically; returns the count."""
    import io

    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    buffer = io.BytesIO()
    # GIF delays are in 10 ms units: 15 fps becomes 70 ms per frame.
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return len(images)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 15) -> int:
    """An mp4 or a GIF, by the suffix of ``path``; returns the number of frames written."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    if suffix == ".mp4":
        return write_mp4(path, frames, fps)
    raise UserError(f"--out: {path} must end in .mp4 or .gif")


def record_eval_video(
    agent,
    env_config: EnvConfig,
    run_dir: str | Path,
    step: int,
    episodes: int = 1,
    split: Split = "test",
    deterministic: bool = False,
    seed: int = 0,
    scale: int = 3,
    fps: int = 15,
    max_steps: int | None = 1000,
) -> Path:
    """A trainer's periodic evaluation video: ``episodes`` episodes on ``split`` side by side in a grid (of each
    game of a multi-game config: a game's episodes follow one another in the grid's order), written to
    ``<run_dir>/videos/eval-step_<step>.mp4``; returns its path.

    Leaves the agent's network mode to the caller (put it back in training mode afterwards, as after the
    evaluation); plays its own environments, so the training env is untouched.
    """
    recorded = record_episodes(
        agent, env_config, split, episodes, num_envs=episodes, seed=seed, deterministic=deterministic,
        max_steps=max_steps,
    )  # fmt: skip
    path = Path(run_dir) / "videos" / f"eval-step_{step:09d}.mp4"
    write_mp4(path, episode_frames(recorded, scale, cells=len(recorded)), fps)
    return path
