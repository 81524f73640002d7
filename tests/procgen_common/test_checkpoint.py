"""Checkpoint files: safe loading (weights_only), clear errors for bad files, atomic writes."""

from __future__ import annotations

import pytest
import torch

from procgen_common.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)


class NotPlainData:
    """A custom class: unpickling it would run arbitrary code paths, so weights_only must refuse it."""

    def __init__(self):
        self.value = 3


def _payload() -> dict:
    return {
        "algo": "ppo",
        "step": 7,
        "mean_return": None,
        "config": {"env": {"game": "coinrun"}},
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
    }


def test_save_then_load_round_trips_and_tags_the_format(tmp_path):
    path = tmp_path / "ck" / "a.pt"  # the folder is created
    save_checkpoint(path, _payload())
    data = load_checkpoint(path)
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert data["step"] == 7 and data["mean_return"] is None
    torch.testing.assert_close(data["model"]["w"], torch.arange(6.0).reshape(2, 3))
    torch.load(path, weights_only=True)  # plain data only
    assert [p.name for p in path.parent.iterdir()] == ["a.pt"]  # no temp file left


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, _payload())
    data = good.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=str(bad.name)):
            load_checkpoint(bad)


@pytest.mark.parametrize(
    "text",
    [
        "# notes\n",
        "not a checkpoint\n",
        "hello world\n",  # read as a legacy pickle: KeyError inside torch.load
        "these are not weights\n",  # IndexError inside torch.load
    ],
    ids=["comment", "sentence", "hello", "these"],
)
def test_text_file_is_a_checkpoint_error(tmp_path, text):
    path = tmp_path / "notes.pt"
    path.write_text(text)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_custom_class_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "thing": NotPlainData()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_torch_file_without_format_tag_or_with_other_version(tmp_path):
    untagged = tmp_path / "plain.pt"
    torch.save({"model": {}}, untagged)
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(untagged)
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(tensor_file)
    future = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "version": VERSION + 1}, future)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(future)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path)


def test_failed_write_leaves_the_old_file_and_no_temp_files(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, _payload())
    before = path.read_bytes()

    class WriteFailedError(RuntimeError):
        pass

    def failing_write(f):
        f.write(b"half of a new file")
        raise WriteFailedError("disk full")

    from procgen_common import checkpoint

    with pytest.raises(WriteFailedError):
        checkpoint._atomic_write(path, failing_write)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]
    assert load_checkpoint(path)["step"] == 7

    # A payload torch cannot serialise fails inside the write too, with the same guarantees.
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_checkpoint(path, {"bad": lambda: None})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_atomic_text_and_bytes_replace_the_whole_file(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "a long first version\n")
    atomic_write_text(path, "short\n")
    assert path.read_text() == "short\n"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    from procgen_common.checkpoint import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")  # an ordinary new file, under the same umask
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777
