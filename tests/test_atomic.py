"""atomic_path: all or nothing, with ordinary file permissions."""

import os

import pytest

from diffpy_cbldm.atomic import atomic_path


def test_success_moves_file_into_place_with_umask_mode(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
    assert target.read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert list(tmp_path.iterdir()) == [target]


def test_failure_leaves_nothing_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        with atomic_path(tmp_path / "nope" / "x.txt"):
            pass


def test_a_folder_in_the_way_is_named_before_anything_is_written(tmp_path):
    target = tmp_path / "out.txt"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match="out.txt: it is a folder"):
        with atomic_path(target):
            pytest.fail("the body ran although the target is a folder")
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_writes_numbers_or_nothing(tmp_path):
    import json

    import numpy as np

    from diffpy_cbldm.atomic import write_json

    target = tmp_path / "result.json"
    write_json(target, {"rw": np.float32(0.25), "n": [1, 2]})
    assert json.loads(target.read_text()) == {"rw": 0.25, "n": [1, 2]}
    # a value that is not a number is refused and the old file stays
    with pytest.raises(TypeError):
        write_json(target, {"atoms": object()})
    assert json.loads(target.read_text())["rw"] == 0.25
    assert list(tmp_path.iterdir()) == [target]
