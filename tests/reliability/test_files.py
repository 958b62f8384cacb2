"""Atomic writes and output checks (``fashionzoo.core.files``): a full disk leaves nothing, the old file survives,
special files (a fifo, a device, a link to stdout) are never replaced, a target's folder is checked before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SPECIAL_KINDS, TOO_BIG, assert_one_line, everything_under, file_kind, special_target

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open, atomic_path, check_can_write


def test_atomic_path_on_a_full_disk_leaves_nothing(full_disk: Path) -> None:
    target = full_disk / "out" / "model.onnx"
    with pytest.raises(FashionZooError) as excinfo, atomic_path(target, suffix=".onnx") as tmp:
        tmp.write_bytes(os.urandom(TOO_BIG))

    assert_one_line(excinfo.value, str(target), "No space left on device")
    assert everything_under(full_disk) == []  # no final file, no temporary file


def test_atomic_open_on_a_full_disk_leaves_nothing_and_keeps_the_old_file(full_disk: Path) -> None:
    target = full_disk / "metrics.json"
    target.write_text('{"old": true}', encoding="utf-8")
    with pytest.raises(FashionZooError) as excinfo, atomic_open(target) as handle:
        handle.write("x" * TOO_BIG)

    assert_one_line(excinfo.value, str(target), "No space left on device")
    assert everything_under(full_disk) == ["metrics.json"]
    assert target.read_text(encoding="utf-8") == '{"old": true}'  # the previous version survives


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_atomic_path_never_replaces_a_special_file(tmp_path: Path, kind: str) -> None:
    target = special_target(tmp_path, kind)
    before = file_kind(target)

    with pytest.raises(FashionZooError) as excinfo, atomic_path(target) as tmp:
        tmp.write_bytes(b"onnx")

    assert_one_line(excinfo.value, str(target), "symbolic link" if kind.startswith("symlink") else "not a regular file")
    assert file_kind(target) == before and sorted(os.listdir(tmp_path)) == ["out.onnx"]


def test_check_can_write_makes_the_folder_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "model.onnx"
    check_can_write(target)
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(FashionZooError) as excinfo:
        check_can_write(tmp_path / "a-file" / "model.onnx")
    assert_one_line(excinfo.value, "a-file/model.onnx: cannot write there (Not a directory)")
