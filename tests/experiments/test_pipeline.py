"""The one-command T-REX pipeline on a tiny config: every artifact, the report, skipping and resuming stages,
stopping after a stage (until)."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from experiments.pipeline import STAGE_NAMES, Config, best_demonstrator, digest, run_pipeline
from procgen_common.cli import UserError
from procgen_common.config import ConfigError, load_config
from tests.conftest import REPO, assert_one_line_error, run_cli
from trex.demos import read_index

PPO = [
    "model.arch=nature",
    "model.hidden_size=32",
    "ppo.num_steps=32",
    "ppo.num_epochs=1",
    "ppo.num_minibatches=2",
    "train.device=cpu",
    "train.torch_threads=1",
    "log.tensorboard=false",
]


def tiny_pipeline(folder, *extra: str) -> list[str]:
    """Overrides for a pipeline of a few seconds per stage: 4 envs, 2 PPO updates, a 2-checkpoint ladder."""
    return [
        f"dir={folder}",
        "zoo=null",  # the quickstart's zoo demonstrator is replaced by a tiny trained one
        "demos.epsilon=0.0",
        "demos.episodes_per_level=1",
        "env.num_envs=4",
        "env.num_levels=20",
        "env.num_threads=0",
        *(f"demonstrator.{o}" for o in PPO),
        "demonstrator.train.total_steps=256",
        "demonstrator.train.num_checkpoints=2",
        "demonstrator.eval.every_steps=0",
        "demos.num_train_levels=6",
        "demos.num_test_levels=3",
        "demos.max_length=200",
        "demos.num_envs=4",
        "demos.device=cpu",
        "demos.torch_threads=1",
        "reward.data.num_demos=null",
        "reward.data.min_len=4",
        "reward.data.max_len=8",
        "reward.data.pairs_per_epoch=16",
        "reward.data.val_pairs=8",
        "reward.data.val_fraction=0.4",
        "reward.train.epochs=1",
        "reward.train.device=cpu",
        "reward.train.torch_threads=1",
        "reward.eval.num_traces=2",
        "reward.log.tensorboard=false",
        *(f"agent.{o}" for o in PPO),
        "agent.train.total_steps=128",
        "agent.train.num_checkpoints=1",
        "agent.eval.every_steps=0",
        "evaluation.episodes=4",
        "evaluation.num_envs=4",
        *extra,
    ]


def run_tiny(folder, *extra: str):
    config = load_config(Config, REPO / "configs" / "quickstart.yaml", tiny_pipeline(folder, *extra))
    try:
        return run_pipeline(config)
    finally:
        torch.set_num_threads(1)  # the stages set the process-wide thread count


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline") / "exp"
    run_tiny(folder)
    return folder


def test_every_stage_leaves_its_artifacts_and_the_report_shows_them(experiment):
    assert sorted(p.stem for p in (experiment / "stages").glob("*.json")) == sorted(STAGE_NAMES)
    assert len(list((experiment / "demonstrator" / "checkpoints").glob("step_*.pt"))) == 2
    index = (experiment / "demos" / "index.csv").read_text().splitlines()
    assert len(index) == 1 + 2 * (6 + 3)  # 2 checkpoints x (6 training + 3 held-out levels)
    assert (experiment / "reward" / "reward_net.pt").is_file()
    for run in ("agent-learned", "agent-true"):
        assert (experiment / run / "checkpoints" / "latest.pt").is_file()
    learned_config = (experiment / "agent-learned" / "config.yaml").read_text()
    assert "source: learned" in learned_config and str(experiment / "reward") in learned_config

    rows = json.loads((experiment / "evaluation" / "summary.json").read_text())
    assert list(rows) == ["random", "best demonstrator", "agent, true reward", "agent, learned reward"]
    for row in rows.values():
        assert row["episodes"] == 4 and row["held_out"] and row["level_range"]["start_level"] == 20
        assert sorted(row["level_seeds"]) == sorted(rows["random"]["level_seeds"])  # the same held-out episodes
    metrics = json.loads((experiment / "reward" / "eval" / "metrics.json").read_text())

    report = (experiment / "report.md").read_text()
    for policy, row in rows.items():
        line = next(line for line in report.splitlines() if line.startswith(f"| {policy}"))
        assert f"{row['mean_return']:.2f} [" in line
    spearman = metrics["episode_length"]["spearman"]
    length_row = next(line for line in report.splitlines() if line.startswith("| episode length"))
    assert (f"{spearman:.3f}" if spearman is not None else "n/a") in length_row
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (experiment / figure).is_file(), figure
    assert "report/learning_curves-starpilot.png" in report
    # The quickstart centres the agent's reward on the mean the reward model recorded (reward.center).
    mean = torch.load(experiment / "reward" / "reward_net.pt", weights_only=True)["reward_per_frame"]["mean"]
    assert f"its reward less the model's mean reward per frame on its training demos, {mean:.3f}" in report


def test_the_same_settings_give_the_same_tables(experiment, tmp_path):
    again = tmp_path / "again"
    run_tiny(again)

    def tables(folder):
        text = (folder / "report.md").read_text().replace(str(folder), "<dir>")
        return text[text.index("## Held-out levels") : text.index("## Stage wall times")]

    assert tables(again) == tables(experiment)
    for name in ("evaluation/summary.json", "reward/generalization.json"):
        a, b = (json.loads((f / name).read_text().replace(str(f), "<dir>")) for f in (experiment, again))
        assert a == b, name


def test_a_second_run_skips_every_finished_stage(experiment, capfd):
    checkpoints = sorted((experiment / "demonstrator" / "checkpoints").glob("*.pt"))
    before = {p: p.stat().st_mtime_ns for p in checkpoints}
    capfd.readouterr()
    run_tiny(experiment)
    err = capfd.readouterr().err
    assert err.count("skipped") == len(STAGE_NAMES)
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == before


def test_an_unfinished_stage_reruns_and_the_rest_is_skipped(experiment, capfd):
    (experiment / "stages" / "agent-true.json").unlink()
    capfd.readouterr()
    run_tiny(experiment)
    err = capfd.readouterr().err
    assert "agent-true ..." in err and err.count("skipped") == len(STAGE_NAMES) - 1
    assert (experiment / "stages" / "agent-true.json").is_file()


def test_a_changed_setting_stops_before_any_work_and_keeps_the_results(experiment):
    reward = (experiment / "reward" / "reward_net.pt").read_bytes()
    with pytest.raises(Exception, match=r"^reward: .* other settings \(changed: train\.epochs\)") as err:
        run_tiny(experiment, "reward.train.epochs=2")
    assert type(err.value).__name__ == "UserError"
    assert (experiment / "reward" / "reward_net.pt").read_bytes() == reward


def test_a_setting_added_since_a_stage_finished_leaves_it_finished_at_its_default(experiment, capfd):
    """Records written before reward.data.min_gap existed (each later stage's record holds its inputs' digests, so
    they all change): the rerun skips every stage; the new key at another value is a changed setting."""
    renamed = {}
    for name in STAGE_NAMES:
        path = experiment / "stages" / f"{name}.json"
        record = json.loads(path.read_text())
        old = {k: renamed.get(v, v) if k.startswith("<") else v for k, v in record["settings"].items()}
        if name == "reward":
            del old["data.min_gap"]
        renamed[record["digest"]] = digest(old)
        path.write_text(json.dumps({**record, "digest": digest(old), "settings": old}))
    changed = [name for name, (before, after) in zip(STAGE_NAMES, renamed.items(), strict=True) if before != after]
    assert changed == ["reward", "agent-learned", "evaluation"]  # the reward stage and those that read from it
    capfd.readouterr()
    run_tiny(experiment)
    assert capfd.readouterr().err.count("skipped") == len(STAGE_NAMES)
    with pytest.raises(UserError, match=r"^reward: .* other settings \(changed: data\.min_gap\)"):
        run_tiny(experiment, "reward.data.min_gap=1")


def test_a_change_upstream_makes_every_later_stage_stale(experiment):
    with pytest.raises(Exception, match=r"^demos: .*changed: max_length"):
        run_tiny(experiment, "demos.max_length=50")


def test_the_demonstrator_is_the_true_reward_agent_when_their_settings_match(tmp_path):
    folder = tmp_path / "exp"
    run_tiny(folder, "agent.train.total_steps=256")  # now the agent is the demonstrator's PPO, settings and budget
    assert not (folder / "agent-true").exists()
    assert sorted(p.stem for p in (folder / "stages").glob("*.json")) == sorted(set(STAGE_NAMES) - {"agent-true"})
    rows = json.loads((folder / "evaluation" / "summary.json").read_text())
    assert rows["agent, true reward"]["checkpoint"] == str(folder / "demonstrator" / "checkpoints" / "latest.pt")
    assert "the demonstrator itself is that agent" in (folder / "report.md").read_text()


def test_until_reward_stops_after_the_reward_model_and_a_rerun_without_it_runs_the_rest(tmp_path, capfd):
    """until=reward: demonstrator, demos and reward model, a report of their results without a policy table; the
    same folder run later without until runs only the agents and the evaluation (until is no stage's setting)."""
    folder = tmp_path / "exp"
    run_tiny(folder, "until=reward")
    records = sorted((folder / "stages").glob("*.json"))
    assert [p.stem for p in records] == ["demonstrator", "demos", "reward"]
    assert not any((folder / name).exists() for name in ("agent-learned", "agent-true", "evaluation"))
    report = (folder / "report.md").read_text()
    assert "## Held-out levels" not in report and "| policy |" not in report
    assert "**Not run (until=reward)**: agent-learned, agent-true, evaluation, so this report has no held-out" in report
    scores = json.loads((folder / "reward" / "generalization.json").read_text())
    for key, label in (("learned", "learned return"), ("episode_length", "episode length")):
        inside, outside = (scores[split][key]["spearman"] for split in ("in_distribution", "held_out"))
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        assert row.startswith(f"| {label} | {inside:.3f} | {outside:.3f} |")  # beside the baselines
    assert "the demonstrations" in report.lower() and "step_000000256" in report  # the ladder and its rungs
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (folder / figure).is_file(), figure
    assert "reward_hacking" not in report

    before = {p: (p.read_text(), p.stat().st_mtime_ns) for p in records}
    capfd.readouterr()
    run_tiny(folder)
    err = capfd.readouterr().err
    assert err.count("skipped") == 3 and all(f"{name} ..." in err for name in STAGE_NAMES[3:])
    assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in records} == before  # the finished stages untouched
    assert sorted(p.stem for p in (folder / "stages").glob("*.json")) == sorted(STAGE_NAMES)
    report = (folder / "report.md").read_text()
    assert "## Held-out levels" in report and "Not run" not in report


