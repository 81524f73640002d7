"""Bad inputs found by bench/bad_inputs.py: each is one line naming the culprit, and nothing earlier is lost."""

from __future__ import annotations

import shutil

import pytest
import torch

from baseline_agent import zoo
from experiments.pipeline import Config as PipelineConfig
from experiments.pipeline import check_devices, check_is_experiment
from procgen_common.agents import load_agent
from procgen_common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import ConfigError, load_config
from tests.conftest import REPO, assert_one_line_error, run_cli
from tests.trex.conftest import write_synthetic_demos
from trex.demos import DemoSet, load_demo
from trex.reward_net import RewardNetConfig, load_reward_net, save_untrained_reward_net


def test_checkpoints_with_nan_weights_or_an_unknown_game_are_refused(tiny_run, tmp_path):
    checkpoint = load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    name = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][name][0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", checkpoint)
    with pytest.raises(CheckpointError, match=rf"nan.pt: weight {name} holds NaN or infinite values"):
        load_agent(tmp_path / "nan.pt")
    checkpoint = load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    checkpoint["config"]["env"]["game"] = "notagame"
    save_checkpoint(tmp_path / "game.pt", checkpoint)
    with pytest.raises(CheckpointError, match="game.pt has no usable env config .*unknown Procgen game 'notagame'"):
        load_agent(tmp_path / "game.pt")
    reward = save_untrained_reward_net(tmp_path / "reward.pt", RewardNetConfig(), "starpilot")
    saved = load_checkpoint(reward)
    next(iter(saved["model"].values())).fill_(float("inf"))
    save_checkpoint(reward, saved)
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        load_reward_net(reward)


def test_a_truncated_demo_file_is_one_line(tmp_path):
    folder = write_synthetic_demos(tmp_path / "demos", 2, 1)
    path = folder / DemoSet.open(folder).infos[0].file
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match=r"is not a readable demo file"):
        load_demo(path)


def test_a_demo_found_truncated_while_scoring_wipes_the_progress_bar_before_its_one_line(tmp_path):
    folder = write_synthetic_demos(tmp_path / "demos", 2, 3)
    path = folder / DemoSet.open(folder).split("test")[-1].file
    path.write_bytes(path.read_bytes()[:200])
    model = save_untrained_reward_net(tmp_path / "reward.pt", RewardNetConfig(), "starpilot")
    args = ["-m", "trex.evaluate_reward", "--device", "cpu", "--out", str(tmp_path / "eval"), str(model), str(folder)]
    result = run_cli(args, cwd=REPO)
    assert result.returncode == 2
    assert "evaluating reward" in result.stderr  # the bar was drawn, then wiped
    assert_one_line_error(result.stderr, path.name, "is not a readable demo file")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_a_zoo_export_from_a_corrupt_run_leaves_the_zoo_as_it_was(tiny_run, tmp_path):
    files = zoo.export_series(tiny_run, tmp_path / "zoo" / "starpilot", keep_every=1)
    before = {p.name: p.read_bytes() for p in files}
    broken = tmp_path / "runs" / "starpilot"
    shutil.copytree(tiny_run / "checkpoints", broken / "checkpoints")
    last = sorted((broken / "checkpoints").glob("step_*.pt"))[-1]
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        zoo.export_series(broken, tmp_path / "zoo" / "starpilot", keep_every=2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "zoo" / "starpilot").iterdir()} == before


def test_the_zoo_table_of_a_missing_folder_or_a_corrupt_record_is_one_line(tmp_path):
    with pytest.raises(UserError, match="--zoo-dir: .*missing is not a folder"):
        zoo.table_lines(tmp_path / "missing")
    (tmp_path / "starpilot").mkdir()
    (tmp_path / "starpilot" / "evaluation.json").write_bytes(b'{"checkpoints": [\xe9')
    with pytest.raises(UserError, match="evaluation.json is not a zoo evaluation record"):
        zoo.table_lines(tmp_path)


def test_the_pipeline_refuses_an_empty_dir_a_foreign_folder_and_an_absent_device_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="dir: empty"):
        load_config(PipelineConfig, "configs/quickstart.yaml", ["dir="])
    run = tmp_path / "run"
    run.mkdir()
    (run / "progress.csv").write_text("step\n")
    with pytest.raises(
        UserError, match=r"dir: .*run holds files that are not a T-REX experiment \(e.g. progress.csv\)"
    ):
        check_is_experiment(run)
    check_is_experiment(tmp_path / "new")  # a new folder is fine
    if not torch.cuda.is_available():
        config = load_config(
            PipelineConfig, "configs/quickstart.yaml", [f"dir={tmp_path}/e", "agent.train.device=cuda"]
        )
        with pytest.raises(UserError, match="agent.train.device: cuda was asked for"):
            check_devices(config)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "baseline_agent.train", "--frobnicate"],
        ["-m", "experiments.pipeline", "-c"],
        ["-m", "trex.evaluate_reward", "--seed", "inf", "model", "demos"],
    ],
)
def test_unknown_or_malformed_options_are_one_line_without_usage(args, tmp_path):
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, args[2] if args[2] != "-c" else "-c/--config")
