"""Sweeps on Ray: a 2 x 2 grid of tiny pipelines, skipping finished cells, a sweep killed and rerun (cells that stop at
the reward model), the summary and its figures, explicit cells, one-line refusals, the suite's sweep configs and the
cluster path (a Ray head on loopback)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from experiments.sweep import (
    METRICS,
    Config,
    Planned,
    cell_infos,
    cell_metrics,
    grid_cells,
    plan_cells,
    spearman_vs_demos,
    summarize,
    write_summary,
)
from procgen_common.config import ConfigError, load_config, save_config
from tests.conftest import REPO, assert_one_line_error, run_cli, terminal_lines
from tests.experiments.test_pipeline import tiny_pipeline

GRID = {"demos.max_length": [100, 200], "reward": {"train": {"learning_rate": [0.001, 0.0001]}}}  # dotted and nested
ESTIMATES = ("runs", "mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high")


def write_sweep(folder, out, grid=GRID, more: tuple[str, ...] = (), **extra) -> str:
    """A sweep YAML over tiny pipelines (test_pipeline's overrides, then ``more``) into ``out``; returns its path."""
    overrides = [o for o in tiny_pipeline("unused") if not o.startswith("dir=")] + list(more)
    data = {"experiment": str(REPO / "configs" / "quickstart.yaml"), "overrides": overrides, "grid": grid}
    data |= {"seeds": [0], "out": str(out), "ray": {"num_cpus": 2, "cpus_per_cell": 1}} | extra
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def sweep_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "experiments.sweep", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, timeout=timeout, check=False, env=env)
    result.stdout, result.stderr = (out.decode(errors="replace") for out in (result.stdout, result.stderr))
    return result


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished 2 x 2 sweep of tiny pipelines on local Ray: ``(sweep YAML, out folder, the run's result)``."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder, folder / "out")
    result = sweep_cli("-c", path)
    return path, folder / "out", result


def test_a_2x2_grid_runs_four_cells_each_with_its_values(sweep):
    path, out, result = sweep
    assert result.returncode == 0, result.stderr
    folders = sorted(p.parent.parent.name for p in out.glob("*/seed0/report.md"))
    assert folders == sorted(
        f"demos.max_length={n},reward.train.learning_rate={lr}" for n in (100, 200) for lr in (0.001, 0.0001)
    )
    for cell in grid_cells(load_config(Config, path)):
        saved = yaml.safe_load((cell.folder / "config.yaml").read_text())
        values = dict(cell.values)
        assert saved["demos"]["max_length"] == values["demos.max_length"]
        assert saved["reward"]["train"]["learning_rate"] == values["reward.train.learning_rate"]
        assert saved["seed"] == 0 and saved["dir"] == str(cell.folder)
        assert (cell.folder / "sweep.log").read_text().count("report:") == 1  # the cell's own output, in its folder
    done = [line for line in terminal_lines(result.stderr) if line.startswith("done ")]
    assert len(done) == 4 and all("held-out Spearman" in line and "held-out return" in line for line in done)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["cell"] for r in rows} == set(folders)
    spearman = [r for r in rows if r["metric"] == "reward.held_out.learned.spearman"]
    assert len(spearman) == 4 and all(r["runs"] == "1" for r in spearman)
    for row in spearman:  # one seed: mean = IQM = that seed's value, the CI a point
        metrics = cell_metrics(out / row["cell"] / "seed0")
        value = metrics["reward.held_out.learned.spearman"]
        assert float(row["mean"]) == pytest.approx(value) and float(row["iqm_high"]) == pytest.approx(value)
    assert float(rows[0]["demos.max_length"]) == 100
    assert "| demos.max_length=100,reward.train.learning_rate=0.001 | 1 |" in (out / "summary.md").read_text()
    assert (out / "spearman.png").is_file() and (out / "returns.png").is_file()  # no demo count varies: per cell
    assert "](spearman.png)" in (out / "summary.md").read_text()


