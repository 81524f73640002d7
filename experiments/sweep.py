"""Study grids on Ray: games x seeds x any config values, each cell one T-REX experiment or one agent.

    python -m experiments.sweep -c configs/sweep-quickstart.yaml [key=value ...] [--address ADDR] [--aggregate-only]

A sweep config names an entry point and its base config with overrides, a grid (dotted key -> list of values),
explicit cells where a product does not fit (each a mapping of dotted key -> value, crossed with the grid) and seeds.
Every cell, one combination of values and one seed, runs in its own folder named by its values,
``<out>/<key>=<value>,.../seed<S>``: with ``entry: experiments.pipeline`` (the default) the whole T-REX experiment;
with ``entry: policies.train`` one agent (``<cell>/agent/``, on the game's, a learned or the length reward), whose
final policy then plays the held-out levels beside a uniform random policy (``<cell>/evaluation/``; both recorded as
the pipeline records its stages). The cells run as Ray tasks (Moritz et al. 2018, "Ray: a distributed framework for
emerging AI applications"), each declaring its CPUs (and GPU fraction): on a local Ray instance using this machine's
cores, or on a running Ray cluster given its address (``--address`` or ``ray.address``); every node then reads and
writes the cell folders, so a cluster needs a filesystem shared at the same path.

Before any cell starts, every cell's config is built and checked (a bad grid or cell key or value stops the
sweep with one line naming the cell and the key) and every cell folder planned: a cell whose stages finished with
these settings is skipped, an unfinished one resumes (from its stages' checkpoints), and one whose folder holds
results made with other settings stops the sweep. A cell that fails is reported with its one-line error while the
others go on; the exit status is 1 when any cell failed. Each cell's output goes to ``<cell>/sweep.log``.

At the end, and alone with ``--aggregate-only``, ``<out>/summary.csv`` and ``<out>/summary.md`` give per cell (grid
values) over its seeds the mean and interquartile mean of the reward model's rank correlations and pair accuracies
(learned return, episode length and untrained net; held-out and in distribution) and of every policy's held-out
return and normalised score, with 95% percentile bootstrap CIs (rliable's method: Agarwal et al. 2021, "Deep
reinforcement learning at the edge of the statistical precipice"). Beside them, linked from summary.md, the figures
(``procgen_common.figures``): ``spearman_vs_demos.png``, the held-out Spearman of the learned return and of its two
baselines against the number of demos per game when the cells vary it (``spearman.png``, per cell, otherwise), and
``returns.png``, every policy's held-out return per cell. With ``until=reward`` the cells stop at the reward model,
are finished when that stage is and give the reward model's metrics alone; the same sweep rerun with ``until=null``
reuses those stages and adds the agents and their evaluation.
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
import operator
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from experiments.pipeline import (
    STAGE_SECTIONS,
    EvaluationConfig,
    Stage,
    StageName,
    check_devices,
    check_is_experiment,
    evaluate_held_out,
    plan,
    read_record,
    run_pipeline,
    run_recorded,
    stages,
)
from experiments.pipeline import Config as ExperimentConfig
from policies.train import Config as AgentConfig
from policies.train import train as train_agent
from procgen_common import figures
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
from procgen_common.runs import FolderLock, pick_device
from procgen_common.stats import iqm, mean, stratified_bootstrap_ci

Scalar = Union[bool, int, float, str]  # noqa: UP007 - a typing.Union, which procgen_common.config reads
GridValue = Union[bool, int, float, str, list[Scalar], None]  # noqa: UP007

Entry = Literal["experiments.pipeline", "policies.train"]
# Per entry point, the keys of a cell's config the sweep sets itself, and from what.
SWEEP_KEYS = {
    "experiments.pipeline": {"seed": "from seeds", "dir": "<out>/<cell>/seed<S>", "until": "from the sweep's until"},
    "policies.train": {"train.seed": "from seeds", "run.dir": "<out>/<cell>/seed<S>/agent", "train.resume": "on"},
}
# The sections whose torch_threads a cell pins to its CPUs where the config leaves it at 0 (one thread per core):
# several cells on one machine would otherwise each take every core.
THREAD_KEYS = {
    "experiments.pipeline": STAGE_SECTIONS,
    "policies.train": ("train",),
}


def check_key(key: str) -> None:
    """A grid or cell key must be a dotted config key (ValueError naming it)."""
    if not key.strip() or any(not part for part in key.split(".")):
        raise ValueError(f"key: {key!r} is not a dotted config key; write e.g. env.game")


@dataclass(frozen=True)
class Axis(Checked):
    """One axis of the grid: a dotted key of the experiment config and the values it takes."""

    key: str = ""
    """A dotted key of the experiment config, e.g. env.game or demos.num_train_levels."""
    values: list[GridValue] = field(default_factory=list)
    """The values the key takes, one cell (per seed) each."""

    def validate(self) -> None:
        check_key(self.key)
        if not self.values:
            raise ValueError(f"{self.key}: no values; give a list of at least one")
        if len({json.dumps(v) for v in self.values}) < len(self.values):
            raise ValueError(f"{self.key}: a value is given twice in {self.values!r}")


@dataclass(frozen=True)
class Setting(Checked):
    """One value of an explicit cell: a dotted key of the experiment config and the value the cell gives it."""

    key: str = ""
    """A dotted key of the experiment config, e.g. zoo."""
    value: GridValue = None
    """The value the cell gives the key."""

    def validate(self) -> None:
        check_key(self.key)


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

    entry: Entry = "experiments.pipeline"
    """What each cell runs: experiments.pipeline (the whole T-REX experiment), or policies.train (one agent on the
    true, a learned or the length reward, whose final policy then plays the held-out levels beside a uniform random
    policy, evaluation.*)."""
    experiment: str = "configs/quickstart.yaml"
    """The base config every cell starts from: the entry point's YAML (configs/quickstart.yaml for the pipeline, a
    policies.train preset such as configs/policy-ppo-env.yaml)."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of the base config shared by every cell (as on the entry point's command line)."""
    grid: list[Axis] = field(default_factory=list)
    """The grid: a mapping of dotted keys (or nested sections) to lists of values, e.g. {env.game: [starpilot,
    fruitbot], demos.num_train_levels: [5, 10]}; on the command line grid.env.game=[starpilot,fruitbot]. Every
    combination is a cell."""
    cells: list[list[Setting]] = field(default_factory=list)
    """Explicit cells, where a product of values does not fit: a list of mappings of dotted keys (or nested
    sections) to one value each, e.g. [{env.game: starpilot, zoo: "zoo:starpilot"}, {env.game: fruitbot, zoo:
    "zoo:fruitbot"}]. Each explicit cell is crossed with every combination of the grid and every seed (cells x grid
    x seeds; no grid: the cells alone); a key is set in the cells or in the grid, not both, and cells may set
    different keys. Empty = the grid alone."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds of every cell (the pipeline's seed)."""
    until: StageName | None = None
    """The last stage every pipeline cell runs (the pipeline's until), e.g. reward for a study of reward models
    alone; null = every stage. Not part of a cell's folder name: the same sweep run again with until=null adds the
    remaining stages to the finished cells."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """The held-out evaluation of policies.train cells (a pipeline cell's is its own evaluation section)."""
    out: str = "experiments/sweep"
    """Sweep folder: one subfolder per cell, summary.csv, summary.md and its figures (PNG)."""
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
        return {**data, "grid": axes, "cells": read_cells(data.get("cells") or [], where)}

    def validate(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: empty; give at least one seed, e.g. seeds=[0,1,2]")
        if len(set(self.seeds)) < len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: {self.seeds!r}; give distinct seeds >= 0")
        keys = [a.key for a in self.grid]
        if len(set(keys)) < len(keys):
            raise ValueError(f"grid: a key is given twice in {keys}")
        for number, cell in enumerate(self.cells):
            both = [s.key for s in cell if s.key in keys]
            if both:
                raise ValueError(f"cells[{number}]: {both[0]} is also a grid key; set it in the cells or in the grid")
        if not self.out.strip():
            raise ValueError("out: empty; name the sweep folder (e.g. out=experiments/my-sweep)")
        if self.entry == "policies.train" and self.until is not None:
            raise ValueError(f"until: {self.until!r}; a policies.train cell has no pipeline stages to stop after")
        if self.entry == "experiments.pipeline" and self.evaluation != EvaluationConfig():
            raise ValueError("evaluation: for policies.train cells; a pipeline cell's is overrides=[evaluation.*=...]")
        sweep_keys = SWEEP_KEYS[self.entry]
        for text in self.overrides:
            key = ".".join(parse_override(text)[0])
            if key in sweep_keys:
                raise ValueError(f"overrides: {key} is set by the sweep ({sweep_keys[key]}); leave it out")
        settings = [(f"grid.{a.key}", a.key) for a in self.grid]
        settings += [(f"cells[{n}].{s.key}", s.key) for n, cell in enumerate(self.cells) for s in cell]
        for where, key in settings:
            if key in sweep_keys:
                raise ValueError(
                    f"{where}: set by the sweep ({sweep_keys[key]}); leave it out of the grid and the cells"
                )


def read_cells(cells: Any, where: str) -> list[list[Setting]]:
    """The explicit cells, a list of mappings of dotted keys or nested sections to values (or the saved form, a list
    of lists of {key, value}), as lists of ``Setting``; a problem is one line naming the cell and the key."""
    if not isinstance(cells, list):
        raise ConfigError(f"cells: expected a list of mappings of keys to values, got {cells!r} ({where})")
    out = []
    for number, cell in enumerate(cells):
        if isinstance(cell, list) and all(isinstance(s, dict) and set(s) == {"key", "value"} for s in cell):
            items = [(s["key"], s["value"]) for s in cell]
        elif isinstance(cell, dict):
            items = flatten_grid(cell)
        else:
            raise ConfigError(f"cells[{number}]: expected a mapping of keys to values, got {cell!r} ({where})")
        try:
            out.append([Setting(key=key, value=value) for key, value in items])
        except ConfigError as err:
            raise ConfigError(f"cells[{number}].{err} ({where})") from None
    return out


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
    """One experiment of the sweep: its values (``(key, value)``: the explicit cell's, then the grid's in grid
    order) and a seed; ``origin`` names the explicit cell it comes from (``cells[1]``), if any."""

    values: tuple[tuple[str, Any], ...]
    seed: int
    out: str
    origin: str = ""

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

    @property
    def where(self) -> str:
        """The cell in an error message: its label and the explicit cell it comes from."""
        return self.label + (f" ({self.origin})" if self.origin else "")


def value_text(value: Any) -> str:
    """A grid value as it appears in a folder name: YAML-like, a path's ``/`` as ``_``."""
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value).replace(os.sep, "_")


def grid_cells(config: Config) -> list[Cell]:
    """Every cell: each explicit cell (none: one empty cell) x the product of the grid's values (first axis
    slowest) x the seeds."""
    combos = list(itertools.product(*([(a.key, v) for v in a.values] for a in config.grid)))
    explicit = [(f"cells[{i}]", tuple((s.key, s.value) for s in cell)) for i, cell in enumerate(config.cells)]
    cells = [
        Cell(fixed + combo, seed, config.out, origin)
        for origin, fixed in explicit or [("", ())]
        for combo in combos
        for seed in config.seeds
    ]
    names: dict[Path, Cell] = {}
    for cell in cells:
        if len(cell.name.encode()) > 240:
            raise ConfigError(
                f"cells: the folder name of cell {cell.name[:60]}... is too long; use fewer or shorter values"
            )
        if cell.folder in names:
            raise ConfigError(f"cells: {names[cell.folder].where} and {cell.where} would share one folder")
        names[cell.folder] = cell
    return cells


def base_data(config: Config) -> dict:
    """The base experiment config as a mapping, with the sweep's overrides applied."""
    data = read_yaml(config.experiment)
    if data.get("until") is not None:
        raise ConfigError(f"until: set in {config.experiment}; leave it out there and set the sweep's until instead")
    for text in config.overrides:
        keys, value = parse_override(text)
        node_at(data, keys[:-1], f"overrides: {text!r}")[keys[-1]] = value
    return data


CellConfig = Union[ExperimentConfig, AgentConfig]  # noqa: UP007


def cell_config(config: Config, cell: Cell, base: dict) -> CellConfig:
    """The cell's checked config (the pipeline's or policies.train's): the base with the cell's values, seed and
    folder (a ConfigError names the cell and the key)."""
    data = copy.deepcopy(base)
    grid_keys = {a.key for a in config.grid}
    for key, value in cell.values:
        *parents, last = key.split(".")
        source = "grid" if key in grid_keys else (cell.origin or "cells")
        node_at(data, parents, f"{source}.{key} (cell {cell.where})")[last] = copy.deepcopy(value)
    threads = max(1, int(config.ray.cpus_per_cell))
    for section in THREAD_KEYS[config.entry]:
        node = node_at(data, section.split("."), section)
        if not node.get("torch_threads"):
            node["torch_threads"] = threads
    where = f"in {config.experiment} with the sweep's overrides, cells and grid, cell {cell.where}"
    if config.entry == "policies.train":
        data["train"] = node_at(data, ["train"], "train") | {"seed": cell.seed, "resume": True}
        data["run"] = node_at(data, ["run"], "run") | {"dir": str(cell.folder / "agent")}
        return from_dict(AgentConfig, data, where)
    data["seed"], data["dir"], data["until"] = cell.seed, str(cell.folder), config.until
    return from_dict(ExperimentConfig, data, where)


@dataclass
class Planned:
    """A cell ready to run: its config, the sweep's evaluation (policies.train cells) and whether it already finished
    with these settings."""

    cell: Cell
    config: CellConfig
    evaluation: EvaluationConfig
    finished: bool


def plan_cells(config: Config) -> list[Planned]:
    """Every cell's config built and checked and its folder planned, before any cell runs: a bad key or value, a
    device this machine lacks or a cell folder made with other settings raises one line naming it."""
    base = base_data(config)
    planned = []
    for cell in grid_cells(config):
        experiment = cell_config(config, cell, base)
        try:
            if isinstance(experiment, AgentConfig):
                pick_device(experiment.train.device, "train.device")
            else:
                check_devices(experiment)
            check_is_experiment(cell.folder)
            finished = cell_finished(experiment, config.evaluation, cell.folder)
        except USER_ERRORS as err:
            raise UserError(f"cell {cell.where}: {err}") from None
        planned.append(Planned(cell, experiment, config.evaluation, finished))
    return planned


AGENT_POLICY = {"env": "agent, true reward", "learned": "agent, learned reward", "length": "agent, length reward"}
"""The evaluation's name for a policies.train cell's agent, by its reward.source."""


def agent_stages(agent: AgentConfig, evaluation: EvaluationConfig, root: Path) -> list[Stage]:
    """A policies.train cell as two recorded stages (``experiments.pipeline``'s records): ``agent/``, the training
    run, and ``evaluation/``, its final policy beside a uniform random policy on the same held-out episodes."""
    policy = AGENT_POLICY[agent.reward.source]

    def evaluate() -> None:
        out = root / "evaluation"
        rows = evaluate_held_out({policy: agent.run_dir}, agent.env, evaluation, agent.train.seed, out)
        atomic_write_text(out / "summary.json", json.dumps(rows, indent=2) + "\n")

    settings = {"evaluation": dataclasses.asdict(evaluation), "seed": agent.train.seed}
    return [
        Stage("agent", agent.run_dir, agent, (), lambda: train_agent(agent)),
        Stage("evaluation", root / "evaluation", settings, ("agent",), evaluate),
    ]


def cell_finished(experiment: CellConfig, evaluation: EvaluationConfig, root: Path) -> bool:
    """Whether the cell's last stage to run (evaluation, or the pipeline's ``until``) finished with today's settings
    (and a pipeline's report exists); a stage finished with other settings raises the pipeline's one-line
    UserError."""
    is_agent = isinstance(experiment, AgentConfig)
    to_run = agent_stages(experiment, evaluation, root) if is_agent else stages(experiment)
    last = to_run[-1].name
    if read_record(root / "stages" / f"{last}.json") is None:
        return False
    if not is_agent and not (root / "report.md").is_file():
        return False
    return plan(to_run, root)[last][2] is not None


# ---------------------------------------------------------------------------------------------------------
# Running a cell (a Ray task)


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C extensions' output too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with path.open("a", buffering=1) as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)


def run_cell(p: Planned, cwd: str) -> dict:
    """One cell, run in a Ray worker: the pipeline (or the policies.train agent and its evaluation) in the cell's
    folder, its output in ``<cell>/sweep.log``. Returns ``{"error": None or one line, "seconds": ..., **cell_metrics}``;
    never raises for a failing cell."""
    start = time.monotonic()
    # the driver's relative paths (out, experiment files, zoo folders) mean the same here
    with contextlib.chdir(cwd) if Path(cwd).is_dir() else contextlib.nullcontext():
        root = p.cell.folder
        # stages/ marks the folder as an experiment's (the pipeline refuses a folder of other files, as sweep.log
        # would look); plan_cells checked it holds no other files.
        (root / "stages").mkdir(parents=True, exist_ok=True)
        log = root / "sweep.log"
        with output_to(log):
            print(f"--- {time.ctime()} on {socket.gethostname()}, pid {os.getpid()}", flush=True)
            try:
                if isinstance(p.config, AgentConfig):
                    with FolderLock(root, "out"):  # the cell folder, inside the sweep folder
                        run_recorded(agent_stages(p.config, p.evaluation, root), root)
                else:
                    run_pipeline(p.config)
                error = None
            except USER_ERRORS as err:
                error = str(err)
            except Exception as err:  # a cell's bug or crash must not stop the other cells
                traceback.print_exc()
                error = f"{type(err).__name__}: {err}".splitlines()[0] + f" (traceback in {log})"
            if error is not None:
                print(f"error: {error}", flush=True)
        return {"error": error, "seconds": time.monotonic() - start, **cell_metrics(root)}


def headline_text(metrics: dict) -> str:
    """The cell's headline from its ``cell_metrics``: held-out Spearman of the learned reward and of episode length
    and the learned-reward agent's held-out return and normalised score, or where there is no reward model (a
    policies.train cell) its agent's (n/a where not written)."""

    def num(metric: str, digits: int) -> str:
        return "n/a" if metrics.get(metric) is None else f"{metrics[metric]:.{digits}f}"

    def agent(reward: str) -> str:
        return (
            f"{reward}-reward agent held-out return {num(f'return.agent_{reward}', 2)} "
            f"(normalised {num(f'normalized_score.agent_{reward}', 3)})"
        )

    spearman, length = "reward.held_out.learned.spearman", "reward.held_out.episode_length.spearman"
    if metrics.get(spearman) is None and metrics.get(length) is None:  # no reward model: an agent cell
        for reward in ("learned", "true", "length"):
            if metrics.get(f"return.agent_{reward}") is not None:
                return agent(reward)
    text = f"held-out Spearman {num(spearman, 3)} (length {num(length, 3)})"
    if metrics.get("return.agent_learned") is None and metrics.get("normalized_score.agent_learned") is None:
        return text  # no agent evaluated (the pipeline's until, or a cell that stopped before)
    return f"{text}, {agent('learned')}"


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
                headline = headline_text(cell_metrics(p.cell.folder))
                say(f"skipped {p.cell.label}: finished with these settings; {headline}")
        if not todo:
            return failed
        task = ray.remote(num_cpus=config.ray.cpus_per_cell, num_gpus=config.ray.gpus_per_cell, max_retries=1)(run_cell)
        pending = {task.remote(p, os.getcwd()): p.cell for p in todo}
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
    "agent, length reward": "agent_length",
    "agent, true reward": "agent_true",
    "best demonstrator": "best_demonstrator",
    "random": "random",
}
ESTIMATES = ("mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high")  # summary.csv's columns of each metric
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
        return {"runs": 0, **dict.fromkeys(ESTIMATES, float("nan"))}
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


