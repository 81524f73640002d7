"""Bad input through the commands: one line on stderr naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, assert_one_line_error, run_cli
from tests.trex.conftest import write_synthetic_demos


def _fails(args: list[str], *needles: str) -> None:
    result = run_cli(args, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, *needles)


def test_demo_folder_from_another_game(reward_run, tmp_path):
    fruitbot = write_synthetic_demos(tmp_path / "fruit", 0, 3, game="fruitbot")
    _fails(["-m", "trex.evaluate_reward", str(reward_run), str(fruitbot)], "fruitbot", "starpilot", str(fruitbot))


def test_empty_demo_folder(tmp_path):
    _fails(["-m", "trex.train_reward", f"data.demos={tmp_path}"], str(tmp_path), "holds no demos")


@pytest.mark.parametrize("module", ["trex.generate_demos", "trex.evaluate_reward"])
def test_a_checkpoint_that_is_not_one(module, tmp_path):
    junk = tmp_path / "step_000000001.pt"
    junk.write_text("not a checkpoint")
    args = (
        [f"checkpoints={junk}", f"out_dir={tmp_path}/demos"]
        if module == "trex.generate_demos"
        else [str(junk), str(tmp_path)]
    )
    _fails(["-m", module, *args], str(junk), "not a readable checkpoint")


def test_min_len_above_max_len():
    _fails(
        ["-m", "trex.train_reward", "data.demos=x", "data.min_len=60", "data.max_len=50"],
        "data.min_len",
        "60",
        "max_len 50",
    )


def test_presets_load():
    from procgen_common.config import load_config
    from trex import generate_demos, train_reward

    demos = load_config(generate_demos.Config, REPO / "configs" / "trex-cpu.yaml")
    assert demos.num_train_levels == 10 and demos.episodes_per_level == 1
    reward = load_config(train_reward.Config, REPO / "configs" / "trex-reward-cpu.yaml")
    assert reward.reward_net.arch == "trex" and not reward.data.start_prior
