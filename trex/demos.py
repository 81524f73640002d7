"""Demonstrations on disk: one compressed file per demo plus an ``index.csv`` per demo folder.

A demo folder (written by ``python -m trex.generate_demos``) holds

- ``index.csv``: one row per demo whose file is complete, the fields of ``DemoInfo`` (written atomically,
  so a kill never leaves half a table; a demo file it does not list is played again on a rerun);
- ``<demo_id>.npz.zst``: the demo's frames, actions and true rewards (``Demo``): an uncompressed ``.npz``
  compressed as one Zstandard frame (older folders hold zlib-deflated ``<demo_id>.npz`` files, still read);
- ``config.yaml``: the settings the demos were played with.

Nothing here holds a float copy of a demo set: ``DemoSet`` reads only the index and loads demos one
at a time, and ``load_frames`` packs the frames of many demos into one uint8 array from which the
trainer gathers snippets.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import zstandard

from procgen_common.checkpoint import atomic_write_bytes, atomic_write_text
from procgen_common.cli import UserError
from procgen_common.env import OBS_SHAPE

INDEX = "index.csv"
DemoSplit = Literal["train", "test"]


@dataclass(frozen=True)
class DemoInfo:
    """One demo's metadata: a row of ``index.csv`` (its columns are these field names)."""

    demo_id: str
    """Unique name, ``<split>-<checkpoint>-level<seed>-ep<k>``; the file is ``<demo_id>.npz``."""
    file: str
    """File name of the demo inside the demo folder."""
    game: str
    """Procgen game."""
    distribution_mode: str
    """Procgen difficulty mode."""
    split: DemoSplit
    """'train': a level the reward model may learn from; 'test': a held-out level, for evaluation only."""
    level_seed: int
    """The Procgen level the whole episode was played on."""
    episode: int
    """Index of this episode among those played by the same checkpoint on the same level."""
    checkpoint: str
    """Name of the checkpoint file that played it (without suffix)."""
    checkpoint_step: int
    """Training step of that checkpoint (-1 where unknown)."""
    agent: str
    """Kind of agent: the checkpoint's ``algo`` (e.g. 'ppo') or 'sb3' for stable-baselines3 models."""
    episode_return: float
    """True (game) return of the episode."""
    length: int
    """Number of steps (= frames stored)."""
    truncated: bool
    """True when the episode was cut at max_length rather than ended by the game."""
    epsilon: float = 0.0
    """Probability with which each action was replaced by a uniformly random one (the D-REX noise level of the
    ladder rung that played it; indexes written before noise ladders lack the column and mean 0)."""

    @classmethod
    def from_row(cls, row: dict[str, str], where: str) -> DemoInfo:
        """Parse a CSV row (strings) into typed fields; a bad value is a UserError naming ``where``."""
        parse = {int: int, float: float, bool: {"True": True, "False": False}.__getitem__}
        kwargs = {}
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        for name, tp in typing.get_type_hints(cls).items():
            text = row.get(name)
            if text is None and name in defaults:
                kwargs[name] = defaults[name]
                continue
            if text is None:
                raise UserError(
                    f"{where}: column '{name}' is missing; is this an index written by trex.generate_demos?"
                )
            try:
                kwargs[name] = parse.get(tp, str)(text)
            except (ValueError, KeyError):
                raise UserError(f"{where}: column '{name}' has the bad value {text!r}") from None
        if kwargs["split"] not in ("train", "test"):
            raise UserError(f"{where}: split {kwargs['split']!r} is not 'train' or 'test'")
        return cls(**kwargs)


@dataclass(frozen=True)
class Demo:
    """One demonstration: the frames an agent acted on, its actions and the true rewards.

    ``obs[t]`` is the frame action ``actions[t]`` was chosen on and ``rewards[t]`` what that action
    earned, so a learned per-frame reward r(obs[t]) lines up with the true reward of step t. The
    frame after the last action is never stored: Procgen has already reset to the next episode
    there, and scoring that frame was one of the bugs of the 2020 study of T-REX on Procgen.
    """

    info: DemoInfo
    """The demo's metadata (its index row)."""
    obs: np.ndarray
    """Frames, uint8 ``(T, 64, 64, 3)``."""
    actions: np.ndarray
    """Actions taken, int64 ``(T,)``."""
    rewards: np.ndarray
    """True rewards, float32 ``(T,)``."""

    def __post_init__(self):
        T = self.info.length
        for name, dtype, shape in (
            ("obs", np.uint8, (T, *OBS_SHAPE)),
            ("actions", np.int64, (T,)),
            ("rewards", np.float32, (T,)),
        ):
            array = getattr(self, name)
            if array.dtype != dtype or array.shape != shape:
                raise ValueError(
                    f"{name}: expected {np.dtype(dtype).name} {shape} for a demo of length {T}, "
                    f"got {array.dtype} {array.shape}"
                )


# Zstandard level 1 on the whole uncompressed .npz: on 60 starpilot demos it compressed ~66,000 frames/s to 0.10 of
# their size, level 3 (its default) ~39,000 frames/s to the same 0.10, and zlib level 1 (the former format) wrote ~4,500
# frames/s at 0.48 (bench/trex_speed.py).
ZSTD_LEVEL = 1
SUFFIX = ".npz.zst"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # how every Zstandard frame begins (RFC 8878)


