"""Short PPO training runs: the run folder's files, refusing to overwrite a run, and seeding."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from baseline_agent.train import RESUME_MUST_MATCH, Config, train
from procgen_common.checkpoint import load_checkpoint
from procgen_common.cli import UserError
from procgen_common.config import load_config
from procgen_common.runs import prepare_run_dir
from procgen_common.training_run import checkpoint_steps
from tests.conftest import BATCH, NUM_ENVS, TINY_RUN_EXTRA, tiny_config, train_tiny

TINY_TOTAL = 4 * BATCH  # the shared tiny run's train.total_steps


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_checkpoint_steps_are_evenly_spaced():
    assert checkpoint_steps(1000, 1) == [1000]
    assert checkpoint_steps(1000, 2) == [0, 1000]
    assert checkpoint_steps(1000, 5) == [0, 250, 500, 750, 1000]
    assert checkpoint_steps(10, 4) == [0, 3, 7, 10]  # rounded thirds: 3.33, 6.67


def test_config_yaml_loads_back_into_the_same_config(tiny_run):
    saved = load_config(Config, tiny_run / "config.yaml")
    assert saved == tiny_config(tiny_run, *TINY_RUN_EXTRA)
    assert saved.run_dir == tiny_run


def test_progress_csv_has_one_row_per_update(tiny_run):
    rows = read_progress(tiny_run)
    assert [int(r["step"]) for r in rows] == [BATCH, 2 * BATCH, 3 * BATCH, 4 * BATCH]
    columns = rows[0].keys()
    for key in (
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "charts/episodic_return",
        "charts/learning_rate",
        "eval/test_return",
    ):
        assert key in columns
    for row in rows:
        assert 0 < float(row["losses/entropy"]) <= torch.log(torch.tensor(15.0)).item() + 1e-4
        assert 0.0 <= float(row["losses/clipfrac"]) <= 1.0
        assert float(row["charts/learning_rate"]) == pytest.approx(5e-4)
    # eval.every_steps = 2 updates: the test split is evaluated after updates 2 and 4 only.
    assert [r["eval/test_return"] != "" for r in rows] == [False, True, False, True]
    assert all(r["eval/train_return"] == "" for r in rows)  # only the configured split


def test_checkpoint_series_and_latest(tiny_run):
    folder = tiny_run / "checkpoints"
    series = sorted(folder.glob("step_*.pt"))
    # train.num_checkpoints = 3 over total_steps: targets 0, total/2, total (all update boundaries).
    assert [int(p.stem.split("_")[1]) for p in series] == [0, TINY_TOTAL // 2, TINY_TOTAL]
    assert checkpoint_steps(TINY_TOTAL, 3) == [0, TINY_TOTAL // 2, TINY_TOTAL]
    for path in series:
        data = load_checkpoint(path)
        assert data["step"] == int(path.stem.split("_")[1])
        assert "mean_return" in data
        assert data["algo"] == "ppo"
        assert data["config"]["env"]["game"] == "starpilot"
    assert load_checkpoint(series[0])["mean_return"] is None  # no episode finished before training
    latest = load_checkpoint(folder / "latest.pt")
    assert latest["step"] == TINY_TOTAL and latest["update"] == 4
    # latest.pt and the final series file are written after the same update.
    final = load_checkpoint(series[-1])
    for name, tensor in latest["model"].items():
        torch.testing.assert_close(tensor, final["model"][name], rtol=0, atol=0)
    # ... and training changed the weights since the initial checkpoint.
    initial = load_checkpoint(series[0])
    assert any(not torch.equal(t, initial["model"][k]) for k, t in latest["model"].items())
    # No stray temporary files from the atomic writes.
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_every_checkpoint_loads_with_weights_only(tiny_run):
    files = sorted((tiny_run / "checkpoints").glob("*.pt"))
    assert len(files) == 4
    for path in files:
        data = torch.load(path, weights_only=True)
        assert isinstance(data, dict) and "model" in data


def test_tensorboard_events_match_progress_csv(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tiny_run / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tiny_run / "tb"))
    acc.Reload()
    scalars = acc.Scalars("losses/value_loss")
    rows = read_progress(tiny_run)
    assert [s.step for s in scalars] == [int(r["step"]) for r in rows]
    for s, row in zip(scalars, rows, strict=True):
        assert s.value == pytest.approx(float(row["losses/value_loss"]), rel=1e-4, abs=1e-9)
    assert [s.step for s in acc.Scalars("eval/test_return")] == [2 * BATCH, 4 * BATCH]


def test_second_fresh_run_into_the_same_folder_is_refused_and_changes_nothing(tiny_run):
    before = snapshot(tiny_run)
    with pytest.raises(UserError, match=r"run\.dir: .* already holds a run; pass train\.resume=true"):
        train(tiny_config(tiny_run, *TINY_RUN_EXTRA))
    assert snapshot(tiny_run) == before


def test_second_fresh_run_is_refused_even_with_only_config_yaml(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("{}\n")
    with pytest.raises(UserError, match="already holds a run"):
        prepare_run_dir(run_dir, tiny_config(run_dir), False, RESUME_MUST_MATCH)


def _first_losses(run_dir: Path) -> dict[str, str]:
    row = read_progress(run_dir)[0]
    assert int(row["step"]) == BATCH
    return {k: v for k, v in row.items() if k.startswith("losses/")}


def test_same_seed_gives_identical_first_update_and_another_seed_does_not(tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_tiny(tmp_path / name, f"train.seed={seed}", f"train.total_steps={BATCH}", "train.num_checkpoints=1")
        runs[name] = _first_losses(tmp_path / name)
    assert len(runs["a"]) == 6 and all(v != "" for v in runs["a"].values())
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    # The same seed gives the same weights too, not just the same rounded statistics.
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_periodic_evaluation_never_changes_the_trained_weights(tmp_path):
    # Evaluations and their videos draw from their own seeded stream, so eval.* settings leave the training streams
    # (and hence the weights) exactly as a run without them would.
    common = (f"train.total_steps={3 * BATCH}", "train.num_checkpoints=1", "eval.episodes=3")
    train_tiny(tmp_path / "off", *common, "eval.every_steps=0")
    train_tiny(tmp_path / "on", *common, f"eval.every_steps={BATCH}", "eval.splits=[train,test]")
    assert any(row["eval/test_return"] for row in read_progress(tmp_path / "on"))
    off = load_checkpoint(tmp_path / "off" / "checkpoints" / "latest.pt")
    on = load_checkpoint(tmp_path / "on" / "checkpoints" / "latest.pt")
    assert all(torch.equal(off["model"][k], on["model"][k]) for k in off["model"])
    assert torch.equal(off["rng"]["torch"], on["rng"]["torch"])


def test_batch_size_property():
    cfg = tiny_config(Path("unused"))
    assert cfg.batch_size == NUM_ENVS * cfg.ppo.num_steps == BATCH


def test_the_thread_count_used_is_recorded_in_the_saved_config_and_checkpoints(tmp_path):
    import os

    from procgen_common.config import read_yaml

    run_dir = train_tiny(tmp_path / "run", "train.torch_threads=0", f"train.total_steps={BATCH}")
    assert read_yaml(run_dir / "config.yaml")["train"]["torch_threads"] == os.cpu_count()
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["config"]["train"]["torch_threads"] == os.cpu_count()