def test_an_unknown_until_is_one_line_naming_the_stages(tmp_path):
    result = run_cli(["-m", "experiments.pipeline", "-c", "configs/quickstart.yaml", f"dir={tmp_path}",
                      "until=bogus"], REPO)  # fmt: skip
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "until", "'bogus'", *(f"'{name}'" for name in STAGE_NAMES))
    assert not (tmp_path / "stages").exists()


def test_keys_the_pipeline_sets_are_refused():
    with pytest.raises(ConfigError, match=r"agent\.reward\.model: set by the pipeline"):
        load_config(Config, None, ["agent.reward.model=x"])
    with pytest.raises(ConfigError, match=r"demonstrator\.env: set by the pipeline \(from env\.\*\)"):
        load_config(Config, None, ["demonstrator.env.game=coinrun"])


def test_the_learned_reward_agent_reads_the_reward_keys_and_the_true_reward_agent_none():
    from experiments.pipeline import stage_configs
    from policies.reward_wrapper import RewardConfig as AgentReward

    config = load_config(Config, REPO / "configs" / "quickstart.yaml", ["dir=exp", "agent.reward.offset=0.5"])
    agents = {name: c for name, c in stage_configs(config).items() if name.startswith("agent")}
    learned, true = agents["agent-learned"], agents["agent-true"]
    assert (learned.reward.source, learned.reward.model, learned.reward.offset) == ("learned", "exp/reward", 0.5)
    assert true.reward == AgentReward()  # the game's reward, which no other reward.* key would change
    assert (learned.run.dir, true.run.dir) == ("exp/agent-learned", "exp/agent-true")
    assert dataclasses.replace(true, reward=learned.reward, run=learned.run) == learned  # nothing else differs