def encode_demo(demo: Demo) -> bytes:
    """A demo's file contents: an uncompressed ``.npz`` inside one Zstandard frame, its metadata riding along as
    JSON text. Decompressed, it is what ``np.savez`` writes; ``np.load`` reads it without pickles."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        obs=demo.obs,
        actions=demo.actions,
        rewards=demo.rewards,
        info=np.array(json.dumps(dataclasses.asdict(demo.info))),
    )
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(buffer.getbuffer())


def save_demo(path: str | Path, demo: Demo, encoded: bytes | None = None) -> None:
    """Write a demo (atomically) as ``encode_demo`` makes it; ``encoded``: that, where the caller has it already."""
    atomic_write_bytes(path, encode_demo(demo) if encoded is None else encoded)


def load_demo(path: str | Path) -> Demo:
    """Read a demo written by ``save_demo`` (or an older zlib ``.npz``; no pickles: ``allow_pickle=False``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw.startswith(ZSTD_MAGIC):
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            info = DemoInfo(**json.loads(str(data["info"])))
            return Demo(info, data["obs"], data["actions"], data["rewards"])
    except FileNotFoundError:
        raise UserError(f"demo file {path} does not exist; rerun trex.generate_demos on its folder") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zstandard.ZstdError) as err:
        raise UserError(f"{path} is not a readable demo file ({str(err)[:160] or type(err).__name__})") from None


def write_index(folder: str | Path, infos: list[DemoInfo]) -> None:
    """Write ``index.csv`` (atomically) with one row per demo."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [f.name for f in dataclasses.fields(DemoInfo)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataclasses.asdict(info) for info in infos)
    atomic_write_text(Path(folder) / INDEX, out.getvalue())


def read_index(folder: str | Path) -> list[DemoInfo]:
    """The rows of a folder's ``index.csv`` ([] where there is none yet)."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [DemoInfo.from_row(row, f"{path} row {i + 2}") for i, row in enumerate(csv.DictReader(f))]
    except (UnicodeDecodeError, csv.Error):
        raise UserError(
            f"{path} is not a demo index (not CSV text); move it away and rerun trex.generate_demos on the folder"
        ) from None


@dataclass(frozen=True)
class DemoSet:
    """A checked demo folder: the index rows of one game and mode; frames stay on disk until loaded."""

    folder: Path
    """The demo folder."""
    infos: tuple[DemoInfo, ...]
    """Every demo in the index, in index order."""

    @classmethod
    def open(cls, folder: str | Path) -> DemoSet:
        """Read and check a demo folder; every problem is a one-line UserError naming the folder."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise UserError(f"demo folder {folder} is a file, not a folder of demos")
        if not folder.is_dir():
            raise UserError(f"demo folder {folder} does not exist; make one with python -m trex.generate_demos")
        infos = read_index(folder)
        if not infos:
            raise UserError(
                f"demo folder {folder} holds no demos (no {INDEX} or an empty one); "
                "make them with python -m trex.generate_demos"
            )
        kinds = sorted({(i.game, i.distribution_mode) for i in infos})
        if len(kinds) > 1:
            listed = ", ".join(f"{g} ({m})" for g, m in kinds)
            raise UserError(f"demo folder {folder} mixes games or modes ({listed}); keep one game and mode per folder")
        missing = [i.file for i in infos if not (folder / i.file).is_file()]
        if missing:
            raise UserError(
                f"demo folder {folder}: {len(missing)} demo files in {INDEX} are missing (e.g. {missing[0]}); "
                "rerun trex.generate_demos on it"
            )
        return cls(folder, tuple(infos))

    @property
    def game(self) -> str:
        return self.infos[0].game

    @property
    def distribution_mode(self) -> str:
        return self.infos[0].distribution_mode

    def split(self, split: DemoSplit) -> list[DemoInfo]:
        """The demos of one split, in index order."""
        return [info for info in self.infos if info.split == split]

    def load(self, info: DemoInfo) -> Demo:
        demo = load_demo(self.folder / info.file)
        if demo.info.length != info.length:
            raise UserError(f"{self.folder / info.file} has {demo.info.length} frames but {INDEX} says {info.length}")
        return demo

    def check_same_game(self, game: str, mode: str, what: str) -> None:
        """Refuse a folder of another game or mode than ``what`` (e.g. the reward model) was made for."""
        if (self.game, self.distribution_mode) != (game, mode):
            raise UserError(
                f"demo folder {self.folder} holds {self.game} ({self.distribution_mode}) demos but {what} "
                f"is for {game} ({mode}); use demos of the same game and mode"
            )


@dataclass(frozen=True)
class DemoFrames:
    """The frames and actions of several demos packed into one uint8 array, for gathering snippets.

    Demo ``k`` (the k-th of the ``infos`` it was loaded for) is ``frames[offsets[k]:offsets[k + 1]]``.
    """

    frames: np.ndarray
    """All frames, uint8 ``(F, 64, 64, 3)``."""
    actions: np.ndarray
    """All actions, int64 ``(F,)``."""
    offsets: np.ndarray
    """Start of each demo in ``frames`` plus the end, int64 ``(num_demos + 1,)``."""

    @property
    def lengths(self) -> np.ndarray:
        """Frames per demo, int64 ``(num_demos,)``."""
        return np.diff(self.offsets)


def load_frames(demo_set: DemoSet, infos: list[DemoInfo]) -> DemoFrames:
    """Load the frames of ``infos`` into one preallocated uint8 array (peak memory: it plus one demo)."""
    lengths = np.array([info.length for info in infos], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.empty((offsets[-1], *OBS_SHAPE), dtype=np.uint8)
    actions = np.empty(offsets[-1], dtype=np.int64)
    for k, info in enumerate(infos):
        demo = demo_set.load(info)
        frames[offsets[k] : offsets[k + 1]] = demo.obs
        actions[offsets[k] : offsets[k + 1]] = demo.actions
    return DemoFrames(frames, actions, offsets)
