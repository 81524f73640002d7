"""The whole T-REX experiment in one command.

    python -m experiments.pipeline -c configs/quickstart.yaml [key=value ...]

Stages, each in its own subfolder of ``dir``:

1. ``demonstrator/``: PPO on the game's reward (``baseline_agent.train``), saving its checkpoint series;
2. ``demos/``: every checkpoint plays a few training levels and, for evaluation only, a few held-out levels
   (``trex.generate_demos``);
3. ``reward/``: a reward model learned from the training demos ranked by return and scored on the held-out
   demos beside the episode-length and untrained-network baselines (``trex.train_reward``);
4. ``agent-learned/``: an agent on the learned reward only (``policies.train``, reward.source=learned);
5. ``agent-true/``: the same agent on the game's reward, the reference (skipped when the agent is PPO with the
   demonstrator's settings and budget: that run would replay the demonstrator, which then serves as the reference);
6. ``evaluation/``: a random policy, the best demonstration's rung (played with its noise) and both agents, each on
   the same held-out levels (``procgen_common.evaluation``);
7. ``report.md`` with ``report/``: the held-out table, the reward model's scores, the demonstrations' skill
   ladder, learning curves and the reward figures.

Each finished stage leaves ``stages/<stage>.json`` with the settings it ran with. A rerun skips a stage whose
record matches the current settings (and those of the stages it reads from), resumes an unfinished one from its
own checkpoints, and stops with one line when a finished stage's settings changed, so earlier results are never
overwritten. The report is rewritten on every run.

``until=<stage>`` stops after that stage (e.g. ``until=reward`` for a study of reward models alone); the report then
holds what those stages made. ``until`` is no stage's setting: the same folder run later without it runs the rest.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import operator
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from baseline_agent import zoo
from baseline_agent.train import Config as DemonstratorConfig
from baseline_agent.train import train as train_demonstrator
from policies.reward_wrapper import RewardConfig as GameReward
from policies.train import Config as AgentConfig
from policies.train import train as train_agent
from procgen_common.agents import RandomAgent
from procgen_common.checkpoint import atomic_write_text, load_checkpoint
from procgen_common.cli import UserError, config_parser, main_guard
from procgen_common.config import (
    Checked,
    ConfigError,
    bounded,
    field_default,
    from_dict,
    load_config,
    node_at,
    read_yaml,
    save_config,
)
from procgen_common.env import EnvConfig
from procgen_common.evaluation import evaluate_agent, evaluate_checkpoint, read_episode_returns, write_evaluation
from procgen_common.runs import FolderLock, pick_device
from procgen_common.stats import spearman, verdict
from trex.demos import read_index
from trex.generate_demos import Config as DemosConfig
from trex.generate_demos import checkpoint_files, generate, summary_lines
from trex.train_reward import Config as RewardConfig
from trex.train_reward import train as train_reward

StageName = typing.Literal["demonstrator", "demos", "reward", "agent-learned", "agent-true", "evaluation"]
STAGE_NAMES: tuple[str, ...] = typing.get_args(StageName)
"""The stages in the order they run (agent-true is left out where the demonstrator is the reference)."""


@dataclass(frozen=True)
class EvaluationConfig(Checked):
    """The final held-out evaluation of every policy."""

    episodes: int = bounded(100, 1)
    """Episodes per policy on the held-out levels (the same level sequence for every policy)."""
    deterministic: bool = False
    """Greedy actions instead of sampling."""
    num_envs: int = bounded(64, 1)
    """Environments played in parallel."""


@dataclass(frozen=True)
class Experiment(Checked):
    """What the stages share: the experiment folder, the seed, the demonstrators and the env."""

    dir: str = "experiments/quickstart"
    """Experiment folder: one subfolder per stage, stages/ (what each finished stage ran with) and report.md."""
    seed: int = bounded(0, 0)
    """Seed of every stage (demonstrator, demos, reward model, agents, evaluation)."""
    zoo: str | None = None
    """Demonstrators from the zoo instead of training them: a series (zoo:starpilot), one checkpoint of it
    (zoo:starpilot/step_001000000), or a folder of step_*.pt checkpoints; the demonstrator stage then only records
    which files it used, demonstrator.* is unused, and the series' final checkpoint is the true-reward reference
    (its budget is in the report). A multi-game series serves each of its games: its demos and evaluations play
    env.game. null = train the demonstrator (demonstrator.*)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Game, training levels and Procgen options of the demonstrator and both agents (one game: env.games is
    refused)."""
    until: StageName | None = None
    """The last stage to run, e.g. reward: demonstrator, demos and the reward model with its scores, no agents; the
    report holds what those stages made. null = every stage. It is no stage's setting: the same folder run again
    without it runs the remaining stages and skips the finished ones."""

    def validate(self) -> None:
        if not self.dir.strip():
            raise ValueError("dir: empty; name the experiment folder (e.g. dir=experiments/mine)")
        if self.env.games:
            raise ValueError(
                f"env.games: the pipeline is one game's T-REX experiment; set env.game instead (one of "
                f"{', '.join(self.env.games)}) and leave env.games empty (multi-game agents train with "
                "baseline_agent.train or policies.train; a multi-game zoo series can be the demonstrator, zoo=...)"
            )


@dataclass(frozen=True)
class Config(Experiment):
    """The whole T-REX experiment (experiments.pipeline). Each stage section is that stage's own config, except the
    keys the pipeline sets itself: the env (from env.*), seeds (from seed), run folders and the paths that
    connect the stages."""

    demonstrator: DemonstratorConfig = field(default_factory=DemonstratorConfig)
    """PPO demonstrator (baseline_agent.train); its checkpoint series are the demonstrations' skill ladder."""
    demos: DemosConfig = field(default_factory=DemosConfig)
    """Demonstrations (trex.generate_demos) from every demonstrator checkpoint."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward model training and its held-out evaluation (trex.train_reward)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """The agent trained on the learned reward and, as the reference, on the true reward (policies.train)."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """The final held-out evaluation of every policy."""

    @classmethod
    def fill_data(cls, data: dict, where: str) -> dict:
        """``data`` with the keys the pipeline sets filled into the stage sections before they are built (and
        checked: each stage's own checks, e.g. minibatches against env.num_envs, see the config it will run with).
        A key set to anything but its default or the pipeline's value is refused."""
        shared = from_dict(Experiment, {k: v for k, v in data.items() if k in Experiment.__dataclass_fields__}, where)
        data = copy.deepcopy(data)
        for name, values in pipeline_keys(shared).items():
            for key, value in values.items():
                *parents, last = key.split(".")
                node = node_at(data, [name, *parents], f"{name}.{key} ({where})")
                given = node.get(last, value)
                if dataclasses.is_dataclass(value) and last in node:
                    given = from_dict(type(value), given or {}, where, f"{name}.{key}.")
                if given not in (field_default(typing.get_type_hints(cls)[name], key), value):
                    raise ConfigError(f"{name}.{key}: set by the pipeline ({PIPELINE_KEYS_WHY[key]}); leave it out")
                node[last] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return data


def pipeline_keys(config: Experiment) -> dict[str, dict]:
    """Per stage section, the keys the pipeline sets and their values: what connects the stages, the env and
    the seed. The agent section is the learned-reward agent's; the true-reward agent's differs in its run folder
    and its reward (the game's; see ``stage_configs``)."""
    root, seed, env = Path(config.dir), config.seed, config.env
    return {
        "demonstrator": {"env": env, "run.dir": str(root / "demonstrator"), "train.seed": seed, "train.resume": True},
        "demos": {
            "checkpoints": config.zoo or str(root / "demonstrator"),
            "game": env.game,
            "distribution_mode": env.distribution_mode,
            "out_dir": str(root / "demos"),
            "seed": seed,
        },
        "reward": {
            "data.demos": str(root / "demos"),
            "data.test_demos": None,
            "run.dir": str(root / "reward"),
            "train.seed": seed,
            "train.resume": True,
            "eval.at_end": True,
        },
        "agent": {
            "env": env,
            "run.dir": None,
            "reward.source": "learned",
            "reward.model": str(root / "reward"),
            "train.seed": seed,
            "train.resume": True,
        },
    }


PIPELINE_KEYS_WHY = {
    "env": "from env.*",
    "run.dir": "a subfolder of dir",
    "train.seed": "from seed",
    "seed": "from seed",
    "train.resume": "stages always resume",
    "checkpoints": "the demonstrator's series, or zoo",
    "game": "from env.game",
    "distribution_mode": "from env.distribution_mode",
    "out_dir": "dir/demos",
    "data.demos": "dir/demos",
    "data.test_demos": "the held-out demos in dir/demos",
    "reward.source": "learned for agent-learned, env for agent-true",
    "reward.model": "dir/reward",
    "eval.at_end": "the report shows the held-out evaluation",
}
# The section of each stage's config that holds its device and torch_threads.
STAGE_SECTIONS = ("demonstrator.train", "demos", "reward.train", "agent.train")
# Settings that change how fast a stage runs, not what it produces: a change does not make a finished stage stale.
NOT_RESULTS = ("device", "torch_threads", "writer_threads", "log", "save_interval_minutes")


@dataclass
class Stage:
    """One step of the experiment: its folder, the config it runs with and the stages it reads from."""

    name: str
    folder: Path
    config: object
    inputs: tuple[str, ...]
    run: Callable[[], object]


def stage_configs(config: Config) -> dict[str, object]:
    """Every stage's own config: the sections, with the two agents' run folders set and the game's reward (which
    reads no other reward.* key) for the true-reward agent."""
    root, agent = Path(config.dir), config.agent

    def agent_in(name: str, **changes):
        return dataclasses.replace(agent, run=dataclasses.replace(agent.run, dir=str(root / name)), **changes)

    return {
        "demonstrator": config.demonstrator,
        "demos": config.demos,
        "reward": config.reward,
        "agent-learned": agent_in("agent-learned"),
        "agent-true": agent_in("agent-true", reward=GameReward()),
    }


def _flat(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out = {}
    for key, value in data.items():
        if key not in NOT_RESULTS:
            out |= _flat(value, f"{prefix}{key}.")
    return out


def stage_settings(stage: Stage, input_digests: dict[str, str]) -> dict:
    """What a stage's results depend on: its flattened config and the digests of the stages it reads from."""
    settings = _flat(dataclasses.asdict(stage.config) if dataclasses.is_dataclass(stage.config) else stage.config)
    return settings | {f"<{name}>": input_digests[name] for name in stage.inputs}


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        record["digest"], record["settings"]  # noqa: B018 - a record without them is corrupt
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is corrupt; remove it and the stage reruns (resuming from its checkpoints)") from None
    return record


# ---------------------------------------------------------------------------------------------------------
# Evaluation and report


@dataclass(frozen=True)
class BestDemonstrator:
    """The rung of the demonstrations' ladder whose training-level demos have the highest mean return."""

    file: Path
    """Its checkpoint."""
    epsilon: float
    """The noise it played with (0 for a plain checkpoint ladder)."""
    train_mean: float
    """Its training-level demos' mean return."""
    train_count: int
    """How many training-level demos it played."""


def best_demonstrator(demos_dir: Path) -> BestDemonstrator:
    """The best demonstration's rung, ``(checkpoint, epsilon)``: the pipeline evaluates it as it played its
    demos, noise included, since an agent that learned from a noisy ladder learned from nothing better (D-REX,
    Brown et al. 2019b, compares against the best demonstration, not the policy behind it).

    The file is found among the demonstrators the demo folder's config.yaml names.
    """
    infos = [i for i in read_index(demos_dir) if i.split == "train"]
    if not infos:
        raise UserError(f"{demos_dir} holds no training demos; set demos.num_train_levels >= 1")
    means = {}
    for rung in dict.fromkeys((i.checkpoint, i.epsilon) for i in infos):
        returns = [i.episode_return for i in infos if (i.checkpoint, i.epsilon) == rung]
        means[rung] = (float(np.mean(returns)), len(returns))
    (name, epsilon) = max(means, key=lambda k: means[k][0])
    demos_config = load_config(DemosConfig, demos_dir / "config.yaml")
    files = [f for f in checkpoint_files(demos_config.checkpoint_entries) if f.stem == name]
    if not files:
        raise UserError(f"{demos_dir}: its best checkpoint {name} is no longer where its config.yaml says")
    return BestDemonstrator(files[0], epsilon, *means[name, epsilon])


def evaluate_policies(config: Config, root: Path) -> None:
    """Random policy, best demonstration's rung and both agents on the same held-out episodes."""
    best = best_demonstrator(root / "demos")
    policies = {
        "best demonstrator": best.file,
        "agent, true reward": true_reward_run(config),
        "agent, learned reward": root / "agent-learned",
    }
    # games: a multi-game zoo demonstrator plays the experiment's game only (a no-op for one-game agents).
    out = root / "evaluation"
    noise = {"best demonstrator": best.epsilon}
    rows = evaluate_held_out(policies, config.env, config.evaluation, config.seed, out, [config.env.game], noise)
    rows["best demonstrator"] |= {"demo_train_mean_return": best.train_mean, "demo_train_episodes": best.train_count}
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=2) + "\n")


