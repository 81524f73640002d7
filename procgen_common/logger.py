"""Run logging: ``progress.csv`` (one row per update), TensorBoard, and optional Weights & Biases.

Keys are grouped the way CleanRL and SB3 name them (``charts/episodic_return``, ``losses/approx_kl``)
for TensorBoard and W&B; the CSV uses the same keys as columns, fixed when the logger is made, so
every row has every column (blank where a value was not measured in that update).

On resume the logger keeps the rows up to the resumed step and drops later ones (they belong to
work that is being redone), and TensorBoard purges events after that step.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from procgen_common.checkpoint import atomic_write_text
from procgen_common.config import Checked


def progress_bar(**kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; close it with ``close_bar``."""
    return tqdm(file=sys.stderr, **kwargs)


def close_bar(bar: tqdm | None) -> None:
    """Close a progress bar. Called from a ``finally`` block while an error propagates, it wipes the bar
    instead of leaving its last state, so the one-line error is all the user is left with."""
    if bar is None:
        return
    if sys.exc_info()[0] is not None:
        bar.leave = False
    bar.close()


@dataclass(frozen=True)
class LogConfig(Checked):
    """Where metrics go besides progress.csv."""

    tensorboard: bool = True
    """Write TensorBoard event files to <run.dir>/tb."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package; never required)."""
    wandb_mode: Literal["online", "offline"] = "offline"
    """W&B mode: 'offline' keeps the run on disk (sync later with `wandb sync`), 'online' uploads."""
    wandb_project: str = "procgen-trex"
    """W&B project name."""
    wandb_group: str | None = None
    """W&B group (e.g. one per experiment, runs = seeds)."""


class RunLogger:
    """Writes one row of metrics per call to ``log`` into every enabled sink."""

    def __init__(
        self,
        run_dir: Path,
        columns: list[str],
        config: LogConfig,
        resume_step: int | None = None,
        run_config: dict | None = None,
    ):
        self.columns = ["step", *[c for c in columns if c != "step"]]
        self.path = Path(run_dir) / "progress.csv"
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        new_file = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, self.columns, extrasaction="raise")
        if new_file:
            self._csv.writeheader()
            self._file.flush()
        self._tb = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
        self._wandb = None
        if config.wandb:
            try:
                import wandb
            except ImportError:
                raise ValueError("log.wandb: true needs the wandb package; run `pip install wandb`") from None
            self._wandb = wandb.init(
                project=config.wandb_project,
                group=config.wandb_group,
                dir=str(run_dir),
                mode=config.wandb_mode,
                config=run_config,
                name=Path(run_dir).name,
                resume="allow",
                id=Path(run_dir).name,
            )

    def _truncate(self, step: int) -> None:
        """Keep the header and the rows up to ``step`` (atomically)."""
        text = self.path.read_text()
        reader = csv.DictReader(io.StringIO(text))
        # A row cut short by a kill mid-write has missing cells (None): drop it with the later ones.
        kept = [
            row for row in reader if None not in row.values() and row.get("step") and int(float(row["step"])) <= step
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, reader.fieldnames or self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, out.getvalue())

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        unknown = set(metrics) - set(self.columns)
        assert not unknown, f"metrics {sorted(unknown)} are not columns of progress.csv"
        row = {"step": step, **{k: _cell(v) for k, v in metrics.items()}}
        self._csv.writerow(row)
        self._file.flush()
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def log_video(self, step: int, key: str, path: Path) -> None:
        """Send a video file to W&B when it is on (progress.csv and TensorBoard keep scalars only)."""
        if self._wandb is not None:
            import wandb

            self._wandb.log({key: wandb.Video(str(path), format="mp4")}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
