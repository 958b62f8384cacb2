"""The other commands attacked from the command line, in fresh processes: ``--out`` on special files, read-only and
full disks, data without images, failed pushes, a missing ``weights.json``, absurd options, TensorFlow's start-up
notices. Each error is one line, exit status 1, and nothing is left behind."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    CLI_ENV,
    ROOT,
    SPECIAL_KINDS,
    assert_cli_error,
    closed_port_url,
    everything_under,
    file_kind,
    garment_pngs,
    released,
    run_cli,
    special_target,
)

from fashionzoo.cli.common import CLOSED_OUTPUT_STATUS


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_export_out_refuses_a_special_file(tmp_path: Path, kind: str) -> None:
    target = special_target(tmp_path, kind)
    before = file_kind(target)

    result = run_cli("export", "lenet5", "--out", str(target))

    assert_cli_error(result, str(target))
    assert file_kind(target) == before and result.stdout == ""


@pytest.mark.slow  # starts TensorFlow in a fresh process
def test_bench_out_refuses_a_special_file_before_benchmarking(tmp_path: Path) -> None:
    target = special_target(tmp_path, "fifo")

    # the missing weights file would stop the benchmark itself: the --out error must come first
    result = run_cli("bench", "lenet5", "--weights", str(tmp_path / "missing.weights.h5"), "--out", str(target))

    assert_cli_error(result, str(target), "not a regular file")
    assert file_kind(target) == "fifo"


@pytest.fixture
def read_only_dir(full_disk: Path) -> Iterator[Path]:
    """The tmpfs of ``full_disk``, remounted read-only."""
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(full_disk)], capture_output=True, text=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remounted.stderr.strip()}")
    yield full_disk


def fill(folder: Path) -> None:
    """Fill the file system of ``folder``: not one more byte fits."""
    with open(folder / "filler", "wb") as handle:
        handle.write(bytes(shutil.disk_usage(folder).free))


@pytest.mark.slow  # starts TensorFlow in a fresh process
@pytest.mark.parametrize("disk", ["read-only", "full"])
@pytest.mark.parametrize("command", ["export", "bench"])
def test_out_on_a_read_only_or_full_disk_is_one_line(
    request: pytest.FixtureRequest, make_idx_folder, command: str, disk: str
) -> None:
    data_dir = make_idx_folder(sizes={"test": 20}).path
    folder = request.getfixturevalue("read_only_dir" if disk == "read-only" else "full_disk")
    if disk == "full":
        fill(folder)
    target = folder / ("lenet5.onnx" if command == "export" else "bench.json")
    before = everything_under(folder)
    args = ["--batch-sizes", "1", "--repeats", "3", "--seconds", "0"] if command == "bench" else []

    result = run_cli(command, "lenet5", "--out", str(target), "--data-dir", str(data_dir), *args)

    assert_cli_error(result, str(target), "Read-only file system" if disk == "read-only" else "No space left on device")
    assert everything_under(folder) == before  # nothing written, no temporary file left


@pytest.mark.slow  # starts TensorFlow in a fresh process
def test_eval_on_a_valid_idx_pair_with_no_image(tmp_path: Path, idx_bytes) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(0, np.uint8))))

    result = run_cli("eval", "lenet5", "--data-dir", str(tmp_path))

    assert_cli_error(result, "t10k-images-idx3-ubyte.gz", "0 test images")


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A released lenet5 run folder: what push uploads."""
    run = tmp_path / "runs" / "lenet5"
    shutil.copytree(ROOT / "docs" / "models" / "lenet5", run)  # the record, card, history and figures
    for name in ("lenet5.weights.h5", "lenet5.onnx", "lenet5.int8.onnx"):
        shutil.copyfile(released(name), run / name)
    return run