def evaluate_held_out(
    policies: dict[str, Path],
    env: EnvConfig,
    e: EvaluationConfig,
    seed: int,
    out: Path,
    games: list[str] | None = None,
    epsilons: dict[str, float] | None = None,
) -> dict:
    """A uniform random policy and every saved policy (name -> checkpoint or run folder) on the same held-out
    episodes, those in ``epsilons`` with that share of random actions; writes each one's results
    (``<out>/<name>.json`` and .csv) and returns their rows by name."""
    settings = (e.episodes, seed, e.deterministic, e.num_envs)
    summary, results = evaluate_agent(RandomAgent(seed), env, "test", *settings, "random")
    write_evaluation(summary, results, out / "random.json")
    rows = {"random": summary | {"policy": "random", "file": str(out / "random.json")}}
    for policy, path in policies.items():
        file = out / f"{policy.replace(', ', '-').replace(' ', '_')}.json"
        epsilon = (epsilons or {}).get(policy, 0.0)
        summary, _ = evaluate_checkpoint(path, "test", *settings, out=file, games=games, epsilon=epsilon)
        rows[policy] = summary | {"policy": policy, "file": str(file)}
    return rows


def _cell(row: dict) -> str:
    low, high = row["ci95_return"]
    return f"{row['mean_return']:.2f} [{low:.2f}, {high:.2f}]"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def episode_returns(row: dict) -> np.ndarray:
    """The per-episode true returns behind an evaluation row (the CSV beside its JSON)."""
    return read_episode_returns(row["file"])