def test_a_rerun_runs_no_cell_and_gives_the_same_summary(sweep):
    path, out, _ = sweep
    before = (out / "summary.csv").read_text(), (out / "summary.md").read_text()
    reports = {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/report.md")}
    result = sweep_cli("-c", path)
    assert result.returncode == 0, result.stderr
    assert sum(line.startswith("skipped ") for line in terminal_lines(result.stderr)) == 4
    assert "done " not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in reports} == reports  # no pipeline ran again
    assert ((out / "summary.csv").read_text(), (out / "summary.md").read_text()) == before
    (out / "summary.csv").unlink()
    assert sweep_cli("-c", path, "--aggregate-only").returncode == 0
    assert (out / "summary.csv").read_text() == before[0]


def live_processes_with(variable: str) -> list[int]:
    """The pids of the live processes (not zombies) whose environment holds ``variable`` (NAME=value): a sweep
    started with it, its Ray services and its Ray workers, which inherit it (a worker has its own process group)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] if entry.name.isdigit() else "Z"
            if state != "Z" and variable.encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return pids


def wait_gone(variable: str, timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for every process marked by ``variable`` to exit; returns those left."""
    deadline = time.monotonic() + timeout
    while (left := live_processes_with(variable)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds the sweep's processes through /proc")
def test_a_killed_sweep_rerun_skips_its_finished_cells_and_gives_the_uninterrupted_summary(sweep, tmp_path):
    """Issue 13. Two cells of the 2 x 2 grid that stop at the reward model (until=reward), one at a time: once one cell
    has finished, the sweep's processes are SIGKILLed (a machine that dies) and none is left; the rerun skips the
    finished cell (its files untouched), resumes the other, and the summary holds the reward metrics of the
    uninterrupted 2 x 2 sweep's cells (the same stages with the same settings: until is no stage's setting) and no
    policy metric. The tiny stages save their state only at their start and end, so the interrupted one resumes
    where an uninterrupted run passes."""
    _, reference_out, _ = sweep
    grid = {"demos.max_length": [100, 200], "reward.train.learning_rate": [0.001]}
    path = write_sweep(tmp_path, tmp_path / "out", grid=grid, until="reward", ray={"num_cpus": 1})
    config = load_config(Config, path)
    cells = grid_cells(config)
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    marker = f"RAY_TMPDIR={ray_tmp}"  # Ray's session files go there, and every process of the sweep carries it
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    log = (tmp_path / "killed.log").open("wb")
    command = [sys.executable, "-m", "experiments.sweep", "-c", path]
    sweep_process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # Kill once one cell has finished and the other has started (its log exists): on a slow machine the second
        # cell's task starts a moment after the first one's report lands.
        while not (
            len(finished := [c for c in cells if (c.folder / "report.md").is_file()]) == 1
            and all((c.folder / "sweep.log").is_file() for c in cells)
        ):
            assert sweep_process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no cell finished while the other ran in 300 s"
            time.sleep(0.02)
        # A machine that dies: the driver and the Ray services it started (its process group) and the Ray workers,
        # each in a process group of its own, all at once. Left alone, a worker outlives its driver by a second or
        # two (until it sees its raylet gone) and goes on with its cell meanwhile.
        everything = live_processes_with(marker)
        os.killpg(sweep_process.pid, signal.SIGKILL)
        for pid in everything:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sweep_process.wait(60)
        left = wait_gone(marker, timeout=60)  # any worker Ray started meanwhile exits with its raylet
        assert not left, f"Ray processes still running 60 s after the kill: {left}"
        assert len(finished) == 1, finished  # one cell finished before the kill, not both
        (unfinished,) = (c for c in cells if c not in finished)
        assert (unfinished.folder / "sweep.log").is_file()  # it was running: the kill interrupted it
        files = sorted((finished[0].folder / "stages").glob("*.json")) + [finished[0].folder / "report.md"]
        assert [f.stem for f in files] == ["demonstrator", "demos", "reward", "report"]
        before = {f: f.stat().st_mtime_ns for f in files}

        result = sweep_cli("-c", path, env=env)
        assert result.returncode == 0, result.stderr
        assert not wait_gone(marker, timeout=60)  # a finished sweep leaves no Ray process either
    finally:
        log.close()
        for pid in live_processes_with(marker):  # only if the checks above failed: this sweep's processes
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = terminal_lines(result.stderr)
    skipped = [line for line in lines if line.startswith("skipped ")]
    done = [line for line in lines if line.startswith("done ")]
    assert len(skipped) == 1 and skipped[0].startswith(f"skipped {finished[0].label}: finished"), lines
    assert len(done) == 1 and done[0].startswith(f"done {unfinished.label} in "), lines
    assert "held-out Spearman" in done[0] and "agent held-out return" not in done[0]  # no agent: no return
    assert {f: f.stat().st_mtime_ns for f in before} == before  # the finished cell was not run again
    assert sorted(p.stem for p in (unfinished.folder / "stages").glob("*.json")) == ["demonstrator", "demos", "reward"]

    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    reference = {(r["cell"], r["metric"]): r for r in summarize(load_config(Config, path, [f"out={reference_out}"]))}
    assert len(rows) == len(reference) == 2 * len(METRICS)
    for row in rows:
        if row["metric"].startswith("reward."):  # the uninterrupted sweep's values, to the last digit
            expected = reference[(row["cell"], row["metric"])]
            assert {k: row[k] for k in ESTIMATES} == {k: str(expected[k]) for k in ESTIMATES}, row
        else:
            assert row["runs"] == "0", row  # no agent was trained or evaluated
    assert [r["runs"] for r in rows if r["metric"] == "reward.held_out.learned.spearman"] == ["1", "1"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "No cell has a value of return.agent_learned" in summary and "### return.agent_learned" not in summary
    assert (tmp_path / "out" / "spearman.png").is_file() and not (tmp_path / "out" / "returns.png").exists()


def test_the_summary_gives_mean_iqm_and_cis_over_seeds(tmp_path):
    """Five fake seeds of one cell: the mean, the IQM (the middle values) and a CI around each."""
    config = load_config(Config, None, [f"out={tmp_path}", "seeds=[0,1,2,3,4]", "grid.env.game=[starpilot]"])
    spearmans = [0.1, 0.2, 0.3, 0.4, 0.9]
    for cell, value in zip(grid_cells(config), spearmans, strict=True):
        (cell.folder / "reward").mkdir(parents=True)
        (cell.folder / "evaluation").mkdir()
        summary = {"held_out": {"learned": {"spearman": value, "pair_accuracy": 0.5}}}
        (cell.folder / "reward" / "generalization.json").write_text(json.dumps(summary))
        rows = {"agent, learned reward": {"mean_return": 2 * value, "normalized_score": None}}
        (cell.folder / "evaluation" / "summary.json").write_text(json.dumps(rows))
    by = {r["metric"]: r for r in summarize(config)}
    row = by["reward.held_out.learned.spearman"]
    assert row["cell"] == "env.game=starpilot" and row["runs"] == 5
    assert row["mean"] == pytest.approx(0.38) and row["iqm"] == pytest.approx(0.3)  # drops 0.1 and 0.9
    assert row["mean_low"] < 0.38 < row["mean_high"] and row["iqm_low"] <= 0.3 <= row["iqm_high"]
    assert by["return.agent_learned"]["mean"] == pytest.approx(0.76)
    assert by["normalized_score.agent_learned"]["runs"] == 0  # no value: n/a, not 0
    assert by["reward.in_distribution.learned.spearman"]["runs"] == 0
    write_summary(config)
    assert "| env.game=starpilot | 5 | 0.380 [" in (tmp_path / "summary.md").read_text()


def test_the_grid_reads_dotted_and_nested_keys_and_the_command_line_wins(tmp_path):
    path = write_sweep(tmp_path, tmp_path / "out", grid={"env.game": ["starpilot"], "demos": {"max_length": [50]}})
    config = load_config(Config, path, ["grid.env.game=[fruitbot,bigfish]"])
    assert [(a.key, a.values) for a in config.grid] == [
        ("env.game", ["fruitbot", "bigfish"]),
        ("demos.max_length", [50]),
    ]
    assert [c.label for c in grid_cells(config)] == [
        "env.game=fruitbot,demos.max_length=50/seed0",
        "env.game=bigfish,demos.max_length=50/seed0",
    ]
    planned = plan_cells(config)
    assert all(isinstance(p, Planned) and not p.finished for p in planned)
    assert [p.config.env.game for p in planned] == ["fruitbot", "bigfish"]
    assert planned[0].config.dir == str(tmp_path / "out" / "env.game=fruitbot,demos.max_length=50" / "seed0")
    assert not (tmp_path / "out").exists()  # planning writes nothing
    with pytest.raises(ConfigError, match="grid.seed: set by the sweep"):
        load_config(Config, path, ["grid.seed=[1,2]"])


def test_the_sweeps_until_reaches_every_cell_and_leaves_the_folders_as_they_are(tmp_path):
    """until=reward stops every cell's pipeline at the reward model; until=null (the same sweep run again to add the
    agents) plans the same folders with every stage. until belongs to the sweep: in the overrides or the base
    config it is one line saying so."""
    path = write_sweep(tmp_path, tmp_path / "out", until="reward")
    reward_only = plan_cells(load_config(Config, path))
    everything = plan_cells(load_config(Config, path, ["until=null"]))
    assert [p.config.until for p in reward_only] == ["reward"] * 4
    assert [p.config.until for p in everything] == [None] * 4
    assert [p.config.dir for p in reward_only] == [p.config.dir for p in everything]
    assert all("until" not in p.cell.name for p in everything)
    with pytest.raises(ConfigError, match="overrides: until is set by the sweep"):
        load_config(Config, path, ["overrides=[until=reward]"])
    base = tmp_path / "base.yaml"
    base.write_text((REPO / "configs" / "quickstart.yaml").read_text() + "until: reward\n")
    with pytest.raises(ConfigError, match=f"until: set in {base}; leave it out there"):
        plan_cells(load_config(Config, path, [f"experiment={base}"]))


CELLS = [{"env.game": "starpilot", "demos": {"max_length": 100}}, {"env.game": "fruitbot"}]  # dotted and nested


def test_explicit_cells_cross_the_grid_and_the_seeds_each_with_its_values(tmp_path):
    """Two explicit cells (setting different keys) x a 2-value grid x 2 seeds: 8 cells, each folder named by its
    cell's values then the grid's, each pipeline config holding them; the saved sweep config loads back the same."""
    grid = {"reward.train.learning_rate": [0.001, 0.0001]}
    path = write_sweep(tmp_path, tmp_path / "out", grid=grid, cells=CELLS, seeds=[0, 1])
    config = load_config(Config, path)
    planned = plan_cells(config)
    assert [p.cell.label for p in planned] == [
        f"{cell},reward.train.learning_rate={lr}/seed{seed}"
        for cell in ("env.game=starpilot,demos.max_length=100", "env.game=fruitbot")
        for lr in (0.001, 0.0001)
        for seed in (0, 1)
    ]
    for p in planned:
        values = dict(p.cell.values)
        assert p.config.env.game == values["env.game"] and p.config.seed == p.cell.seed
        assert p.config.reward.train.learning_rate == values["reward.train.learning_rate"]
        assert p.config.demos.max_length == values.get("demos.max_length", 200)  # 200: the base (tiny_pipeline)
        assert p.config.dir == str(tmp_path / "out" / p.cell.name / f"seed{p.cell.seed}")
        assert p.cell.origin == ("cells[0]" if values["env.game"] == "starpilot" else "cells[1]")
    assert not (tmp_path / "out").exists()  # planning writes nothing
    save_config(config, tmp_path / "saved.yaml")  # the form a sweep keeps in <out>/sweep.yaml
    assert load_config(Config, tmp_path / "saved.yaml") == config


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("cells=[{env.gme: starpilot}]", ("unknown key 'env.gme'", "cell env.gme=starpilot,", "(cells[0])")),
        ("cells=[{}, {env.game: notagame}]", ("env.game", "notagame", "(cells[1])")),
        ("cells=[{seed: 3}]", ("cells[0].seed: set by the sweep",)),
        ("cells=[starpilot]", ("cells[0]: expected a mapping",)),
        ("cells=[{demos.max_length: 50}]", ("cells[0]: demos.max_length is also a grid key",)),
    ],
)
def test_a_bad_cell_key_or_value_is_one_line_before_any_cell(tmp_path, override, needles):
    path = write_sweep(tmp_path, tmp_path / "out")
    if "notagame" in override or "env.gme" in override:  # through the command line: exit status 2, one line
        result = run_cli(["-m", "experiments.sweep", "-c", path, override], REPO)
        assert result.returncode == 2
        assert_one_line_error(result.stderr, *needles)
    else:
        with pytest.raises(ConfigError) as err:
            plan_cells(load_config(Config, path, [override]))
        assert all(needle in str(err.value) for needle in needles) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def fake_cell(folder: Path, spearman: float, returns: dict[str, float]) -> None:
    """A cell folder holding only the two files the summary reads: the reward model's held-out Spearman (learned
    ``spearman``, its baselines fixed) and each policy's held-out return."""
    (folder / "reward").mkdir(parents=True)
    (folder / "evaluation").mkdir()
    reward = {"learned": spearman, "episode_length": 0.2, "untrained_net": -0.1}
    summary = {"held_out": {p: {"spearman": v, "pair_accuracy": 0.5 + v / 2} for p, v in reward.items()}}
    (folder / "reward" / "generalization.json").write_text(json.dumps(summary))
    rows = {policy: {"mean_return": value, "normalized_score": None} for policy, value in returns.items()}
    (folder / "evaluation" / "summary.json").write_text(json.dumps(rows))