@pytest.mark.parametrize(
    ("repo_id", "env", "fragment"),
    [
        ("me/lenet5", {"HF_ENDPOINT": "{down}"}, "could not reach the Hub"),
        ("me/lenet5", {"HF_HUB_OFFLINE": "1"}, "offline mode"),
        ("../../etc", {"HF_ENDPOINT": "{down}"}, "not a Hub repo id"),
    ],
    ids=["network-down", "offline", "traversing-repo-id"],
)
def test_push_failures_are_one_line(run_folder: Path, repo_id: str, env: dict[str, str], fragment: str) -> None:
    down = closed_port_url()
    env = {key: value.format(down=down) for key, value in env.items()} | {"HF_TOKEN": "hf_fake", "no_proxy": "*"}

    result = run_cli("push", "lenet5", "--repo-id", repo_id, "--run", str(run_folder), env=env)

    assert_cli_error(result, repo_id, fragment)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_weights_json_is_one_line(tmp_path: Path, damage: str) -> None:
    package = tmp_path / "site" / "fashionzoo"
    shutil.copytree(ROOT / "src" / "fashionzoo", package, ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
    if damage == "missing":
        (package / "weights.json").unlink()
    else:
        (package / "weights.json").write_text('{"lenet5": {"repo_id": "x", "files": {', encoding="utf-8")

    for command in (["list"], ["info", "lenet5"], ["download", "lenet5"]):
        result = run_cli(*command, env={"PYTHONPATH": str(tmp_path / "site")})
        assert_cli_error(result, "weights.json", "reinstall fashionzoo")


@pytest.mark.slow  # starts TensorFlow in a fresh process
def test_export_with_an_absurd_opset_is_one_line(tmp_path: Path) -> None:
    result = run_cli("export", "lenet5", "--opset", "99999999999999999999", "--out", str(tmp_path / "x.onnx"))

    assert_cli_error(result, "opset 99999999999999999999", "converts opsets 9 to")  # was: 7 tf2onnx tracebacks


def test_download_of_models_without_released_files_says_so() -> None:
    result = run_cli("download", "resnet50", "vgg16")

    assert_cli_error(result, "no released files", "resnet50-tl (", "vgg16-tl (")
    assert result.stdout == ""


@pytest.mark.slow  # starts TensorFlow in a fresh process
def test_tensorflow_start_up_notices_do_not_bury_the_error(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    missing = tmp_path / "missing.weights.h5"

    result = subprocess.run(
        [sys.executable, "-m", "fashionzoo", "eval", "lenet5", "--weights", str(missing)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": CLI_ENV["PYTHONPATH"]},
    )

    assert result.stderr.splitlines() == [
        f"fashionzoo: error: {missing}: no such file (pass the path of a weights file)"
    ]


def test_eval_plot_is_checked_before_the_evaluation(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    plot = tmp_path / "a-file" / "matrix.png"
    empty = tmp_path / "no-data"
    empty.mkdir()

    # the empty data folder would stop the evaluation itself: the --plot error must come first
    result = run_cli("eval", "lenet5", "--plot", str(plot), "--data-dir", str(empty))

    assert_cli_error(result, str(plot), "cannot write there", "Not a directory")


# ======================================================================== the output of every command (issue 32)

OUTPUT_COMMANDS = [["list"], ["list", "--json"], ["info", "lenet5"], ["predict", "{image}", "--model", "lenet5"]]
"""Commands of every kind that print: a table, JSON, a model's card, classifications."""


def _run(args: list[str], image: Path, stdout: Any, shell: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m fashionzoo ARGS`` (``{image}`` filled in) with ``stdout``, after ``shell`` if given."""
    command = [sys.executable, "-m", "fashionzoo", *(arg.format(image=image) for arg in args)]
    return subprocess.run(
        [*shell, *command], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300, env={**os.environ, **CLI_ENV}
    )


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=" ".join)
def test_any_command_whose_output_cannot_be_written_says_so_in_one_line(tmp_path: Path, args: list[str]) -> None:
    image = garment_pngs(tmp_path, "shirt.png")[0]
    with open("/dev/full", "w") as full:
        result = _run(args, image, full)

    assert_cli_error(result, "standard output: cannot write (No space left on device)")


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=" ".join)
def test_any_command_whose_reader_went_away_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """``fashionzoo list | head -1``: the reader closes the pipe (here before the first line, so that the command
    meets it whatever the pipe's buffer holds): no word on stderr, the status of a program that SIGPIPE ended."""
    image = garment_pngs(tmp_path, "shirt.png")[0]
    read, write = os.pipe()
    os.close(read)
    try:
        result = _run(args, image, write)
    finally:
        os.close(write)

    assert (result.returncode, result.stderr) == (CLOSED_OUTPUT_STATUS, "")


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=" ".join)
def test_any_command_started_with_its_output_closed_fails_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """``fashionzoo predict img >&-`` exited 0 having printed nothing anywhere."""
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = _run(args, image, None, shell=("sh", "-c", 'exec "$0" "$@" >&-'))

    assert_cli_error(result, "standard output is closed")
