"""test_policy.py: held-out evaluation of a tiny run's checkpoint, its JSON + CSV, and bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, assert_one_line_error

SCRIPT = REPO / "test_policy.py"
TEST_START, TEST_NUM = 100, 50  # the tiny run's env.test_start_level / env.test_num_levels


def _load_script():
    spec = importlib.util.spec_from_file_location("test_policy_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


def test_held_out_evaluation_writes_json_and_csv(script, tiny_run, tmp_path, capsys):
    out = tmp_path / "x.json"
    checkpoint = tiny_run / "checkpoints" / "latest.pt"
    summary = script.main([str(checkpoint), "--episodes", "4", "--split", "test", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(summary))  # the returned summary is what was written
    assert data["episodes"] == 4
    assert data["split"] == "test"
    assert data["held_out"] is True
    assert data["step"] == 4 * 128 and data["algo"] == "ppo" and data["game"] == "starpilot"
    assert data["level_range"] == {"start_level": TEST_START, "num_levels": TEST_NUM}
    seeds = data["level_seeds"]
    assert len(seeds) == 4 and all(TEST_START <= s < TEST_START + TEST_NUM for s in seeds)
    low, high = data["ci95_return"]
    assert low <= data["mean_return"] <= high
    with out.with_suffix(".csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert [int(r["level_seed"]) for r in rows] == seeds
    assert sum(float(r["return"]) for r in rows) / 4 == pytest.approx(data["mean_return"])
    assert sum(int(r["length"]) for r in rows) / 4 == pytest.approx(data["mean_length"])
    assert "4 episodes" in capsys.readouterr().out


def test_run_folder_and_train_split(script, tiny_run, tmp_path):
    out = tmp_path / "train.json"
    summary = script.main(
        [str(tiny_run), "--episodes", "3", "--split", "train", "--num-envs", "2", "--deterministic", "--out", str(out)]
    )
    assert summary["checkpoint"] == str(tiny_run / "checkpoints" / "latest.pt")
    assert summary["held_out"] is False and summary["deterministic"] is True
    assert summary["episodes"] == 3
    assert all(0 <= s < 20 for s in summary["level_seeds"])  # the tiny run's training levels


@pytest.mark.parametrize("kind", ["missing", "folder", "text"])
def test_bad_path_exits_2_with_one_error_line(script, tmp_path, capsys, kind):
    if kind == "missing":
        path, needle = tmp_path / "nope.pt", "does not exist"
    elif kind == "folder":
        path, needle = tmp_path, "without checkpoints/latest.pt"
    else:
        path, needle = tmp_path / "notes.pt", "not a readable checkpoint"
        path.write_text("# these are notes, not weights\n")
    with pytest.raises(SystemExit) as info:
        script.main([str(path), "--episodes", "1", "--out", str(tmp_path / "o.json")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, str(path), needle)
    assert not (tmp_path / "o.json").exists()


def test_text_file_starting_with_pickle_opcode_exits_2(script, tmp_path, capsys):
    path = tmp_path / "notes.pt"
    path.write_text("hello world\n")
    with pytest.raises(SystemExit) as info:
        script.main([str(path), "--episodes", "1"])
    assert info.value.code == 2


def test_real_cli_bad_input_has_no_traceback(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("# these are notes, not weights\n")
    cases = {"missing": tmp_path / "missing.pt", "text": text}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(SCRIPT), str(path)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in cases.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert_one_line_error(err, str(cases[name]))


def test_bad_options_are_argparse_errors(script, tiny_run, tmp_path, capsys):
    (tmp_path / "folder.json").mkdir()
    for args in (
        ["--episodes", "0"],
        ["--num-envs", "0"],
        ["--out", str(tmp_path / "x.csv")],
        ["--out", str(tmp_path / "folder.json")],
        ["--device", "foo"],
        ["--epsilon", "1.5"],
        ["--epsilon", "nan"],
    ):
        with pytest.raises(SystemExit) as info:
            script.main([str(tiny_run), *args])
        assert info.value.code == 2
        assert args[0] in capsys.readouterr().err


def test_an_evaluation_plays_the_same_episodes_whatever_ran_before(tiny_run, tmp_path):
    import torch

    from procgen_common.evaluation import evaluate_checkpoint

    first, _ = evaluate_checkpoint(tiny_run, "test", 4, seed=3, num_envs=2, out=tmp_path / "a.json")
    torch.rand(1000)  # other work moves torch's global generator on
    second, _ = evaluate_checkpoint(tiny_run, "test", 4, seed=3, num_envs=2, out=tmp_path / "b.json")
    assert (first["mean_return"], first["level_seeds"]) == (second["mean_return"], second["level_seeds"])
    assert json.loads((tmp_path / "a.json").read_text())["mean_length"] == second["mean_length"]


def test_epsilon_plays_the_agent_as_a_noise_ladder_rung(script, tiny_run, tmp_path, capsys):
    def play(name: str, *options: str) -> dict:
        out = str(tmp_path / name)
        return script.main([str(tiny_run), "--episodes", "6", "--num-envs", "3", "--out", out, *options])

    plain = play("a.json")
    assert "epsilon" not in plain and "epsilon" not in capsys.readouterr().out.splitlines()[0]
    noisy = play("b.json", "--epsilon", "1")
    assert capsys.readouterr().out.splitlines()[0].endswith(", epsilon 1")
    assert noisy["epsilon"] == json.loads((tmp_path / "b.json").read_text())["epsilon"] == 1.0
    again = play("c.json", "--epsilon", "1")
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "c.csv").read_text()  # the noise is seeded
    assert again["mean_return"] == noisy["mean_return"]
    assert (tmp_path / "a.csv").read_text() != (tmp_path / "b.csv").read_text()  # and changes the episodes


# A multi-game agent: a tiny run on coinrun and starpilot with two held-out splits, test = levels [20, 70) (right after
# the training levels [0, 20)) and test@300 = [300, 350).
MULTI_SPLITS = {"test": 20, "test@300": 300}


@pytest.fixture(scope="module")
def multi_game_run(tmp_path_factory):
    from tests.conftest import train_tiny

    run_dir = tmp_path_factory.mktemp("multi") / "run"
    return train_tiny(
        run_dir, "env.games=[coinrun,starpilot]", f"env.test_num_levels={TEST_NUM}", "env.test_splits=[300]"
    )


def test_a_multi_game_agent_is_evaluated_per_game_on_every_held_out_split(script, multi_game_run, tmp_path, capsys):
    from procgen_common.env import normalized_score

    argv = [str(multi_game_run), "--split", "held-out", "--episodes", "2", "--num-envs", "2"]
    summaries = script.main([*argv, "--out", str(tmp_path / "mg.json")])
    assert [s["split"] for s in summaries] == list(MULTI_SPLITS)
    for split, start in MULTI_SPLITS.items():
        data = json.loads((tmp_path / f"mg-{split}.json").read_text())
        assert data["split"] == split and data["held_out"] is True and data["game"] == "coinrun+starpilot"
        assert data["level_range"] == {"start_level": start, "num_levels": TEST_NUM}
        assert data["episodes"] == 4 and set(data["per_game"]) == {"coinrun", "starpilot"}
        for game, row in data["per_game"].items():
            low, high = row["ci95_return"]
            assert row["episodes"] == 2 and low <= row["mean_return"] <= high
            assert row["normalized_score"] == pytest.approx(normalized_score(row["mean_return"], game, "easy"))
        scores = [row["normalized_score"] for row in data["per_game"].values()]
        assert data["normalized_score"] == pytest.approx(sum(scores) / 2)
        low, high = data["ci95_normalized_score"]
        assert low <= data["normalized_score"] <= high
        assert len(data["level_seeds"]) == 4 and all(start <= s < start + TEST_NUM for s in data["level_seeds"])
        with (tmp_path / f"mg-{split}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["game"] for r in rows) == ["coinrun", "coinrun", "starpilot", "starpilot"]
        assert [int(r["level_seed"]) for r in rows] == data["level_seeds"]
    lines = capsys.readouterr().out.splitlines()
    # One table per split: a row per game and the mean normalised score.
    for start in ("  coinrun ", "  starpilot ", "  mean normalised score "):
        assert sum(line.startswith(start) for line in lines) == 2, start
    assert sum("2 episodes of each game" in line for line in lines) == 2


def test_games_restricts_a_multi_game_agent_to_some_of_its_games(script, multi_game_run, capsys):
    summary = script.main([str(multi_game_run), "--split", "test@300", "--games", "starpilot", "--episodes", "2"])
    assert summary["game"] == "starpilot" and "per_game" not in summary and summary["episodes"] == 2
    assert all(300 <= s < 300 + TEST_NUM for s in summary["level_seeds"])
    out = multi_game_run / "eval" / "latest-test@300-starpilot.json"  # beside, not over, the all-games evaluation
    assert json.loads(out.read_text())["mean_return"] == summary["mean_return"]
    assert "  return      " in capsys.readouterr().out  # one game: the single-game printout


@pytest.mark.parametrize(
    "case, argv, needles",
    [
        ("multi", ["--split", "test@301"], ["'test@301'", "choose one of train, test, test@300, all, held-out"]),
        ("multi", ["--split", "validation"], ["'validation'", "choose one of train, test, test@300, all, held-out"]),
        ("single", ["--split", "test@300"], ["'test@300'", "choose one of train, test, all, held-out"]),
        ("multi", ["--games", "starpilot", "fruitbot"], ["--games", "fruitbot", "its games are coinrun, starpilot"]),
        ("single", ["--games", "coinrun"], ["--games", "coinrun", "its games are starpilot"]),
    ],
    ids=["unknown-held-out-split", "unknown-split", "single-game-no-test-splits", "game-not-learned", "single-game"],
)
def test_a_split_or_game_the_agent_lacks_is_one_line(
    script, tiny_run, multi_game_run, tmp_path, capsys, case, argv, needles
):
    run = multi_game_run if case == "multi" else tiny_run
    with pytest.raises(SystemExit) as info:
        script.main([str(run), *argv, "--episodes", "1", "--out", str(tmp_path / "o.json")])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert not list(tmp_path.iterdir())


def test_help_documents_every_option(script, capsys):
    import re

    with pytest.raises(SystemExit) as info:
        script.parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    source = SCRIPT.read_text().split("def parse_args")[1].split("args = parser.parse_args")[0]
    for option in set(re.findall(r'"(--[a-z-]+)"', source)):
        assert option in text, option
    for split in ("train", "test@SEED", "held-out", "all"):
        assert split in text, split