def ladder_check(infos: list) -> tuple[bool, str]:
    """Whether the training demos form a skill ladder: ``(ok, sentence)``. Rungs are (checkpoint step, less noise) in
    rank order; the ladder holds when the rungs' mean true returns rise with rank (Spearman >= 0.5) and the top rung's
    mean beats the bottom one's by the 95% CI of their difference."""
    rungs = sorted({(i.checkpoint_step, -i.epsilon) for i in infos})
    returns = [np.array([i.episode_return for i in infos if (i.checkpoint_step, -i.epsilon) == r]) for r in rungs]
    if len(rungs) < 2:
        return False, "The demonstrations have a single rung (one checkpoint, one noise level): there is no ranking."
    means = [float(r.mean()) for r in returns]
    rho = spearman(np.arange(len(rungs)), np.array(means))
    word, (low, high) = verdict(returns[-1], returns[0])
    ok = rho is not None and rho >= 0.5 and word == "beats"
    rising = f"rung mean returns {means[0]:.2f} (lowest rank) to {means[-1]:.2f} (highest), Spearman with rank " + (
        "n/a (every rung has the same mean)" if rho is None else f"{rho:.2f}"
    )
    if ok:
        return True, f"The demonstrations form a ladder: {rising}; top minus bottom rung [{low:.2f}, {high:.2f}]."
    advice = (
        "more demos a rung (demos.num_train_levels, demos.episodes_per_level), noise levels further apart "
        "(demos.epsilon) or more distinct demonstrators"
        if any(i.epsilon > 0 for i in infos)
        else "stronger or more distinct demonstrators, or a noise ladder (demos.epsilon=[...])"
    )
    return False, (
        f"**Warning: the demonstrations do not form a ladder**: {rising}; the top rung {word} the bottom one (95% CI "
        f"of the difference [{low:.2f}, {high:.2f}]). Their mean returns do not rise clearly with rank, so T-REX has "
        f"little to learn from: use {advice}."
    )