def test_the_figures_show_spearman_against_the_number_of_demos_per_game_and_returns_per_method(tmp_path):
    """A synthetic sweep (2 games as explicit cells x 2 numbers of demos x 2 seeds): spearman_vs_demos.png has a
    panel per game with the learned return's mean over seeds against the number of demos beside both baselines;
    returns.png and the links in summary.md; without a demo count that varies, spearman.png per cell instead."""
    cells = [{"env.game": "starpilot", "zoo": "zoo:starpilot"}, {"env.game": "fruitbot", "zoo": "zoo:fruitbot"}]
    config = load_config(Config, None, [f"out={tmp_path}", f"cells={json.dumps(cells)}", "seeds=[0,1]",
                                        "grid.reward.data.num_demos=[50,20]"])  # fmt: skip
    policies = ("random", "best demonstrator", "agent, true reward", "agent, learned reward")
    for k, cell in enumerate(grid_cells(config)):
        fake_cell(cell.folder, spearman=0.1 * k, returns={p: float(i + k) for i, p in enumerate(policies)})
    rows = summarize(config)
    by = {(r["cell"], r["metric"]): r for r in rows}
    panels = spearman_vs_demos(by, cell_infos(config), "reward.data.num_demos")
    assert [p.title for p in panels] == ["starpilot", "fruitbot"]
    learned, length, untrained = panels[0].curves
    assert list(learned.x) == [20, 50]  # sorted by the number of demos
    assert learned.value == pytest.approx([0.25, 0.05])  # cells 2, 3 (20 demos) and 0, 1 (50), pooled over seeds
    assert length.value == pytest.approx([0.2, 0.2]) and untrained.value == pytest.approx([-0.1, -0.1])
    assert panels[1].curves[0].value == pytest.approx([0.65, 0.45])
    summary = write_summary(config).read_text()
    for name in ("spearman_vs_demos.png", "returns.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG") and f"]({name})" in summary
    assert not (tmp_path / "spearman.png").exists()

    flat = load_config(Config, None, [f"out={tmp_path / 'flat'}", "grid.env.game=[starpilot,fruitbot]"])
    for cell in grid_cells(flat):
        fake_cell(cell.folder, spearman=0.3, returns={"random": 1.0})
    write_summary(flat)
    assert (tmp_path / "flat" / "spearman.png").is_file() and (tmp_path / "flat" / "returns.png").is_file()
    assert not (tmp_path / "flat" / "spearman_vs_demos.png").exists()


