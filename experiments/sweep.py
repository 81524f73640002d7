"""Study grids on Ray: games x seeds x any config values, each cell one T-REX experiment.

    python -m experiments.sweep -c configs/sweep-quickstart.yaml [key=value ...] [--address ADDR] [--aggregate-only]

A sweep config names a base experiment config (``experiments.pipeline``'s) with overrides, a grid (dotted key ->
list of values) and seeds. Every cell, one combination of grid values and one seed, is one pipeline run in its own
folder named by its values, ``<out>/<key>=<value>,.../seed<S>``. The cells run as Ray tasks (Moritz et al. 2018,
"Ray: a distributed framework for emerging AI applications"), each declaring its CPUs (and GPU fraction): on a
local Ray instance using this machine's cores, or on a running Ray cluster given its address (``--address`` or
``ray.address``); every node then reads and writes the cell folders, so a cluster needs a filesystem shared at the
same path.

Before any cell starts, every cell's pipeline config is built and checked (a bad grid key or value stops the sweep
with one line naming it) and every cell folder planned: a cell whose pipeline finished with these settings is
skipped, an unfinished one resumes (the pipeline resumes its stages), and one whose folder holds results made with
other settings stops the sweep. A cell that fails is reported with its one-line error while the others go on; the
exit status is 1 when any cell failed. Each cell's output goes to ``<cell>/sweep.log``.

At the end, and alone with ``--aggregate-only``, ``<out>/summary.csv`` and ``<out>/summary.md`` give per cell (grid
values) over its seeds the mean and interquartile mean of the reward model's rank correlations and pair accuracies
(learned return, episode length and untrained net; held-out and in distribution) and of every policy's held-out
return and normalised score, with 95% percentile bootstrap CIs (rliable's method: Agarwal et al. 2021, "Deep
reinforcement learning at the edge of the statistical precipice"), and ``<out>/summary.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import io
import itertools
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from experiments.pipeline import Config as ExperimentConfig
from experiments.pipeline import check_devices, check_is_experiment, plan, read_record, run_pipeline, stages
from procgen_common.checkpoint import atomic_write_text
from procgen_common.cli import USER_ERRORS, OneLineParser, UserError, main_guard
from procgen_common.config import (
    Checked,
    ConfigError,
    bounded,
    describe,
    from_dict,
    load_config,
    node_at,
    parse_override,
    read_yaml,
    save_config,
)
from procgen_common.logger import close_bar, progress_bar
from procgen_common.runs import FolderLock
from procgen_common.stats import iqm, mean, stratified_bootstrap_ci

Scalar = Union[bool, int, float, str]  # noqa: UP007 - a typing.Union, which procgen_common.config reads
GridValue = Union[bool, int, float, str, list[Scalar], None]  # noqa: UP007

SWEEP_KEYS = {"seed": "from seeds", "dir": "<out>/<cell>/seed<S>"}
# The sections whose torch_threads a cell pins to its CPUs where the config leaves it at 0 (one thread per core):
# several cells on one machine would otherwise each take every core.
THREAD_KEYS = ("demonstrator.train", "demos", "reward.train", "agent.train")


@dataclass(frozen=True)
class Axis(Checked):
    """One axis of the grid: a dotted key of the experiment config and the values it takes."""

    key: str = ""
    """A dotted key of the experiment config, e.g. env.game or demos.num_train_levels."""
    values: list[GridValue] = field(default_factory=list)
    """The values the key takes, one cell (per seed) each."""

    def validate(self) -> None:
        if not self.key.strip() or any(not part for part in self.key.split(".")):
            raise ValueError(f"key: {self.key!r} is not a dotted config key; write e.g. env.game")
        if self.key in SWEEP_KEYS:
            raise ValueError(f"{self.key}: set by the sweep ({SWEEP_KEYS[self.key]}); leave it out of the grid")
        if not self.values:
            raise ValueError(f"{self.key}: no values; give a list of at least one")
        if len({json.dumps(v) for v in self.values}) < len(self.values):
            raise ValueError(f"{self.key}: a value is given twice in {self.values!r}")


@dataclass(frozen=True)
class RayConfig(Checked):
    """Where the cells run and what each declares to Ray's scheduler."""

    address: str | None = None
    """A running Ray cluster to join (host:port of its head, as `ray start --head` prints; ray://host:port for Ray
    Client; auto for the one started last on this machine). null = start Ray here on this machine's cores."""
    num_cpus: int | None = bounded(None, 1)
    """CPUs of the local Ray instance (null = every core); unused with an address."""
    cpus_per_cell: float = bounded(1.0, 0, low_open=True)
    """CPUs each cell declares (Ray runs as many cells at once as the CPUs allow); a stage's torch_threads left at
    0 becomes this, rounded down (at least 1)."""
    gpus_per_cell: float = bounded(0.0, 0)
    """GPUs (or a fraction of one) each cell declares; 0 on a CPU machine."""


