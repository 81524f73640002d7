"""Figures and tables of an experiment: learning curves over seeds, the T-REX reward figures, final results.

    python -m experiments.plot RUN_DIR... [--out DIR] [--agg mean|iqm] [--labels LABEL...]

Each RUN_DIR is a run folder or a folder holding run folders (searched a few levels down):

- **policy runs** (``progress.csv`` with ``charts/episodic_return``: the demonstrator, agents on the learned
  or true reward) give learning curves: the true return on the training levels
  (``charts/episodic_return``) and on held-out levels (``eval/test_return``) against environment steps;
- **reward runs** (``eval/metrics.json`` of ``trex.train_reward`` / ``trex.evaluate_reward``) give the
  T-REX figures: predicted against true return of the held-out demos (``eval/predictions.csv``), and
  the correlation of predicted with true return against the number of training demos, with the
  episode-length baseline drawn beside it.

Runs form methods: runs whose folder names differ only by a ``seed<N>`` part (and, for reward runs, a
``demos<N>`` part) are seeds of one method; ``--labels`` names the method of each RUN_DIR instead.
Curves and the final table aggregate over seeds with the mean or the IQM (interquartile mean) and 95%
stratified-bootstrap confidence intervals, following rliable (Agarwal et al., 2021, "Deep RL at the
edge of the statistical precipice"): runs are resampled with replacement within each task (here a
game), the aggregate is taken over the resample, and the CI is the percentile interval of the
replicates (``procgen_common.stats``).

Writes PNG figures (``procgen_common.figures``: matplotlib, no display needed), ``results.md`` (the final
held-out results with CIs and normalised scores, and the reward models' scores) and ``plot_data.json``
(every number drawn) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from procgen_common import figures as draw
from procgen_common.checkpoint import atomic_write_text, load_checkpoint
from procgen_common.cli import OneLineParser, UserError, main_guard
from procgen_common.config import read_yaml
from procgen_common.env import normalized_score
from procgen_common.figures import Curve, CurvePanel, ScatterPanel
from procgen_common.stats import AGGREGATES, Stats, json_safe

TRAIN_RETURN, TEST_RETURN = "charts/episodic_return", "eval/test_return"
NO_RESULTS = (
    f"{{run}}/progress.csv has no finite {TRAIN_RETURN} or {TEST_RETURN} yet (no episode has ended, or training "
    "diverged to NaN) and the run has no eval/latest-test.json"
)
CURVE_METRICS = {TRAIN_RETURN: "training levels", TEST_RETURN: "held-out levels"}
PREDICTORS = ("learned", "episode_length", "untrained_net")  # the learned return and its two baselines
MAX_CURVE_POINTS = 400  # steps per aggregated curve (longer runs are thinned evenly)
SEARCH_DEPTH = 3  # folder levels searched below a RUN_DIR that is not itself a run


# ---------------------------------------------------------------------------------------------------------
# Reading run folders


@dataclass(frozen=True)
class PolicyRun:
    """A policy run folder: its learning curves and final results."""

    path: Path
    method: str
    game: str
    mode: str
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    """Per metric: steps int64 ``(n,)`` and values float64 ``(n,)`` (rows where it was logged)."""
    final_test: float | None
    """Final held-out return: ``eval/latest-test.json`` (test_policy.py) or the last ``eval/test_return``."""
    final_test_source: str


@dataclass(frozen=True)
class RewardRun:
    """A reward run folder: its held-out scores and predictions."""

    path: Path
    method: str
    game: str
    num_demos: int | None
    """Training demos the model learned from (validation included), None where unknown."""
    metrics: dict
    true_return: np.ndarray = field(repr=False)
    predicted_return: np.ndarray = field(repr=False)


def read_progress(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every numeric column of a ``progress.csv`` as (steps, values), blank and non-finite (NaN, inf) cells left
    out: a diverged update has no value to plot."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, tuple[list, list]] = {}
    for row in rows:
        try:
            step = int(float(row["step"]))
        except (KeyError, TypeError, ValueError):
            continue  # a row cut short by a kill
        for key, text in row.items():
            if key in (None, "step") or text in (None, ""):
                continue
            try:
                value = float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                steps, values = columns.setdefault(key, ([], []))
                steps.append(step)
                values.append(value)
    return {k: (np.array(s, dtype=np.int64), np.array(v, dtype=np.float64)) for k, (s, v) in columns.items()}


def method_name(run_dir: Path, extra: str = "") -> str:
    """A run's method: its folder name without ``seed<N>`` (and the ``extra`` regex); a folder named only
    ``seed<N>`` takes its parent's name."""
    pattern = r"[-_.]?seed\d+" + (f"|{extra}" if extra else "")
    name = re.sub(pattern, "", run_dir.name).strip("-_.")
    return name or method_name(run_dir.resolve().parent, extra)


