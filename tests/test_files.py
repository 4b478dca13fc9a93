"""Atomic writes: the target is old or new, never half-written, and no temp file lingers."""

from __future__ import annotations

import os

import pytest

from nvmsim.files import atomic_open, atomic_write


def test_atomic_write_writes_bytes_and_text_whole(tmp_path):
    target = tmp_path / "out.bin"
    assert atomic_write(target, b"\x00\x01" * 1000) == target
    assert target.read_bytes() == b"\x00\x01" * 1000
    atomic_write(target, "ünïcode")
    assert target.read_bytes() == "ünïcode".encode()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_new_file_is_not_private_to_owner(tmp_path):
    target = atomic_write(tmp_path / "new.txt", "x")
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_error_inside_block_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_error_on_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyError, match="k"), atomic_open(tmp_path / "never.bin") as f:
        f.write(b"x")
        raise KeyError("k")
    assert os.listdir(tmp_path) == []


def test_text_mode_with_newline_kwarg(tmp_path):
    target = tmp_path / "rows.csv"
    with atomic_open(target, "w", newline="\r\n", encoding="utf-8") as f:
        f.write("a,b\n1,2\n")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"


def test_bad_mode_is_refused_before_anything_is_created(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', not 'a'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    assert os.listdir(tmp_path) == []


def test_bad_open_kwarg_leaves_no_temp(tmp_path):
    with pytest.raises(ValueError, match="newline"):
        with atomic_open(tmp_path / "x.bin", "wb", newline=""):
            pass
    assert os.listdir(tmp_path) == []


def test_suffix_names_the_temporary_file(tmp_path):
    with atomic_open(tmp_path / "big.gz", suffix=".part") as f:
        (tmp,) = [p.name for p in tmp_path.iterdir()]
        f.write(b"x")
    assert tmp.startswith(".big.gz.") and tmp.endswith(".part")
    assert os.listdir(tmp_path) == ["big.gz"]