def test_cli_reports_a_bad_stage_setting_in_one_line(tmp_path):
    result = run_cli(
        [
            "-m",
            "experiments.pipeline",
            "-c",
            "configs/quickstart.yaml",
            f"dir={tmp_path}",
            "agent.ppo.num_minibatches=7",
        ],
        REPO,
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "agent.ppo.num_minibatches", "must divide")
    assert not (tmp_path / "stages").exists()


def test_a_zoo_demonstrator_is_recorded_not_trained(experiment, tmp_path):
    from baseline_agent import zoo

    series = zoo.export_series(experiment / "demonstrator", tmp_path / "zoo" / "starpilot", keep_every=1)
    folder = tmp_path / "exp"
    options = ("demos.epsilon=[1.0,0.0]", "reward.data.rank_by=noise", "agent.train.total_steps=1024")  # episodes end
    run_tiny(folder, f"zoo={tmp_path / 'zoo' / 'starpilot'}", *options)
    record = json.loads((folder / "stages" / "demonstrator.json").read_text())
    assert record["settings"]["zoo"] == str(tmp_path / "zoo" / "starpilot")
    assert sorted(k.removeprefix("files.") for k in record["settings"] if k.startswith("files.")) == sorted(
        f"starpilot/{f.name}" for f in series
    )
    assert not (folder / "demonstrator").exists() and not (folder / "agent-true").exists()  # nothing trained
    rows = json.loads((folder / "evaluation" / "summary.json").read_text())
    assert rows["agent, true reward"]["checkpoint"] == str(series[-1])  # the series' final checkpoint is the reference
    # The best demonstration is a rung, (checkpoint, epsilon), evaluated as it played its demos.
    train = [i for i in read_index(folder / "demos") if i.split == "train"]
    rungs = {(i.checkpoint, i.epsilon) for i in train}
    means = {r: np.mean([i.episode_return for i in train if (i.checkpoint, i.epsilon) == r]) for r in rungs}
    best = best_demonstrator(folder / "demos")
    assert len(rungs) == 2 * len(series) and (best.file.stem, best.epsilon) in rungs
    assert best.train_mean == max(means.values()) == means[best.file.stem, best.epsilon]
    row = rows["best demonstrator"]
    assert (row["checkpoint"], row.get("epsilon", 0.0)) == (str(best.file), best.epsilon)
    report = (folder / "report.md").read_text()
    assert "demonstrators from the zoo" in report and "epsilon 1, 0" in report
    assert re.search(r"\| learned per-frame mean \| -?\d\.\d{3} \| -?\d\.\d{3} \|", report)
    assert "report/reward_hacking.png" in report and (folder / "report" / "reward_hacking.png").is_file()
    # Records written when zoo files were keyed by absolute path (every stage's digest then differs, as each
    # includes its inputs') are upgraded in place: the rerun finds every stage finished.
    renamed = {}
    for name in ("demonstrator", "demos", "reward", "agent-learned", "evaluation"):
        path = folder / "stages" / f"{name}.json"
        record = json.loads(path.read_text())
        old_form = {}
        for key, value in record["settings"].items():
            if key.startswith("files."):
                key = "files." + str(tmp_path / "zoo" / key.removeprefix("files."))
            old_form[key] = renamed.get(value, value) if key.startswith("<") else value
        renamed[record["digest"]] = digest(old_form)
        path.write_text(json.dumps({**record, "digest": digest(old_form), "settings": old_form}))
    assert digest(old_form) != record["digest"]
    agent_files = {p: p.stat().st_mtime_ns for p in (folder / "agent-learned").rglob("*") if p.is_file()}
    run_tiny(folder, f"zoo={tmp_path / 'zoo' / 'starpilot'}", *options)
    assert {p: p.stat().st_mtime_ns for p in (folder / "agent-learned").rglob("*") if p.is_file()} == agent_files
    # Another game's series is refused in one line before any work.
    with pytest.raises(UserError, match="zoo: .* plays starpilot \\(easy\\) but env.game is coinrun"):
        run_tiny(tmp_path / "other", f"zoo={tmp_path / 'zoo' / 'starpilot'}", "env.game=coinrun")
    assert not (tmp_path / "other").exists()


