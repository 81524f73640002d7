"""Bad settings for baseline_agent.train: load_config errors, and the CLI's one-line exit-2 reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from baseline_agent.train import Config, main
from procgen_common.config import ConfigError, load_config
from procgen_common.env import GAMES
from tests.conftest import assert_one_line_error

# (overrides, words the error must contain): each must fail before any training starts.
BAD_OVERRIDES = {
    "unknown-key": (["trian.seed=1"], ["unknown key 'trian'", "did you mean 'train'"]),
    "unknown-section-key": (
        ["env.gmae=coinrun"],
        ["unknown key 'env.gmae'", "did you mean 'env.game'", "allowed under env"],
    ),
    "not-an-int": (["env.num_envs=abc"], ["env.num_envs", "expected int", "'abc'"]),
    "not-a-bool": (["train.resume=maybe"], ["train.resume", "expected bool", "'maybe'"]),
    "zero-envs": (["env.num_envs=0"], ["env.num_envs", "out of range", ">= 1"]),
    "gamma-above-one": (["ppo.gamma=1.5"], ["ppo.gamma", "out of range", "[0.0, 1.0]"]),
    "bad-arch": (["model.arch=resnet"], ["model.arch", "'resnet' is not allowed", "impala, nature"]),
    "unknown-game": (["env.game=starpilt"], ["env.game", "'starpilt'", "did you mean 'starpilot'", *GAMES]),
    "overlapping-test-split": (
        ["env.num_levels=200", "env.test_start_level=150"],
        ["env.test_start_level", "[150, 1150)", "[0, 200)"],
    ),
    "minibatches-do-not-divide": (
        ["env.num_envs=4", "ppo.num_steps=32", "ppo.num_minibatches=3"],
        ["ppo.num_minibatches", "3", "128"],
    ),
    "bad-eval-split": (["eval.splits=[valid]"], ["eval.splits", "'valid'"]),
    "section-as-value": (["env=coinrun"], ["env", "expected a mapping"]),
    "no-equals": (["env.game"], ["env.game", "key=value"]),
}

BAD_FILES = {
    "missing-file": (None, ["does not exist"]),
    "invalid-yaml": ("env:\n  game: [coinrun\nmodel: {}\n", ["not valid YAML at line"]),
    "yaml-list": ("- env.game=coinrun\n- model.arch=nature\n", ["must hold a mapping", "list"]),
    "bad-value-in-file": ("env:\n  num_envs: -2\n", ["env.num_envs", "out of range"]),
}


def _config_file(tmp_path: Path, text: str | None) -> Path:
    path = tmp_path / "preset.yaml"
    if text is not None:
        path.write_text(text)
    return path


@pytest.mark.parametrize("case", BAD_OVERRIDES)
def test_bad_overrides_raise_config_error(case):
    overrides, needles = BAD_OVERRIDES[case]
    with pytest.raises(ConfigError) as info:
        load_config(Config, None, overrides)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_config_error(case, tmp_path):
    text, needles = BAD_FILES[case]
    path = _config_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(Config, path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("case", BAD_OVERRIDES)
def test_main_reports_bad_overrides_in_one_line(case, tmp_path, capsys):
    overrides, needles = BAD_OVERRIDES[case]
    with pytest.raises(SystemExit) as info:
        main([*overrides, f"run.dir={tmp_path / 'run'}"])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.parametrize("case", BAD_FILES)
def test_main_reports_bad_files_in_one_line(case, tmp_path, capsys):
    text, needles = BAD_FILES[case]
    path = _config_file(tmp_path, text)
    with pytest.raises(SystemExit) as info:
        main(["-c", str(path)])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, str(path), *needles)


def test_real_cli_reports_bad_settings_in_one_line(tmp_path):
    """A few cases through `python -m baseline_agent.train`, run side by side to save time."""
    cases = {
        name: BAD_OVERRIDES[name]
        for name in ("unknown-section-key", "not-an-int", "unknown-game", "overlapping-test-split")
    }
    invalid = _config_file(tmp_path, BAD_FILES["invalid-yaml"][0])
    commands = {name: [*overrides] for name, (overrides, _) in cases.items()}
    commands["invalid-yaml"] = ["-c", str(invalid), "train.seed=1"]
    needles = {name: n for name, (_, n) in cases.items()} | {"invalid-yaml": [str(invalid), "not valid YAML"]}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "baseline_agent.train", *args, f"run.dir={tmp_path / name}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert_one_line_error(err, *needles[name])
        assert out == ""
        assert not (tmp_path / name).exists()


HELP_KEYS = [
    "env.game",
    "env.num_envs",
    "env.num_levels",
    "env.start_level",
    "env.distribution_mode",
    "model.arch",
    "train.total_steps",
    "train.seed",
    "train.num_checkpoints",
    "train.save_interval_minutes",
    "train.resume",
    "eval.every_steps",
    "eval.episodes",
    "run.dir",
]


def test_help_lists_every_key_with_its_docstring(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for key in HELP_KEYS:
        documented = [line for line in lines if line.strip().startswith(f"{key} (")]
        assert len(documented) == 1, key
        # "key (type, default value): docstring" with a non-empty docstring
        assert documented[0].split("): ", 1)[1].strip(), documented[0]
    assert "  train.total_steps (int, default 25000000):" in out
    assert "  model.arch ('impala' | 'nature', default 'impala'):" in out
    assert "-c CONFIG" in out


def test_docstring_example_command_is_accepted():
    import baseline_agent.train as module

    example = next(line.split() for line in module.__doc__.splitlines() if "python -m baseline_agent.train" in line)
    overrides = [arg for arg in example if "=" in arg]
    assert "train.total_steps=2e6" in overrides
    config = load_config(Config, Path(__file__).resolve().parents[2] / "configs" / "cpu.yaml", overrides)
    assert config.train.total_steps == 2_000_000


def test_scientific_notation_override_is_a_float():
    assert load_config(Config, None, ["ppo.learning_rate=3e-4"]).ppo.learning_rate == pytest.approx(3e-4)


def test_scientific_notation_with_a_dot_is_a_float():
    assert load_config(Config, None, ["ppo.learning_rate=3.0e-4"]).ppo.learning_rate == pytest.approx(3e-4)