def _config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    return read_yaml(path) if path.is_file() else {}


def is_policy_run(path: Path) -> bool:
    if not (path / "progress.csv").is_file():
        return False
    try:
        with (path / "progress.csv").open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error):
        raise UserError(f"{path / 'progress.csv'} is not a progress table (not CSV text)") from None
    return TRAIN_RETURN in header


def is_reward_run(path: Path) -> bool:
    return (path / "eval" / "metrics.json").is_file() or (path / "reward_net.pt").is_file()


def find_runs(path: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """``path`` if it is a run folder, else the run folders below it (sorted, at most ``depth`` levels)."""
    if is_policy_run(path) or is_reward_run(path):
        return [path]
    if depth == 0:
        return []
    return [run for child in sorted(p for p in path.iterdir() if p.is_dir()) for run in find_runs(child, depth - 1)]


def read_policy_run(path: Path, method: str) -> PolicyRun:
    env = _config(path).get("env", {})
    curves = read_progress(path / "progress.csv")
    final, source = None, "none"
    summary = path / "eval" / "latest-test.json"
    if summary.is_file():
        try:
            final, source = float(json.loads(summary.read_text())["mean_return"]), "eval/latest-test.json"
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{summary} is not a test_policy.py summary (no mean_return)") from None
    elif TEST_RETURN in curves and len(curves[TEST_RETURN][1]):
        final, source = float(curves[TEST_RETURN][1][-1]), "progress.csv"
    return PolicyRun(
        path,
        method,
        str(env.get("game", "unknown")),
        str(env.get("distribution_mode", "easy")),
        {k: curves[k] for k in CURVE_METRICS if k in curves},
        final,
        source,
    )


def training_demo_count(path: Path) -> int | None:
    """Demos a reward model learned from: its ``reward_net.pt`` record, else ``data.num_demos`` of its config."""
    model = path / "reward_net.pt"
    if model.is_file():
        demos = load_checkpoint(model).get("demos", {})
        if "num_train" in demos:
            return int(demos["num_train"]) + int(demos.get("num_val", 0))
    num = _config(path).get("data", {}).get("num_demos")
    return int(num) if num is not None else None


def read_reward_run(path: Path, method: str) -> RewardRun:
    metrics_path, predictions_path = path / "eval" / "metrics.json", path / "eval" / "predictions.csv"
    if not metrics_path.is_file() or not predictions_path.is_file():
        raise UserError(
            f"{path} is a reward run without eval/metrics.json and eval/predictions.csv; run "
            f"python -m trex.evaluate_reward {path} DEMO_DIR --out {path / 'eval'}"
        )
    try:
        metrics = json.loads(metrics_path.read_text())
        with predictions_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        true = np.array([float(r["true_return"]) for r in rows])
        predicted = np.array([float(r["predicted_return"]) for r in rows])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}/eval: unreadable metrics.json or predictions.csv ({err})") from None
    game = str(metrics.get("game", "unknown"))
    return RewardRun(path, method, game, training_demo_count(path), metrics, true, predicted)


