"""Resuming a run: from a finished run with a larger budget, and after a real SIGKILL."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseline_agent.train import main
from procgen_common.checkpoint import load_checkpoint
from tests.baseline_agent.test_train import read_progress
from tests.conftest import (
    BATCH,
    NUM_ENVS,
    NUM_EPOCHS,
    NUM_MINIBATCHES,
    NUM_STEPS,
    assert_one_line_error,
    run_cli,
    tiny_overrides,
    train_tiny,
)

OPTIMIZER_STEPS_PER_UPDATE = NUM_EPOCHS * NUM_MINIBATCHES  # no target_kl: every minibatch steps


def _adam_steps(checkpoint: dict) -> set[int]:
    return {int(s["step"]) for s in checkpoint["optimizer"]["state"].values()}


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Train 2 updates, then resume the same folder with a budget of 4 updates."""
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    train_tiny(run_dir, f"train.total_steps={2 * BATCH}", "train.num_checkpoints=3")
    first = {
        "rows": (run_dir / "progress.csv").read_text().splitlines(),
        "latest": load_checkpoint(run_dir / "checkpoints" / "latest.pt"),
    }
    train_tiny(run_dir, f"train.total_steps={4 * BATCH}", "train.num_checkpoints=3", "train.resume=true")
    return run_dir, first


def test_resumed_run_continues_from_the_saved_step(resumed_run):
    run_dir, first = resumed_run
    assert first["latest"]["step"] == 2 * BATCH
    lines = (run_dir / "progress.csv").read_text().splitlines()
    # The header and the first run's rows are kept as they were; the resumed rows follow.
    assert lines[: len(first["rows"])] == first["rows"]
    steps = [int(r["step"]) for r in read_progress(run_dir)]
    assert steps == [BATCH, 2 * BATCH, 3 * BATCH, 4 * BATCH]
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert latest["step"] == 4 * BATCH and latest["update"] == 4
    assert latest["episodes"] >= first["latest"]["episodes"]


def test_resume_restores_optimizer_and_reward_scaler_state(resumed_run):
    run_dir, first = resumed_run
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert _adam_steps(first["latest"]) == {2 * OPTIMIZER_STEPS_PER_UPDATE}
    # A fresh optimizer would have counted only the 2 resumed updates.
    assert _adam_steps(latest) == {4 * OPTIMIZER_STEPS_PER_UPDATE}
    # The reward scaler saw NUM_STEPS batches of NUM_ENVS returns per update (plus a 1e-4 prior).
    assert first["latest"]["reward_scaler"]["count"] == pytest.approx(2 * NUM_STEPS * NUM_ENVS, abs=1e-3)
    assert latest["reward_scaler"]["count"] == pytest.approx(4 * NUM_STEPS * NUM_ENVS, abs=1e-3)


def test_resume_series_uses_the_new_budget(resumed_run):
    run_dir, _ = resumed_run
    steps = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.pt"))
    # First run: targets 0, 128, 256. Resumed run (total 512): targets 0, 256, 512 -> adds 512.
    assert steps == [0, BATCH, 2 * BATCH, 4 * BATCH]
    for step in steps:
        assert load_checkpoint(run_dir / "checkpoints" / f"step_{step:09d}.pt")["step"] == step


def test_resume_with_another_game_is_refused_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, f"train.total_steps={BATCH}", "train.num_checkpoints=1")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(tiny_overrides(run_dir, "env.game=coinrun", "train.resume=true"))
    assert info.value.code == 2
    line = assert_one_line_error(capsys.readouterr().err, "train.resume", "env.game", str(run_dir))
    assert "env.num_envs" not in line  # only the settings that differ are named
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_without_latest_checkpoint_does_not_duplicate_progress_rows(tmp_path):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, f"train.total_steps={2 * BATCH}", "train.num_checkpoints=1")
    # What a kill before the first latest.pt leaves: config.yaml and progress.csv, no latest.pt
    # (train.save_interval_minutes defaults to 2 minutes).
    (run_dir / "checkpoints" / "latest.pt").unlink()
    train_tiny(run_dir, f"train.total_steps={2 * BATCH}", "train.num_checkpoints=1", "train.resume=true")
    assert [int(r["step"]) for r in read_progress(run_dir)] == [BATCH, 2 * BATCH]