def _ci(row: dict, name: str) -> str:
    if not row["runs"]:
        return "n/a"
    return f"{row[name]:.3f} [{row[name + '_low']:.3f}, {row[name + '_high']:.3f}]"


HEADLINE = {
    "reward.held_out.learned.spearman": "held-out Spearman, learned",
    "reward.held_out.episode_length.spearman": "length",
    "reward.held_out.untrained_net.spearman": "untrained net",
    "return.agent_learned": "learned-reward agent's held-out return",
    "return.agent_true": "true-reward agent's",
    "return.agent_length": "length-reward agent's",
    "return.best_demonstrator": "best demonstrator's",
    "return.random": "random's",
}


def overrides_text(overrides: list[str]) -> str:
    if not overrides:
        return ""
    if len(overrides) > 6:
        return f" with {len(overrides)} overrides (sweep.yaml)"
    return " with " + " ".join(f"`{o}`" for o in overrides)


def cells_text(config: Config) -> str:
    if not config.cells:
        return ""
    return f"{len(config.cells)} explicit cell{'s' if len(config.cells) > 1 else ''} (`cells`) x "


def summary_markdown(config: Config, rows: list[dict], figure_files: dict[str, str]) -> str:
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    by = {(r["cell"], r["metric"]): r for r in rows}
    seeds = ", ".join(map(str, config.seeds))
    until = "" if config.until is None else f", every cell until `{config.until}`"
    # A metric no cell has (the policies' where the pipeline's until stops before the agents) is left out here;
    # summary.csv keeps its rows (runs 0).
    shown = [m for m in METRICS if any(by[(cell, m)]["runs"] for cell in cells)] or METRICS
    headline = {m: label for m, label in HEADLINE.items() if m in shown}
    missing = [m for m in METRICS if m not in shown]
    lines = [
        f"# Sweep: {len(cells)} cells x seeds {seeds}",
        "",
        f"Base config `{config.experiment}` ({config.entry}){overrides_text(config.overrides)}{until}; "
        f"{cells_text(config)}"
        f"grid {', '.join(f'{a.key} in {a.values}' for a in config.grid) or 'none'}. Per cell over its seeds: mean "
        "[95% percentile bootstrap CI over seeds] (rliable's method; Agarwal et al. 2021); `runs` counts the seeds "
        "with a result. One seed gives no interval: a claim rests on several.",
        "",
        "## Headline (means)",
        "",
        "| cell | runs | " + " | ".join(headline.values()) + " |",
        "|---|---|" + "---|" * len(headline),
    ]
    for cell in cells:
        runs = max(by[(cell, m)]["runs"] for m in shown)
        lines.append(f"| {cell} | {runs} | " + " | ".join(_ci(by[(cell, m)], "mean") for m in headline) + " |")
    lines += ["", "## Every metric: mean and interquartile mean (IQM)", ""]
    if missing:
        lines += [f"No cell has a value of {', '.join(missing)}.", ""]
    for metric in shown:
        lines += [f"### {metric}", "", "| cell | runs | mean | IQM |", "|---|---|---|---|"]
        for cell in cells:
            row = by[(cell, metric)]
            lines.append(f"| {cell} | {row['runs']} | {_ci(row, 'mean')} | {_ci(row, 'iqm')} |")
        lines.append("")
    if figure_files:
        lines += ["## Figures", ""]
        for name, caption in figure_files.items():
            lines += [f"{caption}:", "", f"![{Path(name).stem}]({name})", ""]
    return "\n".join(lines)