@dataclass(frozen=True)
class Config(Checked):
    """A sweep (experiments.sweep): cells = grid values x seeds, each one experiments.pipeline run."""

    experiment: str = "configs/quickstart.yaml"
    """The base experiment config (experiments.pipeline's YAML) every cell starts from."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of the base config shared by every cell (as on the pipeline's command line)."""
    grid: list[Axis] = field(default_factory=list)
    """The grid: a mapping of dotted keys (or nested sections) to lists of values, e.g. {env.game: [starpilot,
    fruitbot], demos.num_train_levels: [5, 10]}; on the command line grid.env.game=[starpilot,fruitbot]. Every
    combination is a cell."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds of every cell (the pipeline's seed)."""
    out: str = "experiments/sweep"
    """Sweep folder: one subfolder per cell, summary.csv, summary.md and summary.png."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Where the cells run (Ray)."""

    @classmethod
    def fill_data(cls, data: dict, where: str) -> dict:
        """``data`` with its grid, a mapping of dotted keys or nested sections to lists (or the saved form, a list
        of {key, values}), as a list of ``Axis``."""
        grid = data.get("grid") or {}
        axes = []
        if isinstance(grid, dict):
            items = flatten_grid(grid)
        elif isinstance(grid, list) and all(isinstance(a, dict) and set(a) == {"key", "values"} for a in grid):
            items = [(a["key"], a["values"]) for a in grid]
        else:
            raise ConfigError(f"grid: expected a mapping of keys to lists of values, got {grid!r} ({where})")
        for key, values in items:
            if not isinstance(values, list):
                raise ConfigError(f"grid.{key}: expected a list of values, got {values!r} ({where})")
            try:
                axes.append(Axis(key=key, values=values))
            except ConfigError as err:
                raise ConfigError(f"grid.{err} ({where})") from None
        return {**data, "grid": axes}

    def validate(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: empty; give at least one seed, e.g. seeds=[0,1,2]")
        if len(set(self.seeds)) < len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: {self.seeds!r}; give distinct seeds >= 0")
        keys = [a.key for a in self.grid]
        if len(set(keys)) < len(keys):
            raise ValueError(f"grid: a key is given twice in {keys}")
        if not self.out.strip():
            raise ValueError("out: empty; name the sweep folder (e.g. out=experiments/my-sweep)")
        for text in self.overrides:
            keys_, _ = parse_override(text)
            key = ".".join(keys_)
            if key in SWEEP_KEYS:
                raise ValueError(f"overrides: {key} is set by the sweep ({SWEEP_KEYS[key]}); leave it out")


def flatten_grid(grid: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{env: {game: [a, b]}, demos.num_train_levels: [5]}`` -> ``[('env.game', [a, b]), ('demos...', [5])]``; a
    key given twice (env.game in the file, grid.env.game=... on the command line) takes the later value."""
    items: dict[str, Any] = {}
    for key, value in grid.items():
        if isinstance(value, dict):
            items |= dict(flatten_grid(value, f"{prefix}{key}."))
        else:
            items.pop(f"{prefix}{key}", None)
            items[f"{prefix}{key}"] = value
    return list(items.items())


# ---------------------------------------------------------------------------------------------------------
# Cells


@dataclass(frozen=True)
class Cell:
    """One experiment of the sweep: grid values (``(key, value)`` in grid order) and a seed."""

    values: tuple[tuple[str, Any], ...]
    seed: int
    out: str

    @property
    def name(self) -> str:
        """The folder of the cell's seeds, named by its values (``base`` for an empty grid)."""
        return ",".join(f"{key}={value_text(value)}" for key, value in self.values) or "base"

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name / f"seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.name}/seed{self.seed}"


def value_text(value: Any) -> str:
    """A grid value as it appears in a folder name: YAML-like, a path's ``/`` as ``_``."""
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value).replace(os.sep, "_")


def grid_cells(config: Config) -> list[Cell]:
    """Every cell: the product of the grid's values (first axis slowest), then the seeds."""
    combos = itertools.product(*([(a.key, v) for v in a.values] for a in config.grid))
    cells = [Cell(tuple(combo), seed, config.out) for combo in combos for seed in config.seeds]
    names: dict[Path, Cell] = {}
    for cell in cells:
        if len(cell.name.encode()) > 240:
            raise ConfigError(
                f"grid: the folder name of cell {cell.name[:60]}... is too long; use fewer or shorter values"
            )
        if cell.folder in names:
            raise ConfigError(f"grid: cells {names[cell.folder].name} and {cell.name} would share one folder")
        names[cell.folder] = cell
    return cells


def base_data(config: Config) -> dict:
    """The base experiment config as a mapping, with the sweep's overrides applied."""
    data = read_yaml(config.experiment)
    for text in config.overrides:
        keys, value = parse_override(text)
        node_at(data, keys[:-1], f"overrides: {text!r}")[keys[-1]] = value
    return data


def cell_config(config: Config, cell: Cell, base: dict) -> ExperimentConfig:
    """The cell's checked pipeline config: the base with the cell's values, seed and folder (a ConfigError names
    the cell and the key)."""
    data = copy.deepcopy(base)
    for key, value in cell.values:
        *parents, last = key.split(".")
        node_at(data, parents, f"grid.{key} (cell {cell.name})")[last] = copy.deepcopy(value)
    threads = max(1, int(config.ray.cpus_per_cell))
    for section in THREAD_KEYS:
        node = node_at(data, section.split("."), section)
        if not node.get("torch_threads"):
            node["torch_threads"] = threads
    data["seed"], data["dir"] = cell.seed, str(cell.folder)
    where = f"in {config.experiment} with the sweep's overrides and grid, cell {cell.label}"
    return from_dict(ExperimentConfig, data, where)


@dataclass
class Planned:
    """A cell ready to run: its pipeline config and whether it already finished with these settings."""

    cell: Cell
    config: ExperimentConfig
    finished: bool


def plan_cells(config: Config) -> list[Planned]:
    """Every cell's pipeline config built and checked and its folder planned, before any cell runs: a bad key or
    value, a device this machine lacks or a cell folder made with other settings raises one line naming it."""
    base = base_data(config)
    planned = []
    for cell in grid_cells(config):
        experiment = cell_config(config, cell, base)
        try:
            check_devices(experiment)
            check_is_experiment(Path(experiment.dir))
            finished = cell_finished(experiment)
        except USER_ERRORS as err:
            raise UserError(f"cell {cell.label}: {err}") from None
        planned.append(Planned(cell, experiment, finished))
    return planned


def cell_finished(experiment: ExperimentConfig) -> bool:
    """Whether the pipeline's final stage (evaluation) finished with today's settings and the report exists; a
    stage finished with other settings raises the pipeline's one-line UserError."""
    root = Path(experiment.dir)
    if read_record(root / "stages" / "evaluation.json") is None or not (root / "report.md").is_file():
        return False
    return plan(stages(experiment), root)["evaluation"][2] is not None


# ---------------------------------------------------------------------------------------------------------
# Running a cell (a Ray task)


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C extensions' output too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_cell(experiment: ExperimentConfig, cwd: str) -> dict:
    """One cell, run in a Ray worker: the pipeline in the cell's folder, its output in ``<cell>/sweep.log``.
    Returns ``{"error": None or one line, "seconds": ..., **headline}``; never raises for a failing pipeline."""
    start = time.monotonic()
    previous = os.getcwd()
    if Path(cwd).is_dir():
        os.chdir(cwd)  # the driver's relative paths (out, experiment files, zoo folders) mean the same here
    try:
        root = Path(experiment.dir)
        # stages/ marks the folder as an experiment's (the pipeline refuses a folder of other files, as sweep.log
        # would look); plan_cells checked it holds no other files.
        (root / "stages").mkdir(parents=True, exist_ok=True)
        log = root / "sweep.log"
        with output_to(log):
            print(f"--- {time.ctime()} on {socket.gethostname()}, pid {os.getpid()}", flush=True)
            try:
                run_pipeline(experiment)
                error = None
            except USER_ERRORS as err:
                error = str(err)
            except Exception as err:  # a cell's bug or crash must not stop the other cells
                traceback.print_exc()
                error = f"{type(err).__name__}: {err}".splitlines()[0] + f" (traceback in {log})"
            if error is not None:
                print(f"error: {error}", flush=True)
        return {"error": error, "seconds": time.monotonic() - start, **headline(root)}
    finally:
        os.chdir(previous)


def headline(root: Path) -> dict:
    """The cell's headline figures: held-out Spearman of the learned reward and of episode length, the
    learned-reward agent's held-out return and normalised score (None where not written)."""
    metrics = cell_metrics(root)
    return {
        "spearman": metrics.get("reward.held_out.learned.spearman"),
        "length_spearman": metrics.get("reward.held_out.episode_length.spearman"),
        "return": metrics.get("return.agent_learned"),
        "score": metrics.get("normalized_score.agent_learned"),
    }


def headline_text(result: dict) -> str:
    def num(key: str, digits: int) -> str:
        return "n/a" if result.get(key) is None else f"{result[key]:.{digits}f}"

    return (
        f"held-out Spearman {num('spearman', 3)} (length {num('length_spearman', 3)}), learned-reward agent "
        f"held-out return {num('return', 2)} (normalised {num('score', 3)})"
    )


# ---------------------------------------------------------------------------------------------------------
# Ray


def connect(ray_config: RayConfig) -> None:
    """Start Ray on this machine, or join the cluster at ``ray_config.address``; an address with no Ray head is a
    one-line UserError (checked with a plain TCP connection first: Ray itself would keep retrying for minutes)."""
    import ray

    address = ray_config.address
    # Workers import this checkout of the suite (the driver's, on the shared filesystem), not whichever one an
    # editable install on the node points to.
    code = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)
    options = {
        "log_to_driver": False,
        "logging_level": "ERROR",
        "include_dashboard": False,
        "runtime_env": {"env_vars": {"PYTHONPATH": code}},
    }
    if address is None:
        ray.init(address="local", num_cpus=ray_config.num_cpus, **options)
        return
    if address != "auto":
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UserError(f"ray.address: {address!r} is not host:port (e.g. 10.0.0.1:6379, as `ray start --head` "
                            "prints)")  # fmt: skip
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise UserError(
                f"ray.address: no Ray cluster answers at {address} ({err.strerror or err}); start its head with "
                "`ray start --head` or leave the address out to run on this machine"
            ) from None
    options.pop("include_dashboard")
    if address != "auto" and host in ("127.0.0.1", "localhost", "::1"):
        options["_node_ip_address"] = host  # a head on loopback: this machine is that node, at that address
    try:
        ray.init(address=address, **options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        hint = "" if os.environ.get("RAY_AUTH_MODE") else "; a cluster started by `ray start` wants RAY_AUTH_MODE=token"
        raise UserError(f"ray.address: cannot join a Ray cluster at {address} ({reason}){hint}") from None


def run_cells(config: Config, planned: list[Planned]) -> list[str]:
    """Run every unfinished cell as a Ray task, one progress bar over cells and a line per finished cell; returns
    the labels of the cells that failed."""
    import ray
    from ray.exceptions import RayError

    todo = [p for p in planned if not p.finished]
    done, failed = len(planned) - len(todo), []
    bar = progress_bar(total=len(planned), initial=done, desc="cells", unit="cell", dynamic_ncols=True)

    def say(line: str) -> None:  # a line above the bar, on stderr with it
        bar.write(line, file=sys.stderr)

    try:
        for p in planned:
            if p.finished:
                say(f"skipped {p.cell.label}: finished with these settings; {headline_text(headline(p.cell.folder))}")
        if not todo:
            return failed
        task = ray.remote(num_cpus=config.ray.cpus_per_cell, num_gpus=config.ray.gpus_per_cell, max_retries=1)(run_cell)
        pending = {task.remote(p.config, os.getcwd()): p.cell for p in todo}
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // config.ray.cpus_per_cell))
        while pending:
            running = min(len(pending), slots)
            bar.set_postfix(done=done, running=running, queued=len(pending) - running, failed=len(failed))
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                result = ray.get(ready)
            except RayError as err:  # the worker died (out of memory, node lost): one line, the others go on
                reason = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
                result = {"error": f"{type(err).__name__}: {reason}"}
            if result["error"] is None:
                done += 1
                say(f"done {cell.label} in {result['seconds']:.0f} s: {headline_text(result)}")
            else:
                failed.append(cell.label)
                say(f"FAILED {cell.label}: {result['error']} (log: {cell.folder / 'sweep.log'})")
            bar.update()
        bar.set_postfix(done=done, running=0, queued=0, failed=len(failed))
        return failed
    finally:
        close_bar(bar)


# ---------------------------------------------------------------------------------------------------------
# Aggregation

REWARD_SPLITS = ("held_out", "in_distribution")
PREDICTORS = ("learned", "episode_length", "untrained_net")
REWARD_STATS = ("spearman", "pair_accuracy")
POLICIES = {
    "agent, learned reward": "agent_learned",
    "agent, true reward": "agent_true",
    "best demonstrator": "best_demonstrator",
    "random": "random",
}
METRICS = [
    *(f"reward.{split}.{p}.{s}" for split in REWARD_SPLITS for s in REWARD_STATS for p in PREDICTORS),
    *(f"{what}.{slug}" for what in ("return", "normalized_score") for slug in POLICIES.values()),
]


def cell_metrics(root: Path) -> dict[str, float | None]:
    """A cell's metrics from the pipeline's files: ``reward/generalization.json`` (the reward model against the
    baselines, held out and in distribution) and ``evaluation/summary.json`` (every policy on held-out levels).
    Missing files give no entries; a correlation that does not exist (a constant predictor) is None."""
    metrics: dict[str, float | None] = {}
    for name, read in (("reward/generalization.json", _reward_metrics), ("evaluation/summary.json", _policy_metrics)):
        path = root / name
        if path.is_file():
            try:
                metrics |= read(json.loads(path.read_text()))
            except (ValueError, AttributeError, TypeError):
                print(f"warning: {path} is not the pipeline's JSON; left out", file=sys.stderr)
    return metrics


def _reward_metrics(summary: dict) -> dict:
    return {
        f"reward.{split}.{p}.{s}": summary[split].get(p, {}).get(s)
        for split in REWARD_SPLITS
        if split in summary
        for p in PREDICTORS
        for s in REWARD_STATS
    }


def _policy_metrics(rows: dict) -> dict:
    metrics = {}
    for policy, slug in POLICIES.items():
        if policy in rows:
            metrics[f"return.{slug}"] = rows[policy].get("mean_return")
            metrics[f"normalized_score.{slug}"] = rows[policy].get("normalized_score")
    return metrics


def estimate(values: list[float]) -> dict:
    """Mean and IQM of one cell's values over its seeds, each with its 95% percentile bootstrap CI (one stratum:
    the seeds; rliable's method, Agarwal et al. 2021); NaN where there are no values."""
    if not values:
        nan = float("nan")
        return {"runs": 0, **{k: nan for k in ("mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high")}}
    out: dict = {"runs": len(values)}
    for name, statistic in (("mean", mean), ("iqm", iqm)):
        low, high = stratified_bootstrap_ci([values], statistic)
        out |= {name: float(statistic(np.asarray(values))), f"{name}_low": low, f"{name}_high": high}
    return out


def summarize(config: Config) -> list[dict]:
    """One row per cell (grid values, seeds pooled) and metric: the cell's values and ``estimate``."""
    groups: dict[str, list[Cell]] = {}
    for cell in grid_cells(config):
        groups.setdefault(cell.name, []).append(cell)
    rows = []
    for name, cells in groups.items():
        per_seed = [cell_metrics(c.folder) for c in cells]
        for metric in METRICS:
            values = [float(m[metric]) for m in per_seed if m.get(metric) is not None]
            rows.append({"cell": name, **dict(cells[0].values), "metric": metric, **estimate(values)})
    return rows


def _ci(row: dict, name: str, digits: int = 3) -> str:
    if not row["runs"]:
        return "n/a"
    return f"{row[name]:.{digits}f} [{row[name + '_low']:.{digits}f}, {row[name + '_high']:.{digits}f}]"


HEADLINE = {
    "reward.held_out.learned.spearman": "held-out Spearman, learned",
    "reward.held_out.episode_length.spearman": "length",
    "reward.held_out.untrained_net.spearman": "untrained net",
    "return.agent_learned": "learned-reward agent's held-out return",
    "return.best_demonstrator": "best demonstrator's",
}


def overrides_text(overrides: list[str]) -> str:
    if not overrides:
        return ""
    if len(overrides) > 6:
        return f" with {len(overrides)} overrides (sweep.yaml)"
    return " with " + " ".join(f"`{o}`" for o in overrides)


def summary_markdown(config: Config, rows: list[dict]) -> str:
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    by = {(r["cell"], r["metric"]): r for r in rows}
    seeds = ", ".join(map(str, config.seeds))
    lines = [
        f"# Sweep: {len(cells)} cells x seeds {seeds}",
        "",
        f"Base experiment `{config.experiment}`{overrides_text(config.overrides)}; "
        f"grid {', '.join(f'{a.key} in {a.values}' for a in config.grid) or 'none'}. Per cell over its seeds: mean "
        "[95% percentile bootstrap CI over seeds] (rliable's method; Agarwal et al. 2021); `runs` counts the seeds "
        "with a result. One seed gives no interval: a claim rests on several.",
        "",
        "## Headline (means)",
        "",
        "| cell | runs | " + " | ".join(HEADLINE.values()) + " |",
        "|---|---|" + "---|" * len(HEADLINE),
    ]
    for cell in cells:
        runs = max(by[(cell, m)]["runs"] for m in HEADLINE)
        lines.append(f"| {cell} | {runs} | " + " | ".join(_ci(by[(cell, m)], "mean") for m in HEADLINE) + " |")
    lines += ["", "## Every metric: mean and interquartile mean (IQM)", ""]
    for metric in METRICS:
        lines += [f"### {metric}", "", "| cell | runs | mean | IQM |", "|---|---|---|---|"]
        for cell in cells:
            row = by[(cell, metric)]
            lines.append(f"| {cell} | {row['runs']} | {_ci(row, 'mean')} | {_ci(row, 'iqm')} |")
        lines.append("")
    if (Path(config.out) / "summary.png").is_file():
        lines += ["## Figure", "", "![summary](summary.png)", ""]
    return "\n".join(lines)


def write_summary(config: Config) -> Path:
    """``summary.csv``, ``summary.png`` and ``summary.md`` in the sweep folder, from the cell folders."""
    out = Path(config.out)
    rows = summarize(config)
    columns = ["cell", *(a.key for a in config.grid), "metric", "runs"]
    columns += ["mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.csv", text.getvalue())
    plot_summary(config, rows, out / "summary.png")
    atomic_write_text(out / "summary.md", summary_markdown(config, rows))
    return out / "summary.md"


def plot_summary(config: Config, rows: list[dict], path: Path) -> None:
    """Held-out Spearman of the learned reward and its two baselines (left) and every policy's held-out return
    (right) per cell, means with their 95% CIs over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(r["cell"] for r in rows))
    by = {(r["cell"], r["metric"]): r for r in rows}
    panels = (
        ("held-out Spearman with the true return", [f"reward.held_out.{p}.spearman" for p in PREDICTORS], PREDICTORS),
        ("held-out return", [f"return.{s}" for s in POLICIES.values()], list(POLICIES)),
    )
    x = np.arange(len(cells))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(cells) * 2), 4.2), squeeze=False)
    for ax, (title, metrics, labels) in zip(axes[0], panels, strict=True):
        width = 0.8 / len(metrics)
        for i, (metric, label) in enumerate(zip(metrics, labels, strict=True)):
            stats = [by[(c, metric)] for c in cells]
            means = np.array([s["mean"] for s in stats], dtype=float)
            err = np.array([[s["mean"] - s["mean_low"], s["mean_high"] - s["mean"]] for s in stats], dtype=float).T
            ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means, width, yerr=err, capsize=2, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, cells, rotation=30, ha="right", fontsize=7)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# The command


def run_sweep(config: Config, aggregate_only: bool = False) -> int:
    """Plan every cell (all checks before any runs), run the unfinished ones on Ray, write the summary; returns
    the exit status: 0, or 1 when a cell failed."""
    planned = plan_cells(config)
    out = Path(config.out)
    if aggregate_only:
        path = write_summary(config)
        print(f"summary: {path} ({sum(p.finished for p in planned)} of {len(planned)} cells finished)")
        return 0
    import ray

    work = not all(p.finished for p in planned)
    if work:
        connect(config.ray)  # an unreachable address stops here, before the sweep folder is made
    try:
        with FolderLock(out, "out"):
            save_config(config, out / "sweep.yaml")
            failed = run_cells(config, planned)
            path = write_summary(config)
    finally:
        if work:
            ray.shutdown()
    print(f"summary: {path}")
    if failed:
        print(f"{len(failed)} of {len(planned)} cells failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


DESCRIPTION = """Run a grid of T-REX experiments (experiments.pipeline) on Ray: every combination of the grid's values
and every seed is one experiment in its own folder. Finished cells are skipped and unfinished ones resume; a failing
cell is reported while the others go on (exit status 1). summary.csv and summary.md aggregate the cells over seeds."""


@main_guard
def main(argv: list[str] | None = None) -> int:
    keys = "\n".join(describe(Config)).lstrip("\n")
    parser = OneLineParser(
        prog="python -m experiments.sweep",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m experiments.sweep -c configs/sweep-quickstart.yaml seeds=[0,1,2]\n\n"
        f"config keys (set in the YAML file or as key=value):\n{keys}",
    )
    parser.add_argument("-c", "--config", metavar="SWEEP", required=True, help="sweep YAML (configs/sweep-*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. seeds=[0,1]")
    parser.add_argument("--address", help="join the Ray cluster at this address (sets ray.address)")
    parser.add_argument("--aggregate-only", action="store_true", help="only rebuild the summary from the folders")
    args = parser.parse_args(argv)
    config = load_config(Config, args.config, args.overrides)
    if args.address:
        config = dataclasses.replace(config, ray=dataclasses.replace(config.ray, address=args.address))
    return run_sweep(config, args.aggregate_only)


if __name__ == "__main__":
    sys.exit(main())