def report_markdown(
    config: Config, root: Path, rows: dict | None, reward_summary: dict | None, figures: list[str], times: dict
) -> str:
    """The report of the stages that ran (up to ``until``): ``rows`` (the held-out evaluation) and
    ``reward_summary`` (the reward model's scores) are None where their stage was not run."""
    env = config.env
    if config.zoo is not None:
        reference = load_checkpoint(true_reward_run(config))
        source = (
            f"demonstrators from the zoo (`{config.zoo}`, trained by `python -m baseline_agent.zoo build` with "
            f"configs/zoo.yaml; the true-reward reference is its final checkpoint, {reference['step']:,} steps)"
        )
    else:
        source = (
            f"a PPO demonstrator trained on {env.num_levels} levels for {config.demonstrator.train.total_steps:,} "
            f"steps, {config.demonstrator.train.num_checkpoints} checkpoints"
        )
    made = [f"`python -m experiments.pipeline` with `{root / 'config.yaml'}`: {source}"]
    if runs_stage(config, "demos"):
        made.append(
            f"each checkpoint played the demonstrations at epsilon {', '.join(f'{e:g}' for e in config.demos.epsilons)}"
        )
    if runs_stage(config, "reward"):
        made.append(
            f"a reward model learned from their ranking by {config.reward.data.rank_by} "
            f"({config.reward.data.comparison} comparisons)"
        )
    if runs_stage(config, "agent-learned"):
        made.append(
            f"the agent ({config.agent.agent.algo}, {config.agent.train.total_steps:,} steps"
            f"{reward_transform(config, root)}) trained "
            + (
                "on the learned reward only; on the game's reward, the demonstrator itself is that agent (the same "
                "PPO settings, seed and budget)"
                if demonstrator_is_reference(config)
                else "on the learned reward only"
                if config.zoo is not None or not runs_stage(config, "agent-true")
                else "once on the learned reward only and once on the game's reward"
            )
        )
    lines = [f"# T-REX experiment: {env.game} ({env.distribution_mode})", "", "; ".join(made) + "."]
    reuse = demonstrator_is_reference(config) or config.zoo is not None
    left_out = [n for n in STAGE_NAMES if not runs_stage(config, n) and not (n == "agent-true" and reuse)]
    if left_out:
        lines += [
            "",
            f"**Not run (until={config.until})**: {', '.join(left_out)}"
            + (", so this report has no held-out policy table" if rows is None else "")
            + ". The same command without until runs them, skipping the finished stages.",
        ]
    infos = read_index(root / "demos") if runs_stage(config, "demos") else []
    if rows is not None:
        first = next(iter(rows.values()))
        levels = first["level_range"]
        learned, best, true = rows["agent, learned reward"], rows["best demonstrator"], rows["agent, true reward"]
        beat, (low, high) = verdict(episode_returns(learned), episode_returns(best))
        lines += [
            "",
            "## Held-out levels",
            "",
            f"True return on {first['episodes']} episodes per policy, level seeds {levels['start_level']} to "
            f"{levels['start_level'] + levels['num_levels'] - 1} (never trained on): mean [95% bootstrap CI].",
            "",
            "| policy | held-out return | normalised score | mean length |",
            "|---|---|---|---|",
        ]
        for policy, row in rows.items():
            label = policy
            if policy == "best demonstrator":
                noise = f", epsilon {row['epsilon']:g}" if row.get("epsilon") else ""
                label = f"{policy} ({Path(row['checkpoint']).stem}{noise})"
            lines.append(f"| {label} | {_cell(row)} | {_num(row['normalized_score'])} | {row['mean_length']:.0f} |")
        true_word, (true_low, true_high) = verdict(episode_returns(learned), episode_returns(true))
        lines += [
            "",
            f"The agent on the learned reward **{beat}** the best demonstrator on held-out levels "
            f"({learned['mean_return']:.2f} against {best['mean_return']:.2f}; 95% CI of the difference "
            f"[{low:.2f}, {high:.2f}]; its training-level demos averaged "
            f"{best['demo_train_mean_return']:.2f}), and {true_word} the agent on the true reward (95% CI of the "
            f"difference [{true_low:.2f}, {true_high:.2f}]).",
        ]
    if infos:
        lines += ["", ladder_check([i for i in infos if i.split == "train"])[1]]
    if reward_summary is not None:
        lines += [
            "",
            "## Reward model",
            "",
            "Spearman correlation of each predictor with the true return: the predicted return (sum of learned "
            "rewards), its per-frame mean, episode length and an untrained network of the same shape, on unseen "
            "episodes of the training levels (in distribution) and on held-out levels; the gap is held-out minus "
            "in-distribution.",
            "",
            "| predictor | in distribution | held-out | gap | held-out pair accuracy |",
            "|---|---|---|---|---|",
        ]
        for key, label in (
            ("learned", "learned return"),
            ("learned_per_frame", "learned per-frame mean"),
            ("episode_length", "episode length"),
            ("untrained_net", "untrained net"),
        ):
            inside = reward_summary.get("in_distribution", {}).get(key, {})
            outside = reward_summary.get("held_out", {}).get(key, {})
            gap = reward_summary.get("spearman_gap", {}).get(key)
            lines.append(
                f"| {label} | {_num(inside.get('spearman'))} | {_num(outside.get('spearman'))} | {_num(gap)} | "
                f"{_num(outside.get('pair_accuracy'))} |"
            )
    if infos:
        lines += ["", "## Demonstrations (mean true return per rung and split)", "", "```"]
        lines += summary_lines(infos) + ["```"]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(f).stem}]({f})" for f in figures]
    lines += ["", "## Stage wall times", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in times.items()]
    lines += [f"| total | {sum(times.values()):.0f} |", ""]
    return "\n".join(lines)