def read_runs(run_dirs: Sequence[str], labels: Sequence[str] | None) -> tuple[list[PolicyRun], list[RewardRun]]:
    if labels is not None and len(labels) != len(run_dirs):
        raise UserError(f"--labels: {len(labels)} labels for {len(run_dirs)} RUN_DIRs; give one label per RUN_DIR")
    policy, reward, empty = [], [], []
    for k, entry in enumerate(run_dirs):
        path = Path(entry)
        if not path.is_dir():
            raise UserError(f"{path} is not a folder; pass run folders or folders that hold them")
        runs = find_runs(path)
        if not runs:
            raise UserError(
                f"{path} holds no run: neither a policy run (progress.csv with {TRAIN_RETURN}) nor a reward run "
                "(eval/metrics.json), nor folders of them"
            )
        for run in runs:
            if is_policy_run(run):
                policy.append(read_policy_run(run, labels[k] if labels else method_name(run)))
                if not has_results(policy[-1]):
                    empty.append(policy.pop().path)
            else:
                reward.append(read_reward_run(run, labels[k] if labels else method_name(run, r"[-_.]?demos\d+")))
    if empty and not policy and not reward:
        raise UserError(NO_RESULTS.format(run=empty[0]) + "; nothing to plot")
    for run in empty:
        print(f"warning: {NO_RESULTS.format(run=run)}; left out", file=sys.stderr)
    return policy, reward


def has_results(run: PolicyRun) -> bool:
    """Whether a policy run has anything to plot: a finite return on some curve or a final held-out figure."""
    return run.final_test is not None or any(len(run.curves.get(key, ((), ()))[1]) for key in CURVE_METRICS)


# ---------------------------------------------------------------------------------------------------------
# Aggregating


