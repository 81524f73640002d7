"""Run folders: one writer per folder, temporaries of killed writes removed, bad output folders in one line."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

from procgen_common.checkpoint import save_checkpoint
from procgen_common.cli import UserError
from procgen_common.runs import FolderLock, make_folder, merge_threads, torch_threads
from tests.conftest import assert_one_line_error, run_cli
from tests.trex.conftest import write_synthetic_demos


def test_a_second_lock_on_a_folder_is_refused_naming_the_holder_until_released(tmp_path):
    first = FolderLock(tmp_path / "run", "run.dir")
    with pytest.raises(UserError, match=rf"run.dir: .*run is in use by pid {os.getpid()} on "):
        FolderLock(tmp_path / "run", "run.dir")
    FolderLock(tmp_path / "other", "run.dir").release()  # other folders are free
    first.release()
    with FolderLock(tmp_path / "run", "run.dir"):  # free again once released
        pass


def test_every_entry_point_refuses_a_folder_another_job_holds(tmp_path):
    """The lock is checked before any work, and the holder's files are left as they were."""
    synthetic_demos = write_synthetic_demos(tmp_path / "demos", 4, 2)
    held = tmp_path / "held"
    with FolderLock(held, "run.dir"):
        (held / "progress.csv").write_text("step\n1\n")
        (held / "stages").mkdir()  # what a running pipeline's folder holds, so the pipeline sees an experiment
        jobs = [
            (["-m", "baseline_agent.train", "-c", "configs/cpu.yaml", f"run.dir={held}"], "run.dir"),
            (["-m", "policies.train", "-c", "configs/cpu.yaml", f"run.dir={held}"], "run.dir"),
            (["-m", "trex.train_reward", f"data.demos={synthetic_demos}", f"run.dir={held}"], "run.dir"),
            (["-m", "experiments.pipeline", "-c", "configs/quickstart.yaml", f"dir={held}"], "dir"),
            (["-m", "trex.generate_demos", "checkpoints=zoo:starpilot/step_000000000", f"out_dir={held}"], "out_dir"),
        ]
        for args, key in jobs:
            result = run_cli(args, cwd=os.getcwd())
            assert result.returncode == 2, result.stderr
            assert_one_line_error(result.stderr, f"{key}: {held} is in use by pid {os.getpid()}")
        assert sorted(p.name for p in held.iterdir()) == [".lock", ".lock.owner", "progress.csv", "stages"]
        assert (held / "progress.csv").read_text() == "step\n1\n"


def test_taking_the_lock_removes_temporaries_left_by_killed_writes(tmp_path, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "latest.pt", {"step": 1})
    leftovers = [run / "checkpoints" / ".latest.pt.x1y2.tmp", run / ".index.csv.abc.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    kept = [run / "notes.tmp", run / ".hidden", run / "checkpoints" / "latest.pt"]
    for path in kept[:2]:
        path.write_text("mine")
    other_job = run / "sub"  # a folder with a lock of its own is another job's to clean
    FolderLock(other_job, "run.dir").release()
    (other_job / ".x.tmp").write_text("theirs")
    with FolderLock(run, "run.dir"):
        assert not any(path.exists() for path in leftovers)
        assert all(path.exists() for path in kept) and (other_job / ".x.tmp").exists()
    assert "left by an interrupted write" in capsys.readouterr().err


def test_bad_output_folders_are_one_line_naming_the_key(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("precious")
    with pytest.raises(UserError, match=r"out_dir: .*file is a file, not a folder"):
        make_folder(a_file, "out_dir")
    with pytest.raises(UserError, match=r"out_dir: cannot write to .*file/sub \(a part of the path is a file\)"):
        make_folder(a_file / "sub", "out_dir")
    with pytest.raises(UserError, match=r"dir: cannot write to /proc/suite-test"):
        make_folder("/proc/suite-test", "dir")
    assert a_file.read_text() == "precious"


def test_file_system_failures_deep_in_a_job_are_one_line_and_other_errors_keep_their_traceback(capsys):
    from procgen_common.cli import main_guard

    @main_guard
    def job(error):
        raise error

    with pytest.raises(SystemExit) as info:
        job(OSError(errno.ENOSPC, "No space left on device", "/data/.x.pt.abc.tmp", None, "/data/x.pt"))
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "/data/x.pt: No space left on device", "intact")
    with pytest.raises(ZeroDivisionError):  # not a file-system refusal: a bug shows its traceback
        job(ZeroDivisionError("bug"))
    with pytest.raises(ConnectionResetError):
        job(ConnectionResetError(errno.ECONNRESET, "reset"))


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # a producer thread's error
def test_merge_threads_yields_every_item_of_every_producer_in_its_order():
    producers = [lambda k=k: iter(range(k * 100, k * 100 + 50)) for k in range(3)]
    items = list(merge_threads(producers, max_queued=2))
    assert sorted(items) == [k * 100 + i for k in range(3) for i in range(50)]
    for k in range(3):
        assert [i for i in items if i // 100 == k] == list(range(k * 100, k * 100 + 50))
    assert list(merge_threads([lambda: iter("ab")])) == ["a", "b"]  # one producer: no thread


def test_merge_threads_raises_a_producers_error_and_stops_the_others():
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            closed.set()

    def failing():
        yield 1
        raise UserError("bad checkpoint")

    with pytest.raises(UserError, match="bad checkpoint"):
        list(merge_threads([endless, failing], max_queued=1))
    assert closed.is_set()  # the endless producer was stopped and closed, not left running

    closed.clear()
    threads_before = threading.active_count()
    merged = merge_threads([endless, endless])
    assert next(merged) == 0
    merged.close()  # the caller stops early: every thread is joined and its producer closed
    assert closed.is_set() and threading.active_count() == threads_before


def test_torch_threads_sets_the_count_inside_the_block_only():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
