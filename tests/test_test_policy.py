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