def value_keys(config: Config) -> list[str]:
    """The keys the cells set, in order: the explicit cells' (as first given), then the grid's."""
    return list(dict.fromkeys([s.key for cell in config.cells for s in cell] + [a.key for a in config.grid]))


def write_summary(config: Config) -> Path:
    """``summary.csv``, the figures and ``summary.md`` in the sweep folder, from the cell folders."""
    out = Path(config.out)
    rows = summarize(config)
    columns = ["cell", *value_keys(config), "metric", "runs", *ESTIMATES]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()} for row in rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.csv", text.getvalue())
    figure_files = write_figures(config, rows, out)
    atomic_write_text(out / "summary.md", summary_markdown(config, rows, figure_files))
    return out / "summary.md"


# What "the number of demos" is in a pipeline config: the figure of Spearman against it uses the first of these keys
# that takes several numeric values across the cells.
DEMO_KEYS = {
    "reward.data.num_demos": "training demos (reward.data.num_demos)",
    "demos.num_train_levels": "levels of training demos (demos.num_train_levels)",
    "demos.episodes_per_level": "demos per level and rung (demos.episodes_per_level)",
}
PREDICTOR_STYLES = {
    "learned": ("learned return", "-o", "C0"),
    "episode_length": ("episode length", "--s", "C1"),
    "untrained_net": ("untrained net", ":^", "C2"),
}
FIGURE_POLICIES = ("random", "best demonstrator", "agent, true reward", "agent, length reward", "agent, learned reward")