def common_steps(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The steps a method's curves are aggregated at: the runs' shared steps if they all logged the same,
    else the union of their steps inside the range every run covers (values there are interpolated)."""
    steps = [s for s, _ in curves]
    if all(len(s) == len(steps[0]) and np.array_equal(s, steps[0]) for s in steps):
        grid = steps[0]
    else:
        low, high = max(s[0] for s in steps), min(s[-1] for s in steps)
        grid = np.unique(np.concatenate(steps))
        grid = grid[(grid >= low) & (grid <= high)] if low <= high else np.array([high])
    if len(grid) > MAX_CURVE_POINTS:
        grid = grid[np.unique(np.linspace(0, len(grid) - 1, MAX_CURVE_POINTS).round().astype(int))]
    return grid


def aggregate_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]], stats: Stats) -> dict:
    """One method's curve over seeds: ``step`` and, per step, ``value``, ``low``, ``high`` (lists)."""
    grid = common_steps(curves)
    table = np.stack([np.interp(grid, s, v) for s, v in curves])  # (runs, steps)
    estimates = [stats.estimate([table[:, j]]) for j in range(len(grid))]
    columns = {key: [getattr(e, key) for e in estimates] for key in ("value", "low", "high")}
    return {"step": grid.tolist(), **columns, "runs": len(curves)}


def learning_curves(runs: Sequence[PolicyRun], stats: Stats) -> dict:
    """``{game: {metric: {method: aggregate_curve}}}`` over the runs that logged the metric."""
    out: dict = {}
    for game in sorted({r.game for r in runs}):
        for metric in CURVE_METRICS:
            for method in dict.fromkeys(r.method for r in runs if r.game == game):
                curves = [
                    r.curves[metric]
                    for r in runs
                    if r.game == game and r.method == method and metric in r.curves and len(r.curves[metric][0])
                ]
                if curves:
                    out.setdefault(game, {}).setdefault(metric, {})[method] = aggregate_curve(curves, stats)
    return out


def final_results(runs: Sequence[PolicyRun], stats: Stats) -> list[dict]:
    """Per method and game: final training and held-out return and normalised score over seeds; a method
    with several games adds an 'all games' row of normalised scores, bootstrapped within each game."""
    rows = []
    for method in dict.fromkeys(r.method for r in runs):
        games = sorted({r.game for r in runs if r.method == method})
        per_game_scores = []
        for game in games:
            group = [r for r in runs if r.method == method and r.game == game]
            mode = group[0].mode
            train = [float(r.curves[TRAIN_RETURN][1][-1]) for r in group if TRAIN_RETURN in r.curves]
            test = [r.final_test for r in group if r.final_test is not None]
            scores = [normalized_score(t, game, mode) for t in test]
            scores = [s for s in scores if s is not None]
            if scores:
                per_game_scores.append(scores)
            rows.append(
                {
                    "method": method,
                    "game": game,
                    "distribution_mode": mode,
                    "runs": [str(r.path) for r in group],
                    "train_return": stats.estimate([train]).as_dict() if train else None,
                    "test_return": stats.estimate([test]).as_dict() if test else None,
                    "normalized_score": stats.estimate([scores]).as_dict() if scores else None,
                    "per_run": [
                        {"run": str(r.path), "test_return": r.final_test, "source": r.final_test_source} for r in group
                    ],
                }
            )
        if len(per_game_scores) > 1:
            rows.append(
                {
                    "method": method,
                    "game": "all games",
                    "distribution_mode": "",
                    "runs": [str(r.path) for r in runs if r.method == method],
                    "train_return": None,
                    "test_return": None,
                    "normalized_score": stats.estimate(per_game_scores).as_dict(),
                    "per_run": [],
                }
            )
    return rows


def _score(metrics: dict, predictor: str, key: str) -> float | None:
    value = metrics.get(predictor, {}).get(key)
    return None if value is None else float(value)


def correlation_vs_demos(runs: Sequence[RewardRun], stats: Stats) -> dict:
    """Per method: at each number of training demos, the learned reward's and the episode-length baseline's
    Pearson and Spearman correlation with the true return, aggregated over the runs there."""
    out: dict = {}
    for method in dict.fromkeys(r.method for r in runs if r.num_demos is not None):
        group = [r for r in runs if r.method == method and r.num_demos is not None]
        counts = sorted({r.num_demos for r in group})
        series: dict = {"num_demos": counts}
        for predictor in PREDICTORS:
            for key in ("pearson", "spearman"):
                points = []
                for n in counts:
                    values = [_score(r.metrics, predictor, key) for r in group if r.num_demos == n]
                    values = [v for v in values if v is not None]
                    points.append(stats.estimate([values]).as_dict() if values else None)
                series[f"{predictor}/{key}"] = points
        out[method] = series
    return out


# ---------------------------------------------------------------------------------------------------------
# Figures and tables


def plot_learning_curves(path: Path, game: str, metrics: dict, stats: Stats, colors: dict) -> None:
    """One panel per metric: each method's aggregate over seeds with its CI band."""
    ylabel = f"{stats.agg} return ({stats.confidence:.0%} CI)"
    panels = []
    for metric, methods in metrics.items():
        lines = [
            Curve(c["step"], c["value"], draw.runs_label(m, c["runs"]), c["low"], c["high"], colors[m])
            for m, c in methods.items()
        ]
        panels.append(CurvePanel(f"{game}: return on {CURVE_METRICS[metric]}", lines, ylabel=ylabel))
    draw.curves(path, panels)


def plot_scatter(path: Path, runs: Sequence[RewardRun]) -> None:
    """Predicted against true return of every reward run's held-out demos, one panel per run."""
    panels = []
    for run in runs:
        r, rho = (_fmt(_score(run.metrics, "learned", key)) for key in ("pearson", "spearman"))
        title, xlabel = f"{run.path.name}\nr={r}  rho={rho}", "predicted return (sum of learned rewards)"
        panels.append(ScatterPanel(run.predicted_return, run.true_return, title, xlabel, "true return"))
    draw.scatter(path, panels)


def plot_correlation(path: Path, series: dict, stats: Stats, colors: dict) -> None:
    """Pearson and Spearman correlation against training demos: each method's learned reward and, dashed, the
    episode-length baseline on the same demos."""
    panels = []
    for key in ("pearson", "spearman"):
        lines = []
        for method, data in series.items():
            for predictor, style, label, color in (
                ("learned", "-o", method, colors[method]),
                ("episode_length", "--s", f"episode length ({method} demos)", "0.45"),
            ):
                kept = [(n, p) for n, p in zip(data["num_demos"], data[f"{predictor}/{key}"], strict=True) if p]
                if kept:
                    x, p = zip(*kept, strict=True)
                    values = [[e[k] for e in p] for k in ("value", "low", "high")]
                    lines.append(Curve(x, values[0], label, values[1], values[2], color, style))
        title = f"{key.capitalize()} correlation with the true return (held-out demos)"
        ylabel = f"{stats.agg} correlation ({stats.confidence:.0%} CI)"
        panels.append(CurvePanel(title, lines, "training demos", ylabel, steps=False, ylim=(-1.05, 1.05)))
    draw.curves(path, panels)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(estimate: dict | None) -> str:
    return "n/a" if estimate is None else f"{estimate['value']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"


def results_markdown(final: list[dict], reward_runs: Sequence[RewardRun], figures: list[str], stats: Stats) -> str:
    how = (
        f"{'IQM (interquartile mean)' if stats.agg == 'iqm' else 'mean'} over seeds with "
        f"[{stats.confidence:.0%} stratified-bootstrap CI] ({stats.reps} resamples)"
    )
    lines = ["# Results", ""]
    if final:
        lines += [
            "## Final results",
            "",
            f"Each cell: {how}. Held-out return: `eval/latest-test.json` (test_policy.py) where a run has one, "
            "else its last `eval/test_return`; training return: its last `charts/episodic_return`; normalised "
            "score: (return - min) / (max - min) with the Procgen paper's ranges.",
            "",
            "| method | game | seeds | training return | held-out return | normalised score |",
            "|---|---|---|---|---|---|",
        ]
        for row in final:
            game = f"{row['game']} ({row['distribution_mode']})" if row["distribution_mode"] else row["game"]
            lines.append(
                f"| {row['method']} | {game} | {len(row['runs'])} | {_cell(row['train_return'])} | "
                f"{_cell(row['test_return'])} | {_cell(row['normalized_score'])} |"
            )
        lines.append("")
    if reward_runs:
        lines += [
            "## Reward models on held-out demos",
            "",
            "Correlation of the predicted return (sum of learned rewards) with the true return, beside the "
            "episode-length and untrained-network baselines on the same demos.",
            "",
            "| reward run | training demos | held-out demos | pair accuracy | Pearson: learned / length / untrained "
            "| Spearman: learned / length / untrained |",
            "|---|---|---|---|---|---|",
        ]
        for run in reward_runs:
            m = run.metrics
            pearson, spearman = (
                " / ".join(_fmt(_score(m, p, key)) for p in PREDICTORS) for key in ("pearson", "spearman")
            )
            demos = "n/a" if run.num_demos is None else str(run.num_demos)
            lines.append(
                f"| {run.path.name} | {demos} | {m.get('num_demos', 'n/a')} | "
                f"{_fmt(_score(m, 'learned', 'pair_accuracy'))} | {pearson} | {spearman} |"
            )
        lines.append("")
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def make_plots(
    run_dirs: Sequence[str], out_dir: str | Path, stats: Stats | None = None, labels: Sequence[str] | None = None
) -> dict:
    """Read the runs, write the figures, ``results.md`` and ``plot_data.json`` to ``out_dir``; returns the
    plot data (what ``plot_data.json`` holds)."""
    stats = stats or Stats()
    policy_runs, reward_runs = read_runs(run_dirs, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = dict.fromkeys([r.method for r in policy_runs] + [r.method for r in reward_runs])
    colors = {m: f"C{k % 10}" for k, m in enumerate(methods)}  # a method keeps its colour in every figure
    figures: list[str] = []
    curves = learning_curves(policy_runs, stats)
    for game, metrics in curves.items():
        name = f"learning_curves-{game}.png"
        plot_learning_curves(out / name, game, metrics, stats, colors)
        figures.append(name)
    final = final_results(policy_runs, stats)
    correlation = correlation_vs_demos(reward_runs, stats)
    if reward_runs:
        plot_scatter(out / "trex_scatter.png", reward_runs)
        figures.append("trex_scatter.png")
    if correlation:
        plot_correlation(out / "trex_correlation.png", correlation, stats, colors)
        figures.append("trex_correlation.png")
    data = {
        "agg": stats.agg,
        "confidence": stats.confidence,
        "reps": stats.reps,
        "learning_curves": curves,
        "final": final,
        "trex": {
            "runs": [
                {
                    "run": str(r.path),
                    "method": r.method,
                    "game": r.game,
                    "num_demos": r.num_demos,
                    "metrics": r.metrics,
                    "true_return": r.true_return.tolist(),
                    "predicted_return": r.predicted_return.tolist(),
                }
                for r in reward_runs
            ],
            "correlation_vs_demos": correlation,
        },
        "figures": figures,
    }
    atomic_write_text(out / "plot_data.json", json.dumps(json_safe(data), indent=1) + "\n")
    atomic_write_text(out / "results.md", results_markdown(final, reward_runs, figures, stats))
    return data


# ---------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m experiments.plot",
        description="Learning curves over seeds (mean or IQM with 95% stratified-bootstrap CIs), the T-REX reward "
        "figures and a markdown table of final held-out results, from run folders.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m experiments.plot runs/ppo-starpilot-nature-seed0 runs/ppo-starpilot-nature-seed1 --out plots\n"
        "  python -m experiments.plot runs/experiment --agg iqm\n"
        "  python -m experiments.plot runs/ppo-true runs/ppo-learned --labels 'true reward' 'learned reward'",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run folders (policy runs with progress.csv, reward runs with eval/metrics.json) or folders holding them",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: plots/ beside the runs, in their common folder)"
    )
    parser.add_argument(
        "--agg", choices=sorted(AGGREGATES), default="mean", help="aggregate over seeds: mean (default) or iqm"
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="method name of each RUN_DIR, in order (default: the folder name without seed<N>)",
    )
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    args = parser.parse_args(argv)
    if args.reps < 100:
        raise UserError(f"--reps must be at least 100, got {args.reps}")
    return args


def default_out(run_dirs: Sequence[str]) -> Path:
    """``plots/`` in the folder the runs share: inside a single folder of runs, else beside the runs."""
    paths = [Path(p).resolve() for p in run_dirs]
    if len(paths) == 1 and not (is_policy_run(paths[0]) or is_reward_run(paths[0])):
        return paths[0] / "plots"
    return Path(os.path.commonpath([p.parent for p in paths])) / "plots"


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out) if args.out else default_out(args.run_dirs)
    try:
        data = make_plots(args.run_dirs, out, Stats(args.agg, 0.95, args.reps, args.seed), args.labels)
    except OSError as err:
        raise UserError(f"could not read or write the plots: {err}") from None
    for row in data["final"]:
        print(
            f"{row['method']} ({row['game']}): held-out return {_cell(row['test_return'])}, "
            f"normalised {_cell(row['normalized_score'])}"
        )
    for name in data["figures"]:
        print(f"wrote {out / name}", file=sys.stderr)
    print(f"wrote {out / 'results.md'} and {out / 'plot_data.json'}")
    return data


def plot_reward_hacking(path: Path, run_dir: Path, title: str) -> bool:
    """The learned and the true return of a learned-reward agent's training episodes over training, on one figure
    (two y-axes): where the learned return climbs while the true return stalls or falls, the agent is exploiting the
    reward model (Gao et al., 2022). Returns False (nothing drawn) when the run logged no learned return."""
    progress = read_progress(run_dir / "progress.csv")
    if "charts/learned_return" not in progress or TRAIN_RETURN not in progress:
        return False
    learned = Curve(*progress["charts/learned_return"], "learned return (optimised)", color="C1")
    draw.twin_curves(path, learned, Curve(*progress[TRAIN_RETURN], "true return"), title)
    return True


if __name__ == "__main__":
    main()