def test_the_suite_sweep_configs_load_and_expand_to_their_grids(tmp_path):
    """configs/sweep-trex-quality.yaml: 2 games (each with its zoo series) x 3 numbers of demos x 3 seeds, each until
    the reward model; configs/sweep-agent-learning.yaml: one pipeline cell per method; configs/sweep-agents.yaml: one
    policies.train cell per algorithm on the game's reward. Every cell's config builds and checks."""
    quality = plan_cells(load_config(Config, REPO / "configs" / "sweep-trex-quality.yaml", [f"out={tmp_path / 'q'}"]))
    assert len(quality) == 18
    assert {(p.config.env.game, p.config.zoo, p.config.reward.data.num_demos) for p in quality} == {
        (game, f"zoo:{game}", n) for game in ("starpilot", "fruitbot") for n in (20, 50, 100)
    }
    assert {p.cell.seed for p in quality} == {0, 1, 2}
    assert all(p.config.reward.data.comparison == "snippet" and p.config.demos.num_test_levels == 12 for p in quality)
    assert all(p.config.until == "reward" for p in quality)  # a study of reward models: no agents
    agents = plan_cells(load_config(Config, REPO / "configs" / "sweep-agent-learning.yaml", [f"out={tmp_path / 'a'}"]))
    assert [(p.config.agent.agent.algo, p.config.agent.reward.sigmoid) for p in agents] == [
        ("ppo", False),
        ("ppo", True),
        ("ppo_gru", False),
        ("rainbow", False),
    ]
    assert all(p.config.zoo is None and p.config.agent.train.total_steps == 1_000_000 for p in agents)
    alone = plan_cells(load_config(Config, REPO / "configs" / "sweep-agents.yaml", [f"out={tmp_path / 'g'}"]))
    assert [(p.config.agent.algo, p.config.train.precision) for p in alone] == [
        ("ppo", "bf16"),
        ("ppo_gru", "bf16"),
        ("rainbow", "bf16"),
        ("sb3_ppo", "fp32"),
    ]
    assert all(p.config.reward.source == "env" and p.config.train.total_steps == 1_000_000 for p in alone)
    assert all(p.evaluation.episodes == 100 for p in alone) and alone[2].config.rainbow.replay_ratio == 2.0
    # configs/sweep-quickstart-2m.yaml: the quickstart's recipe per game with its agent at the zoo series' budget.
    at_2m = plan_cells(load_config(Config, REPO / "configs" / "sweep-quickstart-2m.yaml", [f"out={tmp_path / 'z'}"]))
    assert [(p.config.env.game, p.config.zoo, p.cell.seed) for p in at_2m] == [
        ("starpilot", "zoo:starpilot/step_001015808", seed) for seed in (0, 1, 2)
    ]
    assert all(
        (p.config.agent.train.total_steps, p.config.agent.train.num_checkpoints, p.config.until) == (2_000_000, 5, None)
        for p in at_2m
    )


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("grid.env.gme=[starpilot]", ("unknown key 'env.gme'", "did you mean 'env.game'", "cell ")),
        ("grid.env.game=[starpilot,notagame]", ("env.game", "notagame", "cell ")),
    ],
)
def test_a_bad_grid_key_or_value_is_refused_in_one_line_before_any_cell(tmp_path, override, needles):
    path = write_sweep(tmp_path, tmp_path / "out")
    result = run_cli(["-m", "experiments.sweep", "-c", path, override], REPO)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, *needles)
    assert not (tmp_path / "out").exists()  # no cell started, not even the sweep folder