def reward_transform(config: Config, root: Path) -> str:
    """How the agent's learned reward differs from the model's output (offset, centring, sigmoid), for the report."""
    reward, parts = config.agent.reward, []
    if reward.center:
        recorded = load_checkpoint(root / "reward" / "reward_net.pt").get("reward_per_frame") or {}
        parts.append(
            f"less the model's mean reward per frame on its training demos, {recorded.get('mean', float('nan')):.3f}"
        )
    if reward.offset:
        parts.append(f"less reward.offset {reward.offset:g}")
    if reward.sigmoid:
        parts.append("through a sigmoid")
    return "; its reward " + " and ".join(parts) if parts else ""


def write_report(config: Config, root: Path, times: dict) -> Path:
    """``report.md`` and its figures in ``report/``, of the stages that ran (up to ``until``)."""
    from experiments.plot import make_plots, plot_reward_hacking  # matplotlib is imported only for the report

    rows = json.loads((root / "evaluation" / "summary.json").read_text()) if runs_stage(config, "evaluation") else None
    reward_summary = (
        json.loads((root / "reward" / "generalization.json").read_text()) if runs_stage(config, "reward") else None
    )
    runs = {root / "demonstrator": "demonstrator (true reward)"}
    if runs_stage(config, "agent-true"):
        runs[true_reward_run(config)] = "agent, true reward"
    if runs_stage(config, "agent-learned"):
        runs[root / "agent-learned"] = "agent, learned reward"
    if runs_stage(config, "reward"):
        runs[root / "reward"] = "reward model"
    # One entry for the demonstrator when it is also the true-reward agent (the later label wins); a zoo
    # demonstrator has no run folder here.
    runs = {run: label for run, label in runs.items() if run.is_dir()}
    figures = []
    if runs:
        data = make_plots([str(r) for r in runs], root / "report", labels=list(runs.values()))
        figures = [f"report/{name}" for name in data["figures"]]
    hacking = root / "report" / "reward_hacking.png"
    title = f"{config.env.game}: the learned-reward agent's training episodes"
    if runs_stage(config, "agent-learned") and plot_reward_hacking(hacking, root / "agent-learned", title):
        figures.append("report/reward_hacking.png")
    if runs_stage(config, "reward"):
        figures += [
            f"reward/eval/{name}"
            for name in ("scatter.png", "traces.png")
            if (root / "reward" / "eval" / name).is_file()
        ]
    path = root / "report.md"
    atomic_write_text(path, report_markdown(config, root, rows, reward_summary, figures, times))
    return path