@dataclass(frozen=True)
class CellInfo:
    """What the figures need of a cell beyond its metrics: its values, its game and every setting's value."""

    name: str
    values: dict
    game: str
    experiment: CellConfig

    def setting(self, dotted: str) -> Any:
        """The cell's value of a dotted key of its config."""
        return operator.attrgetter(dotted)(self.experiment)


def cell_infos(config: Config) -> list[CellInfo]:
    """One entry per cell (the first seed's config: the seeds share the rest)."""
    base, infos = base_data(config), {}
    for cell in grid_cells(config):
        if cell.name not in infos:
            experiment = cell_config(config, cell, base)
            infos[cell.name] = CellInfo(cell.name, dict(cell.values), experiment.env.game, experiment)
    return list(infos.values())


def demo_key(infos: list[CellInfo]) -> str | None:
    """The first of DEMO_KEYS that takes several numeric values across the cells, if any."""
    for key in DEMO_KEYS:
        values = [info.setting(key) for info in infos]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numbers and len(set(values)) > 1:
            return key
    return None


def short_names(infos: list[CellInfo]) -> dict[str, str]:
    """Each cell as a tick label: the values that differ between cells, one per line, leaving out a key whose values
    pair one to one with an earlier key's (zoo with env.game); a cell's full name where none differ."""
    keys = list(dict.fromkeys(k for info in infos for k in info.values))
    column = {k: [json.dumps(info.values.get(k)) for info in infos] for k in keys}

    def one_to_one(a: list[str], b: list[str]) -> bool:
        return len(set(zip(a, b, strict=True))) == len(set(a)) == len(set(b))

    kept: list[str] = []
    for key in keys:
        if len(set(column[key])) > 1 and not any(one_to_one(column[key], column[k]) for k in kept):
            kept.append(key)
    return {
        info.name: "\n".join(f"{k}={value_text(info.values[k])}" for k in kept if k in info.values) or info.name
        for info in infos
    }


