"""Atomic writes and output checks (``fashionzoo.core.files``): a full disk leaves nothing, the old file survives,
special files (a fifo, a device, a link to stdout) are never replaced, a target's folder is checked before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    SPECIAL_KINDS,
    TOO_BIG,
    assert_cli_error,
    assert_one_line,
    bar,
    everything_under,
    file_kind,
    garment_pngs,
    run_cli,
    special_target,
)
from PIL import Image

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


# ===================================================================== predict --save-inputs (issue 32, 2 and 23)


def _saved(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))


def test_save_inputs_never_replaces_a_users_image_and_keeps_distinct_inputs_apart(tmp_path: Path) -> None:
    """In a folder with ``a.png`` and ``a.png.png``, ``predict . --save-inputs .`` replaced ``a.png.png``; ``..``
    was dropped, so ``../a/x.png`` and ``a/x.png`` landed on one name."""
    here = tmp_path / "here"
    garment_pngs(here, "a.png", "a.png.png")
    garment_pngs(here / "a", "x.png")
    garment_pngs(tmp_path / "a", "x.png")
    bar(horizontal=False).save(tmp_path / "a" / "x.png")  # another image than here/a/x.png
    users = (here / "a.png.png").read_bytes()

    result = run_cli("predict", ".", "a/x.png", "../a/x.png", "--model", "lenet5", "--save-inputs", ".", cwd=here)

    assert_cli_error(result, "a.png.png: already exists and is not a model input fashionzoo saved")
    assert (here / "a.png.png").read_bytes() == users  # the user's image, untouched
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["./a.png.png", "a/x.png", "../a/x.png"]
    assert _saved(here) == ["%2E%2E/a/x.png.png", "a.png", "a.png.png", "a.png.png.png", "a/x.png", "a/x.png.png"]
    ours, theirs = (np.asarray(Image.open(here / name)) for name in ("a/x.png.png", "%2E%2E/a/x.png.png"))
    assert not np.array_equal(ours, theirs)  # two inputs, two files

    again = run_cli("predict", "a/x.png", "--model", "lenet5", "--save-inputs", ".", cwd=here)

    assert again.returncode == 0, again.stderr  # what fashionzoo saved, it may replace


def test_save_inputs_with_a_name_too_long_to_save_goes_on_with_the_others(tmp_path: Path) -> None:
    """An input named with 252 characters (+ ``.png``: 256, over the file systems' 255) aborted the run: later files
    were never classified, and with ``--out`` there was no rows file at all."""
    long_names = ["n" * 248 + ".png", "n" * 247 + "m.png"]  # alike up to their last characters
    garment_pngs(tmp_path, *long_names, "z.png")
    out = tmp_path / "rows.jsonl"

    result = run_cli(
        "predict", *long_names, "z.png", "--model", "lenet5", "--save-inputs", "seen", "--out", str(out), cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["error"] for row in rows] == [None, None, None]
    saved = _saved(tmp_path / "seen")
    assert len(saved) == 3 and "z.png.png" in saved
    assert all(len(os.fsencode(name)) <= 255 and name.startswith("n" * 100) for name in saved if name != "z.png.png")


def test_saved_input_names_of_an_absolute_path_and_of_its_escape_stay_apart() -> None:
    """The ``%2F`` marker of an absolute path was added before ``%`` was escaped, so it was written ``%252F``, the
    very name of a relative path starting ``%2F``: ``/abs/x.jpg`` and ``%2F/abs/x.jpg`` shared one file. A name with
    no part (``.``, ``""``) raised ``IndexError``."""
    from fashionzoo.runtime.results import saved_input_path

    absolute, escaped = saved_input_path("out", "/abs/x.jpg"), saved_input_path("out", "%2F/abs/x.jpg")

    assert absolute == Path("out", "%2F", "abs", "x.jpg.png")
    assert escaped == Path("out", "%252F", "abs", "x.jpg.png")
    for nothing in (".", ""):
        with pytest.raises(FashionZooError) as error:
            saved_input_path("out", nothing)
        assert_one_line(error.value, "names no file")