def test_the_quickstart_plays_a_committed_zoo_checkpoint_of_its_game():
    from experiments.pipeline import zoo_files

    config = load_config(Config, REPO / "configs" / "quickstart.yaml")
    files = zoo_files(config)  # the whole series, checked to play env.game
    assert config.zoo.removeprefix("zoo:") in {f"{f.parent.name}/{f.stem}" for f in files}
    assert config.reward.data.comparison == "snippet" and config.reward.data.start_prior
    assert len(config.demos.epsilons) == 5 and min(config.demos.epsilons) == 0.5  # clearly suboptimal demos
    assert config.reward.data.num_demos == 100 <= config.demos.num_train_levels * 5  # spread over many levels


@pytest.mark.parametrize("game", ["fruitbot", "starpilot"])
def test_an_impala_zoo_series_serves_its_game_and_is_refused_for_another(game):
    from experiments.pipeline import zoo_files

    def config(*overrides):
        return load_config(Config, REPO / "configs" / "quickstart.yaml", list(overrides))

    files = zoo_files(config(f"env.game={game}", f"zoo=zoo:{game}-impala/step_001753088"))
    assert [f.parent.name for f in files] == [f"{game}-impala"] * 6 and files[3].stem == "step_001753088"
    other = "starpilot" if game == "fruitbot" else "fruitbot"
    with pytest.raises(UserError, match=f"zoo: zoo:{game}-impala plays {game} \\(easy\\) but env.game is {other}"):
        zoo_files(config(f"env.game={other}", f"zoo=zoo:{game}-impala"))