# ---------------------------------------------------------------------------------------------------------
# The pipeline


def runs_stage(config: Experiment, name: str) -> bool:
    """Whether the pipeline runs stage ``name`` (``until`` leaves out the stages after it)."""
    return config.until is None or STAGE_NAMES.index(name) <= STAGE_NAMES.index(config.until)


def zoo_files(config: Config) -> list[Path]:
    """The demonstrator checkpoints ``zoo`` names (a whole series when it names one checkpoint of it), checked to
    play ``env.game`` (alone or among the games of a multi-game series) and ``env.distribution_mode``; every problem
    is a one-line UserError naming the key."""
    entry = config.zoo
    path = zoo.resolve(entry) if zoo.is_zoo_entry(entry) else Path(entry)
    folder = path.parent if path.is_file() else path
    files = sorted(folder.glob("step_*.pt")) if folder.is_dir() else []
    if not files:
        raise UserError(f"zoo: {entry} names no step_*.pt checkpoints; give zoo:<game> or a folder of checkpoints")
    saved = load_checkpoint(files[-1]).get("config", {}).get("env", {})
    games = saved.get("games") or [saved.get("game")]
    mode = saved.get("distribution_mode")
    if config.env.game not in games or mode != config.env.distribution_mode:
        raise UserError(
            f"zoo: {entry} plays {'+'.join(map(str, games))} ({mode}) but env.game is {config.env.game} "
            f"({config.env.distribution_mode}); use that game's series or set env.game={games[0]}"
        )
    return files


