"""Run folders and devices: starting a fresh run safely, or resuming one from its latest checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from procgen_common.checkpoint import load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import field_default, read_yaml, to_dict

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def pick_device(name: str, key: str = "device") -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; anything else, or CUDA without one, is a
    one-line user error naming ``key`` (the config key or option the name came from)."""
    if not DEVICE_NAME.fullmatch(name):
        raise UserError(f"{key}: {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{key}: {name} was asked for but torch sees no CUDA device; use auto or cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UserError(f"{key}: {name} was asked for but torch sees {torch.cuda.device_count()} CUDA devices")
    return torch.device(name)


def prepare_run_dir(run_dir: Path, config, resume: bool, must_match: Sequence[str]) -> dict | None:
    """Check a run folder; return the newest checkpoint to resume from (``latest.pt`` or the last of the
    ``step_*.pt`` series, which hold the whole training state too), or None for a fresh run.

    A fresh run never overwrites an earlier one: a folder that already holds a run is an error unless
    ``resume``. Resuming needs the config sections in ``must_match`` (e.g. the env and the model) to
    equal the saved run's; the rest (budget, logging) may change.
    """
    latest = run_dir / "checkpoints" / "latest.pt"
    saved_config = run_dir / "config.yaml"
    if not resume:
        if latest.exists() or saved_config.exists():
            raise UserError(
                f"run.dir: {run_dir} already holds a run; "
                "pass train.resume=true to continue it or choose another run.dir"
            )
        return None
    series = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not latest.exists() and not series:
        print(f"train.resume: no checkpoint in {run_dir}; starting a fresh run", file=sys.stderr)
        return None
    # Every series checkpoint holds the whole training state too: resume from whichever of it and latest.pt is newer
    # (a kill between two latest.pt saves then loses at most the time since the last series checkpoint).
    checkpoint = load_checkpoint(latest) if latest.exists() else None
    if series:
        newest = load_checkpoint(series[-1])
        if "rng" in newest and (checkpoint is None or newest["step"] > checkpoint["step"]):
            checkpoint = newest
    if checkpoint is None:
        print(f"train.resume: no resumable checkpoint in {run_dir}; starting a fresh run", file=sys.stderr)
        return None
    now = to_dict(config)
    for section in must_match:
        saved = checkpoint["config"].get(section, {})
        diff = [
            key
            for key, value in now[section].items()
            # a key added since the run was saved matches at its default, which keeps what the code did before it
            if (saved[key] if key in saved else default_as_saved(type(getattr(config, section)), key)) != value
        ]
        if diff:
            raise UserError(
                f"train.resume: {', '.join(f'{section}.{k}' for k in diff)} differ from the run in {run_dir} "
                "(see its config.yaml); resume with the same settings or use another run.dir"
            )
    if saved_config.exists():
        read_yaml(saved_config)  # a corrupt config.yaml is reported before any work
    return checkpoint


def default_as_saved(cls: type, key: str):
    """The default of ``cls``'s field ``key`` in the form a saved config holds it (a config section as a dict)."""
    default = field_default(cls, key)
    return to_dict(default) if dataclasses.is_dataclass(default) else default


def use_threads(config, section: str | None = "train"):
    """Set torch's CPU thread count from ``<section>.torch_threads`` (0 = one per core) and return ``config`` with
    the count actually used, so the saved config.yaml records it (it changes the arithmetic's order, hence the
    last bits of every result)."""
    owner = getattr(config, section) if section else config
    threads = owner.torch_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    owner = dataclasses.replace(owner, torch_threads=threads)
    return dataclasses.replace(config, **{section: owner}) if section else owner


T = TypeVar("T")


def merge_threads(producers: Sequence[Callable[[], Iterator[T]]], max_queued: int = 8) -> Iterator[T]:
    """Run each producer in a thread of its own and yield their items as they arrive, each producer's in its order
    (a single producer runs in the caller's thread). The first error in a producer stops them all and is raised
    here; so does stopping early (an error or ``close()`` on the caller's side stops and joins the threads).
    Threads gain speed where producers spend their time outside the GIL (torch, Procgen, compressing)."""
    if len(producers) == 1:
        yield from producers[0]()
        return
    items: queue.Queue = queue.Queue(max_queued)
    stop = threading.Event()
    done = object()

    def put(message) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                items.put(message, timeout=0.1)
                return True
        return False

    def run(producer: Callable[[], Iterator[T]]) -> None:
        produced = producer()
        try:
            for item in produced:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as err:  # handed to the caller's thread, which raises it
            put((None, err))
        finally:
            if hasattr(produced, "close"):  # a generator's cleanup (files, envs) runs in its own thread
                produced.close()

    threads = [
        threading.Thread(target=run, args=(p,), name=f"producer-{i}", daemon=True) for i, p in enumerate(producers)
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item, err = items.get()
            if err is not None:
                raise err
            if item is done:
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch's CPU thread count set to ``count`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"


def _remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries (``.<name>.<random>.tmp``, ``checkpoint._atomic_write``) that killed writes left in
    ``folder`` and its subfolders, skipping subfolders with a lock of their own (another job's, cleaned by it)."""
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.is_symlink():
            if not (path / LOCK_FILE).exists():
                removed += _remove_temporaries(path)
        elif path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class FolderLock:
    """One writer per run or experiment folder: hold it for the whole job.

    An advisory ``flock`` on ``<folder>/.lock`` (the ``filelock`` package), so the kernel releases it when the
    holder dies, however it dies: no stale locks. A second job on the same folder stops at once with one line
    naming the holder (``.lock.owner``: pid, host, command, start time). Taking the lock also removes the
    temporaries of writes that an earlier, killed job left behind, since no other writer can be using them.
    """

    def __init__(self, folder: str | Path, key: str):
        from filelock import FileLock, Timeout

        self.folder = Path(folder)
        make_folder(self.folder, key)
        self._lock = FileLock(self.folder / LOCK_FILE, is_singleton=False)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            try:
                holder = (self.folder / OWNER_FILE).read_text().strip() or "another job"
            except OSError:
                holder = "another job"
            raise UserError(
                f"{key}: {self.folder} is in use by {holder}; wait for it to finish or choose another {key}"
            ) from None
        owner = f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]}, since {time.ctime()})"
        (self.folder / OWNER_FILE).write_text(owner + "\n")
        for path in _remove_temporaries(self.folder):
            print(f"removed {path}, left by an interrupted write", file=sys.stderr)

    def release(self) -> None:
        if self._lock.is_locked:
            (self.folder / OWNER_FILE).unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def make_folder(folder: str | Path, key: str) -> Path:
    """Create an output folder (and its parents), or raise a one-line UserError naming ``key`` and the reason."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}: {folder} is a file, not a folder; choose another {key}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"{key}: cannot write to {folder} ({os_reason(err)}); choose another {key}") from None
    return folder


def os_reason(err: OSError) -> str:
    """An OSError's reason in a few words, naming the offending path when it is not the one asked about."""
    return "a part of the path is a file" if err.errno == errno.ENOTDIR else err.strerror or type(err).__name__