def test_an_unreachable_address_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_sweep(tmp_path, tmp_path / "out")
    result = run_cli(["-m", "experiments.sweep", "-c", path, "--address", f"127.0.0.1:{port}"], REPO)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "ray.address", f"127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_a_failing_cell_is_reported_while_the_others_go_on(sweep, tmp_path):
    """One cell of the 2 x 2 grid at seeds 0 (finished) and 1, whose demonstrator folder is blocked by a file: the
    failure is one line naming the cell, the sweep goes on to its summary and exits 1."""
    _, out, _ = sweep
    grid = {"demos.max_length": [100], "reward.train.learning_rate": [0.001]}
    path = write_sweep(tmp_path, out, grid=grid, seeds=[0, 1])
    cell = out / "demos.max_length=100,reward.train.learning_rate=0.001" / "seed1"
    (cell / "stages").mkdir(parents=True)
    (cell / "demonstrator").write_text("a file where the stage's folder goes")
    try:
        result = sweep_cli("-c", path)
        assert result.returncode == 1, result.stderr
        lines = terminal_lines(result.stderr)
        failed = [line for line in lines if line.startswith("FAILED ")]
        assert len(failed) == 1 and "seed1: " in failed[0] and "is a file" in failed[0], lines
        assert sum(line.startswith("skipped ") for line in lines) == 1  # seed 0, finished
        assert "Traceback" not in result.stderr and "error: run.dir" in (cell / "sweep.log").read_text()
        assert lines[-1].startswith("1 of 2 cells failed")
    finally:
        shutil.rmtree(cell)