def _band(by: dict, names: list[str], metric: str) -> dict[str, list[float]]:
    """The cells' means of ``metric`` with their CIs, as the value, low and high of a figure's curve or bars."""
    rows = [by[(name, metric)] for name in names]
    return {
        key: [r[column] for r in rows]
        for key, column in (("value", "mean"), ("low", "mean_low"), ("high", "mean_high"))
    }


def spearman_vs_demos(by: dict, infos: list[CellInfo], key: str) -> list[figures.CurvePanel]:
    """One panel per game (and per combination of other values where a game has several): the held-out Spearman of
    the learned return and of its two baselines against the number of demos, means with 95% CIs over seeds."""
    groups: dict[tuple, list[CellInfo]] = {}
    for info in infos:
        others = tuple((k, json.dumps(v)) for k, v in info.values.items() if k not in (key, "env.game"))
        groups.setdefault((info.game, others), []).append(info)
    several = {game for game, _ in groups if sum(g == game for g, _ in groups) > 1}
    panels = []
    for (game, others), members in groups.items():
        members = sorted(members, key=lambda info: info.setting(key))
        names, x = [m.name for m in members], [m.setting(key) for m in members]
        curves = [
            figures.Curve(x, label=label, color=color, style=style, **_band(by, names, f"reward.held_out.{p}.spearman"))
            for p, (label, style, color) in PREDICTOR_STYLES.items()
        ]
        title = game + ("".join(f", {k}={json.loads(v)}" for k, v in others) if game in several else "")
        panels.append(figures.CurvePanel(title, curves, DEMO_KEYS[key], "held-out Spearman", steps=False))
    return panels


