"""Checkpoint files: plain tensors and plain data, written atomically, loaded without running code.

A checkpoint is a dict saved with ``torch.save`` whose values are tensors, numbers, strings,
lists and dicts only, so ``torch.load(path, weights_only=True)`` can read it: loading a file
from someone else never executes code. Every write goes to a temporary file in the same folder
and is then renamed over the target, so a kill leaves either the old file or the new one.

Keys every checkpoint of the suite has:

- ``format``: ``FORMAT``; ``version``: ``VERSION``
- ``algo``: which agent class reads ``model`` (``ppo`` here; later agents add their own)
- ``step``: environment steps trained; ``mean_return``: mean training return at that time
- ``config``: the run's resolved config as a plain dict
- ``model``: the network's ``state_dict``

Resumable ("latest") checkpoints add ``optimizer``, ``rng`` and algorithm state.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "procgen-trex-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is missing, corrupt or not a checkpoint of this suite."""


def _current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write(path: str | Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the mode any other new file gets (0666 less the umask), so a
        # colleague on a shared machine can read checkpoints, demos and reports as they can the rest.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (``format`` and ``version`` are added)."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    _atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), or raise CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on foreign or truncated bytes
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} is not a readable checkpoint of this suite: it holds Python objects besides tensors and "
                "plain data (refused: loading it could run code)"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint of this suite (corrupt or not torch.save)"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this suite (no '{FORMAT}' format tag)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}; this suite reads {VERSION}")
    return data


def check_finite_weights(state_dict: dict, path: str | Path) -> None:
    """Refuse a state dict with NaN or infinite weights (a run that diverged): it would play or score silently wrong."""
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values (did its training diverge?)")