def zoo_record(config: Config) -> dict:
    """What the demonstrator stage records for a zoo demonstrator: the entry and a digest of every file of its
    series, so a rebuilt zoo makes the later stages stale. Files are named by series and file name, not by
    their path, so a checkout moved elsewhere still finds its finished stages."""
    files = zoo_files(config)
    return {
        "zoo": config.zoo,
        "files": {zoo_file_key(f): hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files},
    }


def zoo_file_key(file: Path) -> str:
    return f"{file.parent.name}/{file.name}"


def upgrade_settings(old: dict, renamed: dict[str, str], today: dict, config: object) -> dict:
    """A record's settings in today's form: zoo files keyed by absolute path (records written before
    ``zoo_file_key``) by series and name, the digests of input stages whose records were upgraded (``renamed``: old
    digest -> today's) replaced, and each key of the stage's config added since the record was written (``today``
    has it, the record not) at today's value where that is the key's default: a new setting's default keeps what
    the code did before it existed, so a finished stage stays finished."""
    new = {}
    for key, value in old.items():
        if key.startswith("files.") and Path(key.removeprefix("files.")).is_absolute():
            key = "files." + zoo_file_key(Path(key.removeprefix("files.")))
        new[key] = renamed.get(value, value) if key.startswith("<") else value
    if dataclasses.is_dataclass(config):
        for key in today.keys() - new.keys():
            with contextlib.suppress(KeyError, AttributeError, TypeError):  # not a field of the config: no default
                if today[key] == field_default(type(config), key):
                    new[key] = today[key]
    return new


def demonstrator_is_reference(config: Config) -> bool:
    """Whether the true-reward agent would be PPO with the demonstrator's settings, seed and budget: a replay of
    the demonstrator run, which then serves as the reference instead of being trained twice."""
    agent, demonstrator = config.agent, config.demonstrator
    return (
        config.zoo is None
        and agent.agent.algo == "ppo"
        and (agent.model, agent.ppo) == (demonstrator.model, demonstrator.ppo)
        and (agent.train.total_steps, agent.train.precision)
        == (demonstrator.train.total_steps, demonstrator.train.precision)
    )


def true_reward_run(config: Config) -> Path:
    """The agent on the true reward: agent-true, the demonstrator when it is the reference, or the final checkpoint
    of the zoo series."""
    if config.zoo is not None:
        return zoo_files(config)[-1]
    return Path(config.dir) / ("demonstrator" if demonstrator_is_reference(config) else "agent-true")


def stages(config: Config) -> list[Stage]:
    """The stages to run, in order (each after the stages it reads from), up to ``until``."""
    root = Path(config.dir)
    configs = stage_configs(config)
    reuse = demonstrator_is_reference(config) or config.zoo is not None

    def trained(name: str, inputs: tuple[str, ...], train: Callable[[object], object]) -> Stage:
        return Stage(name, root / name, configs[name], inputs, lambda: train(configs[name]))

    if config.zoo is not None:
        record = zoo_record(config)
        demonstrator = Stage("demonstrator", root / "demonstrator", record, (), lambda: record)
    else:
        demonstrator = trained("demonstrator", (), train_demonstrator)
    every = [
        demonstrator,
        trained("demos", ("demonstrator",), generate),
        trained("reward", ("demos",), train_reward),
        trained("agent-learned", ("reward",), train_agent),
        *([] if reuse else [trained("agent-true", (), train_agent)]),
        Stage(
            "evaluation",
            root / "evaluation",
            {"evaluation": dataclasses.asdict(config.evaluation), "seed": config.seed},
            ("demos", "agent-learned", "demonstrator" if reuse else "agent-true"),
            lambda: evaluate_policies(config, root),
        ),
    ]
    return [stage for stage in every if runs_stage(config, stage.name)]