def write_figures(config: Config, rows: list[dict], out: Path) -> dict[str, str]:
    """The sweep's figures beside summary.md (``procgen_common.figures``), from the summary's rows: held-out
    Spearman against the number of demos per game with both baselines when the cells vary it (else per cell), and
    every policy's held-out return per cell; means with 95% CIs over seeds. Returns ``{file: caption}`` of those
    written (a figure with no value to show is not drawn)."""
    by = {(r["cell"], r["metric"]): r for r in rows}
    infos = cell_infos(config)
    names = [info.name for info in infos]
    labels = short_names(infos)
    written = {}

    def has(metrics: list[str]) -> bool:
        return any(by[(name, m)]["runs"] for name in names for m in metrics)

    def bar_chart(file: str, title: str, series: dict[str, str], ylabel: str = "") -> None:
        """One bar per cell and series (metric -> label)."""
        bars = [figures.Bars(label=label, **_band(by, names, metric)) for metric, label in series.items()]
        figures.bars(out / file, [figures.BarPanel(title, [labels[n] for n in names], bars, ylabel)])

    spearman = {f"reward.held_out.{p}.spearman": label for p, (label, _, _) in PREDICTOR_STYLES.items()}
    if has(list(spearman)):
        key = demo_key(infos)
        if key is not None:
            figures.curves(out / "spearman_vs_demos.png", spearman_vs_demos(by, infos, key))
            written["spearman_vs_demos.png"] = (
                f"Held-out Spearman of the learned return, episode length and the untrained net against {key}, per "
                "game (mean and 95% CI over seeds)"
            )
        else:
            bar_chart("spearman.png", "held-out Spearman with the true return", spearman)
            written["spearman.png"] = (
                "Held-out Spearman of the learned return, episode length and the untrained net per cell (mean and 95% "
                "CI over seeds)"
            )
    drawn = [p for p in FIGURE_POLICIES if has([f"return.{POLICIES[p]}"])]  # a policies.train sweep has no demonstrator
    if drawn:
        bar_chart(
            "returns.png", "held-out return per method", {f"return.{POLICIES[p]}": p for p in drawn}, "true return"
        )
        written["returns.png"] = f"Held-out true return per method: {', '.join(drawn)} (mean and 95% CI over seeds)"
    return written


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


DESCRIPTION = """Run a grid of T-REX experiments (experiments.pipeline) or of agents (entry=policies.train, each
evaluated on held-out levels beside a random policy) on Ray: every combination of the grid's values (crossed with
each explicit cell of `cells`, where a product does not fit) and every seed is one cell in its own folder. Finished
cells are skipped and unfinished ones resume; a failing cell is reported while the others go on (exit status 1).
summary.csv, summary.md and its figures (spearman_vs_demos.png or spearman.png, returns.png) aggregate the cells
over seeds."""


@main_guard
def main(argv: list[str] | None = None) -> int:
    keys = "\n".join(describe(Config)).lstrip("\n")
    parser = OneLineParser(
        prog="python -m experiments.sweep",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m experiments.sweep -c configs/sweep-quickstart.yaml seeds=[0,1,2]\n"
        "  python -m experiments.sweep -c configs/sweep-trex-quality.yaml "
        "'cells=[{env.game: starpilot, zoo: \"zoo:starpilot\"}]'\n"
        "  python -m experiments.sweep -c configs/sweep-agents.yaml seeds=[0,1,2]\n\n"
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
