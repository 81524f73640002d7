"""The demonstrator zoo: the committed series load safely and play, the table lists exactly them, and the
export/evaluate/table path works on a tiny run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from baseline_agent import zoo
from procgen_common.agents import load_agent
from procgen_common.cli import UserError
from procgen_common.env import ProcgenVecEnv

COMMITTED = sorted(zoo.ZOO_DIR.glob("*/step_*.pt"))


def test_the_zoo_holds_a_series_of_several_checkpoints_per_game():
    assert len({p.parent.name for p in COMMITTED}) >= 1
    for name in {p.parent.name for p in COMMITTED}:
        assert len(zoo.series(name)) >= 3


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_committed_checkpoint_loads_weights_only_and_plays_its_game(path):
    raw = torch.load(path, weights_only=True)
    assert set(raw) <= set(zoo.KEPT_KEYS) and "optimizer" not in raw
    assert path.stat().st_size < 8 * 2**20
    agent, checkpoint, env_config = load_agent(path)
    assert env_config.game == zoo.series_game(path.parent.name) and checkpoint["step"] == int(
        path.stem.removeprefix("step_")
    )
    env = ProcgenVecEnv(env_config, "test", num_envs=2, seed=0)
    try:
        obs, state = env.reset(), agent.initial_state(2)
        for _ in range(5):
            actions, state = agent.act(obs, state, np.zeros(2, bool))
            obs, _, _, _ = env.step(actions)
    finally:
        env.close()


def test_the_zoo_table_lists_exactly_the_committed_files():
    readme = (zoo.ZOO_DIR / "README.md").read_text()
    listed = sorted(re.findall(r"`([a-z-]+/step_\d+\.pt)`", readme))
    assert listed == sorted(f"{p.parent.name}/{p.name}" for p in COMMITTED)
    for folder in {p.parent for p in COMMITTED}:
        rows = json.loads((folder / "evaluation.json").read_text())["checkpoints"]
        assert sorted(r["checkpoint"] for r in rows) == sorted(p.name for p in folder.glob("step_*.pt"))
        assert all(r["episodes"] == 100 for r in rows)


def test_export_evaluate_and_table_on_a_tiny_run(tiny_run, tmp_path):
    series = sorted((tiny_run / "checkpoints").glob("step_*.pt"))
    assert len(series) == 3
    files = zoo.export_series(tiny_run, tmp_path / "starpilot", keep_every=2)
    assert [f.name for f in files] == [series[0].name, series[2].name]
    files = zoo.export_series(
        tiny_run, tmp_path / "starpilot", keep_every=5
    )  # a re-export drops what it no longer keeps
    assert [f.name for f in files] == [series[0].name, series[2].name]  # the final one is always kept
    assert sorted(p.name for p in (tmp_path / "starpilot").iterdir()) == [f.name for f in files]
    assert set(torch.load(files[-1], weights_only=True)) == set(zoo.KEPT_KEYS)
    rows = zoo.evaluate_series(files, episodes=2)
    assert [r["episodes"] for r in rows] == [2, 2] and rows[1]["step"] == int(series[2].stem.removeprefix("step_"))
    (tmp_path / "starpilot" / "evaluation.json").write_text(json.dumps({"checkpoints": rows}))
    lines = zoo.table_lines(tmp_path)
    assert len(lines) == 4 and f"`starpilot/{series[2].name}`" in lines[-1]
    assert zoo.series("starpilot", tmp_path) == files
    assert zoo.resolve(f"zoo:starpilot/{series[2].stem}", tmp_path) == files[1]


def test_a_variant_series_is_named_by_its_game_and_variant(tmp_path):
    (tmp_path / "fruitbot-impala").mkdir()
    (tmp_path / "fruitbot-impala" / "step_000000000.pt").write_bytes(b"")
    assert zoo.series_game("fruitbot-impala") == "fruitbot" and zoo.series_game("starpilot") == "starpilot"
    assert zoo.resolve("zoo:fruitbot-impala", tmp_path) == tmp_path / "fruitbot-impala"
    assert zoo.resolve("zoo:fruitbot-impala/step_000000000", tmp_path).name == "step_000000000.pt"
    with pytest.raises(UserError, match="no 'fruitbot-nature' series; it holds fruitbot-impala"):
        zoo.resolve("zoo:fruitbot-nature", tmp_path)
    with pytest.raises(UserError, match="no 'pong-impala' series"):
        (tmp_path / "pong-impala").mkdir()
        zoo.resolve("zoo:pong-impala", tmp_path)
    with pytest.raises(UserError, match="--variant: no configs/zoo-nature.yaml; the variants are impala"):
        zoo.variant_config("nature")


def test_unknown_zoo_entries_are_one_line_errors(tmp_path):
    (tmp_path / "starpilot").mkdir()
    with pytest.raises(UserError, match="the zoo has no 'coinrun' series; it holds starpilot"):
        zoo.resolve("zoo:coinrun", tmp_path)
    with pytest.raises(UserError, match="no such checkpoint in the zoo"):
        zoo.resolve("zoo:starpilot/step_5", tmp_path)


def test_the_zoo_preset_loads_and_pins_its_arithmetic():
    from baseline_agent.train import Config
    from procgen_common.config import load_config

    config = load_config(Config, zoo.ZOO_CONFIG)
    assert (config.train.precision, config.train.torch_threads, config.model.arch) == ("fp32", 2, "nature")
    impala = load_config(Config, zoo.variant_config("impala"))
    assert (impala.model.arch, impala.train.precision) == ("impala", "bf16")
    # The committed IMPALA series were cut from runs with a checkpoint every 250k steps; the preset keeps that.
    assert impala.train.total_steps // (impala.train.num_checkpoints - 1) == 250_000
