"""Run folders and devices: starting a fresh run safely, or resuming one from its latest checkpoint."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from procgen_common.checkpoint import load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import read_yaml, to_dict


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu' or 'cuda'; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device: {name} was asked for but torch sees no CUDA device; use auto or cpu")
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
        diff = [key for key, value in now[section].items() if saved.get(key) != value]
        if diff:
            raise UserError(
                f"train.resume: {', '.join(f'{section}.{k}' for k in diff)} differ from the run in {run_dir} "
                "(see its config.yaml); resume with the same settings or use another run.dir"
            )
    if saved_config.exists():
        read_yaml(saved_config)  # a corrupt config.yaml is reported before any work
    return checkpoint