@pytest.mark.slow
def test_the_cluster_path_gives_the_local_result(sweep, tmp_path):
    """A Ray head on loopback (started here, stopped here: only that head), one cell of the 2 x 2 grid run against
    its address: the same metrics as the local sweep's cell."""
    _, local_out, _ = sweep
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    # Ray >= 2.59 `ray start` checks a token (~/.ray/auth_token); the driver sends it with RAY_AUTH_MODE=token.
    env = dict(os.environ, RAY_AUTH_MODE="token", PYTHONPATH=str(REPO))
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
        + ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env | {"TMPDIR": str(temp)},  # its ray_current_cluster note stays in the test's folder too
        start_new_session=True,  # its own process group, stopped below by its id
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.5)
        grid = {"demos.max_length": [100], "reward.train.learning_rate": [0.001]}
        path = write_sweep(tmp_path, tmp_path / "out", grid=grid)
        result = sweep_cli("-c", path, "--address", f"127.0.0.1:{port}", env=env)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(120)
        shutil.rmtree(temp, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    name = "demos.max_length=100,reward.train.learning_rate=0.001"
    assert cell_metrics(tmp_path / "out" / name / "seed0") == cell_metrics(local_out / name / "seed0")


def test_a_sweep_of_policies_train_cells_trains_evaluates_beside_random_and_skips_them_when_rerun(tmp_path):
    """entry=policies.train: each cell one agent (here the GRU on the game's reward, PPO on a learned reward and PPO on
    the length reward), its final policy played on held-out levels beside a uniform random policy; the summary has
    their returns (and no reward model's metric), returns.png draws the policies the cells have, and a rerun skips
    every cell."""
    from policies.train import Config as AgentConfig
    from procgen_common.evaluation import evaluate_checkpoint
    from tests.policies.conftest import policy_overrides, save_reward_model

    model = save_reward_model(tmp_path / "reward" / "reward_net.pt")
    tiny = [o for o in policy_overrides(tmp_path, "ppo") if not o.startswith(("run.dir=", "agent.algo="))]
    cells = [
        {"agent.algo": "ppo_gru", "gru.hidden_size": 32},
        {"agent.algo": "ppo", "reward.source": "learned", "reward.model": str(model)},
        {"agent.algo": "ppo", "reward.source": "length"},
    ]
    data = {
        "entry": "policies.train",
        "experiment": str(REPO / "configs" / "policy-ppo-env.yaml"),
        "overrides": [*tiny, "train.num_checkpoints=1", "train.precision=fp32"],
        "cells": cells,
        "evaluation": {"episodes": 3, "num_envs": 3},
        "out": str(tmp_path / "out"),
        "ray": {"num_cpus": 2, "cpus_per_cell": 1},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = sweep_cli("-c", str(path))
    assert result.returncode == 0, result.stderr
    gru, learned, length = grid_cells(load_config(Config, path))
    done = [line for line in terminal_lines(result.stderr) if line.startswith("done ")]
    assert len(done) == 3
    assert any(line.startswith(f"done {gru.label}") and "true-reward agent held-out return" in line for line in done)
    assert any(line.startswith(f"done {learned.label}") and "learned-reward agent held-out" in line for line in done)
    assert any(line.startswith(f"done {length.label}") and "length-reward agent held-out" in line for line in done)
    assert not any("Spearman" in line for line in done)  # no reward model in an agent cell: no n/a Spearman
    cells_policies = ((gru, "agent, true reward"), (learned, "agent, learned reward"), (length, "agent, length reward"))
    for cell, policy in cells_policies:
        saved = load_config(AgentConfig, cell.folder / "agent" / "config.yaml")
        assert saved.run.dir == str(cell.folder / "agent") and saved.train.seed == 0
        assert saved.agent.algo == dict(cell.values)["agent.algo"]
        rows = json.loads((cell.folder / "evaluation" / "summary.json").read_text())
        assert set(rows) == {"random", policy}
        assert rows["random"]["episodes"] == rows[policy]["episodes"] == 3
        replay, _ = evaluate_checkpoint(cell.folder / "agent", "test", 3, 0, num_envs=3, out=tmp_path / "replay.json")
        assert replay["mean_return"] == rows[policy]["mean_return"]  # the final policy, on the held-out levels
    assert load_config(AgentConfig, learned.folder / "agent" / "config.yaml").reward.source == "learned"
    by = {(r["cell"], r["metric"]): r for r in csv.DictReader((tmp_path / "out" / "summary.csv").open())}
    assert by[(gru.name, "return.agent_true")]["runs"] == by[(learned.name, "return.agent_learned")]["runs"] == "1"
    assert by[(gru.name, "return.agent_learned")]["runs"] == by[(learned.name, "return.agent_true")]["runs"] == "0"
    assert by[(length.name, "return.agent_length")]["runs"] == "1" == by[(length.name, "return.random")]["runs"]
    assert by[(length.name, "return.agent_learned")]["runs"] == by[(gru.name, "return.agent_length")]["runs"] == "0"
    assert by[(gru.name, "return.random")]["runs"] == by[(learned.name, "return.random")]["runs"] == "1"
    assert all(by[(c.name, "reward.held_out.learned.spearman")]["runs"] == "0" for c in (gru, learned, length))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "(policies.train)" in summary and "best demonstrator" not in summary
    assert (tmp_path / "out" / "returns.png").is_file()

    before = (gru.folder / "agent" / "checkpoints" / "latest.pt").stat().st_mtime_ns
    rerun = sweep_cli("-c", str(path))
    assert rerun.returncode == 0, rerun.stderr
    skipped = [line for line in terminal_lines(rerun.stderr) if line.startswith("skipped ")]
    assert len(skipped) == 3 and not any(line.startswith("done ") for line in terminal_lines(rerun.stderr))
    assert (gru.folder / "agent" / "checkpoints" / "latest.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.train.seed=[1,2]", "grid.train.seed: set by the sweep (from seeds)"),
        ("overrides=[run.dir=x]", "overrides: run.dir is set by the sweep"),
        ("until=reward", "until: 'reward'; a policies.train cell has no pipeline stages"),
        ("evaluation.episodes=5", None),
    ],
)
def test_what_a_policies_train_sweep_sets_itself_is_refused_in_its_config(tmp_path, override, message):
    path = write_sweep(tmp_path, tmp_path / "out", entry="policies.train")
    path_data = yaml.safe_load(Path(path).read_text()) | {"experiment": str(REPO / "configs" / "policy-ppo-env.yaml")}
    Path(path).write_text(yaml.safe_dump(path_data | {"overrides": [], "grid": {}}, sort_keys=False))
    if message is None:  # the sweep's evaluation is for policies.train cells: set here, refused for a pipeline's
        assert load_config(Config, path, [override]).evaluation.episodes == 5
        with pytest.raises(ConfigError, match="evaluation: for policies.train cells"):
            load_config(Config, path, [override, "entry=experiments.pipeline"])
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(Config, path, [override])