def test_sigkilled_run_resumes_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    common = ("train.save_interval_minutes=0.001", "train.num_checkpoints=2")
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "baseline_agent.train", *tiny_overrides(run_dir, "train.total_steps=10000000", *common)],
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    latest = run_dir / "checkpoints" / "latest.pt"
    try:
        deadline = time.monotonic() + 90
        while not latest.exists():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no checkpoints/latest.pt within 90 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it run on a little: the kill lands mid-training
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL

    saved = load_checkpoint(latest)["step"]  # the atomic write leaves a readable file
    assert saved > 0 and saved % BATCH == 0
    kept = [
        line for line in (run_dir / "progress.csv").read_text().splitlines()[1:] if int(line.split(",")[0]) <= saved
    ]
    total = saved + 2 * BATCH
    result = run_cli(
        [
            "-m",
            "baseline_agent.train",
            *tiny_overrides(run_dir, f"train.total_steps={total}", "train.resume=true", *common),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} from step {saved:,}" in result.stderr
    lines = (run_dir / "progress.csv").read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == list(range(BATCH, total + 1, BATCH))  # increasing, no duplicates, no gaps
    assert lines[1 : 1 + len(kept)] == kept  # rows up to the saved step untouched
    assert load_checkpoint(latest)["step"] == total
    shutil.rmtree(run_dir)  # large-ish folder; free the space early


def test_resume_of_a_folder_without_checkpoint_starts_fresh(tmp_path, capsys):
    run_dir = tmp_path / "new"
    train_tiny(run_dir, f"train.total_steps={BATCH}", "train.num_checkpoints=1", "train.resume=true")
    assert "no checkpoint" in capsys.readouterr().err
    assert [int(r["step"]) for r in read_progress(run_dir)] == [BATCH]
    assert Path(run_dir / "checkpoints" / "latest.pt").is_file()


def test_resume_starts_from_the_newest_series_checkpoint_when_latest_is_older(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, f"train.total_steps={4 * BATCH}", "train.num_checkpoints=5")
    checkpoints = run_dir / "checkpoints"
    # What a kill after the series checkpoint at 3 updates and before the next latest.pt leaves: an older latest.pt.
    (checkpoints / f"step_{4 * BATCH:09d}.pt").unlink()
    shutil.copy(checkpoints / f"step_{1 * BATCH:09d}.pt", checkpoints / "latest.pt")
    capsys.readouterr()
    train_tiny(run_dir, f"train.total_steps={4 * BATCH}", "train.num_checkpoints=5", "train.resume=true")
    assert f"from step {3 * BATCH:,}" in capsys.readouterr().err
    assert [int(r["step"]) for r in read_progress(run_dir)] == [BATCH, 2 * BATCH, 3 * BATCH, 4 * BATCH]
    assert load_checkpoint(checkpoints / "latest.pt")["step"] == 4 * BATCH


def test_a_run_killed_before_its_first_latest_save_resumes_from_its_newest_series_checkpoint(tmp_path):
    """With the shipped save interval (latest.pt every 2 minutes) a kill in the first minutes loses no more than
    the time since the last series checkpoint: the resume starts from the newest one."""
    run_dir = tmp_path / "run"
    series = ("train.num_checkpoints=200", "train.total_steps=1000000")  # a series checkpoint every ~5k steps
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "baseline_agent.train", *tiny_overrides(run_dir, *series)],
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    checkpoints = run_dir / "checkpoints"
    try:
        deadline = time.monotonic() + 120
        while len(list(checkpoints.glob("step_*.pt"))) < 2:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no second series checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert not (checkpoints / "latest.pt").exists()  # the shipped interval has not come round yet
    newest = load_checkpoint(sorted(checkpoints.glob("step_*.pt"))[-1])["step"]
    assert newest > 0
    result = run_cli(
        ["-m", "baseline_agent.train", *tiny_overrides(run_dir, "train.num_checkpoints=2",
                                                       f"train.total_steps={newest + BATCH}", "train.resume=true")],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} from step {newest:,}" in result.stderr
    assert load_checkpoint(checkpoints / "latest.pt")["step"] == newest + BATCH