def _demo(step: int, epsilon: float, ret: float):
    from types import SimpleNamespace

    return SimpleNamespace(checkpoint_step=step, epsilon=epsilon, episode_return=ret)


def test_the_ladder_check_finds_rising_rungs_and_advises_by_the_kind_of_ladder():
    from experiments.pipeline import ladder_check

    rising = [_demo(step, 0.0, step + noise) for step in (0, 10, 20) for noise in (0.0, 0.5, 1.0, 1.5) * 3]
    ok, sentence = ladder_check(rising)
    assert ok and sentence.startswith("The demonstrations form a ladder")
    flat = [_demo(step, 0.0, noise) for step in (0, 10) for noise in (0.0, 3.0, 1.0, 2.0)]
    ok, sentence = ladder_check(flat)
    assert not ok and "Warning" in sentence and "a noise ladder (demos.epsilon" in sentence and "n/a" in sentence
    noisy = [_demo(5, eps, noise) for eps in (1.0, 0.5) for noise in (0.0, 3.0, 1.0, 2.0)]
    ok, sentence = ladder_check(noisy)  # already a noise ladder: the advice is more demos or noise further apart
    assert not ok and "noise levels further apart" in sentence and "or a noise ladder" not in sentence
    assert ladder_check([_demo(5, 0.0, 1.0)] * 3) == (False, ladder_check([_demo(5, 0.0, 2.0)])[1])