def plan(all_stages: list[Stage], root: Path) -> dict[str, tuple[dict, str, dict | None]]:
    """Per stage: ``(settings, digest, record)`` where record is its finished run's, if any.

    Raises a UserError before any work when a finished stage ran with settings other than today's (a stage's
    settings include the digests of the stages it reads from, so a change upstream reaches it too).
    """
    planned: dict[str, tuple[dict, str, dict | None]] = {}
    renamed: dict[str, str] = {}  # digests of records in an older form that match today's settings -> today's
    for stage in all_stages:
        settings = stage_settings(stage, {name: planned[name][1] for name in stage.inputs})
        today = digest(settings)
        record = read_record(root / "stages" / f"{stage.name}.json")
        if record is not None and record["digest"] != today:
            old = record["settings"]
            if upgrade_settings(old, renamed, settings, stage.config) != settings:
                changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
                raise UserError(
                    f"{stage.name}: {stage.folder} was made with other settings (changed: {', '.join(changed[:4])}"
                    f"{', ...' if len(changed) > 4 else ''}); use another dir= or remove {stage.folder} and "
                    f"{root / 'stages' / stage.name}.json to redo it"
                )
            renamed[record["digest"]] = today
            record = {**record, "digest": today, "settings": settings}
        planned[stage.name] = settings, today, record
    return planned


def run_pipeline(config: Config) -> Path:
    """Run every stage that is not finished with the same settings; write the report; returns ``report.md``."""
    root = Path(config.dir)
    all_stages = stages(config)
    check_devices(config)
    check_is_experiment(root)
    with FolderLock(root, "dir"):
        save_config(config, root / "config.yaml")
        times = run_recorded(all_stages, root)
        start = time.monotonic()
        path = write_report(config, root, times)
        print(f"report: {path} (written in {time.monotonic() - start:.0f} s)", file=sys.stderr)
        return path


def check_devices(config: Config) -> None:
    """Every stage's device, checked before the first stage runs (a stage would refuse it only when it starts)."""
    for section in STAGE_SECTIONS:
        pick_device(operator.attrgetter(section)(config).device, f"{section}.device")


def check_is_experiment(root: Path) -> None:
    """Refuse a folder that holds something other than a pipeline experiment (a training run, a demo folder...):
    the pipeline would write its stages among those files."""
    if not root.is_dir():
        return
    entries = {p.name for p in root.iterdir()} - {".lock", ".lock.owner"}
    saved = root / "config.yaml"
    is_experiment = (root / "stages").is_dir() or (saved.is_file() and {"reward", "agent"} <= read_yaml(saved).keys())
    if entries and not is_experiment:
        raise UserError(f"dir: {root} holds files that are not a T-REX experiment (e.g. {sorted(entries)[0]}); "
                        "choose another dir")  # fmt: skip


def run_recorded(all_stages: list[Stage], root: Path) -> dict[str, float]:
    """Run every stage not finished with today's settings, each leaving ``<root>/stages/<name>.json``; returns each
    stage's seconds (a skipped stage's from its record)."""
    planned = plan(all_stages, root)
    times: dict[str, float] = {}
    for number, stage in enumerate(all_stages, 1):
        settings, stage_digest, record = planned[stage.name]
        if record is not None:
            print(f"[{number}/{len(all_stages)}] {stage.name}: done with these settings, skipped", file=sys.stderr)
            times[stage.name] = record["elapsed_s"]
            continue
        print(f"[{number}/{len(all_stages)}] {stage.name} ...", file=sys.stderr)
        start = time.monotonic()
        stage.run()
        times[stage.name] = time.monotonic() - start
        record = {"digest": stage_digest, "elapsed_s": times[stage.name], "settings": settings}
        atomic_write_text(root / "stages" / f"{stage.name}.json", json.dumps(record, indent=1, default=str) + "\n")
    return times


DESCRIPTION = """Run the whole T-REX experiment: a PPO demonstrator and its checkpoint series, demonstrations on a few
training levels, a reward model learned from their ranking, an agent on the learned reward and one on the true reward,
all evaluated on held-out levels, and report.md. Finished stages are skipped and an interrupted one resumes."""


@main_guard
def main(argv: list[str] | None = None) -> None:
    parser = config_parser(
        "python -m experiments.pipeline",
        DESCRIPTION,
        Config,
        "python -m experiments.pipeline -c configs/quickstart.yaml dir=experiments/coinrun env.game=coinrun",
    )
    args = parser.parse_args(argv)
    config = load_config(Config, args.config, args.overrides)
    path = run_pipeline(config)
    print(path.read_text().split("## Reward model")[0].rstrip())
    print(f"done: {path}")


if __name__ == "__main__":
    main()
