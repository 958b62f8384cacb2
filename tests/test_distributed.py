"""``--engine ray`` on a real two-node Ray cluster on 127.0.0.1: batch prediction (identical to the local path, every
input exactly once even when an inference actor is killed), a recipe's search and a seed sweep as Tune trials."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import fashionzoo
from fashionzoo.cli import main

pytest.importorskip("ray", reason='Ray is not installed (pip install "fashionzoo[ray]"; .ci/run installs it)')
pq = pytest.importorskip("pyarrow.parquet", reason='pyarrow is not installed (pip install "fashionzoo[ray]")')

pa = pytest.importorskip("pyarrow")
pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time under pytest-xdist

from helpers import CLI_ENV, assert_cli_error, assert_one_line, free_port, released, run_cli  # noqa: E402
from ray_cluster import LocalCluster, _session_members  # noqa: E402 (after the skips: it needs Ray)

ACTOR_TITLE = b"ray::MapWorker(MapBatches(Predictor))"
"""The process title of an inference actor."""


@pytest.fixture(scope="session")
def ray_cluster(shared_data: Path) -> Iterator[LocalCluster]:
    """A head node and a worker node of one CPU each, running this checkout's fashionzoo; killed at the end."""
    source = str(Path(fashionzoo.__file__).resolve().parents[1])
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
        "FASHIONZOO_DATA_DIR": str(shared_data),
    }
    with LocalCluster(head_cpus=1, worker_cpus=[1], env=env) as cluster:
        yield cluster


def _fashionzoo(cluster: LocalCluster, *args: str, **popen: object) -> subprocess.Popen:
    """A ``fashionzoo`` command connected to the cluster (a process of its own: a Ray driver)."""
    return subprocess.Popen(
        [sys.executable, "-m", "fashionzoo", *args, "--engine", "ray", "--address", cluster.address],
        env=cluster.driver_env(),
        text=True,
        **popen,
    )


def _run(cluster: LocalCluster, *args: str) -> str:
    process = _fashionzoo(cluster, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    return out


def _images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` random 28x28 PNGs, plus a file that is not an image and an empty one."""
    folder.mkdir()
    pixels = np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"img-{i:05d}.png")
    (folder / "broken.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _local(source: str, out: Path, *options: str) -> pq.Table:
    result = CliRunner().invoke(main, ["predict", source, "--out", str(out), "--top-k", "3", *options])
    assert result.exit_code == 0, result.output
    return pq.read_table(out)


def test_the_ray_tests_share_one_worker(request: pytest.FixtureRequest) -> None:
    """Under pytest-xdist's loadgroup (pyproject's addopts) this module's tests carry their group, so one worker runs
    them and no two Ray clusters start at once: pytest-xdist 3.8 drops every group, silently, under pytest 9.2."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@ray"), "pytest-xdist did not group the tests (pytest-xdist#1386)"


@pytest.mark.slow  # a two-node Ray cluster
def test_ray_predictions_are_the_local_ones_row_for_row(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    folder = _images(tmp_path / "photos", 150)
    local = _local(str(folder), tmp_path / "local.parquet")
    summary = json.loads(
        _run(
            ray_cluster,
            "predict",
            str(folder),
            "--out",
            str(tmp_path / "ray.parquet"),
            "--top-k",
            "3",
            "--batch-size",
            "16",
            "--json",
        )
    )
    on_ray = pq.read_table(tmp_path / "ray.parquet")
    assert on_ray.equals(local)
    assert local.num_rows == 152 and summary["images"] == 152 and summary["failures"] == 2
    assert summary["nodes"] == 2 and summary["workers"] == 1  # two CPUs: one actor, one CPU left for reading
    errors = {row["path"]: row["error"] for row in local.to_pylist() if row["error"]}
    assert set(errors) == {str(folder / "broken.png"), str(folder / "empty.jpg")}
    assert "not an image" in errors[str(folder / "broken.png")] and "empty" in errors[str(folder / "empty.jpg")]


@pytest.mark.slow  # a two-node Ray cluster
def test_path_lists_with_object_store_paths(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    folder = _images(tmp_path / "photos", 20, seed=1)
    local = {row["path"]: row for row in _local(str(folder), tmp_path / "local.parquet").to_pylist()}
    uri = folder.as_uri()  # file://...: the object-store code path (pyarrow file system, a fetched copy)
    listed = [
        str(folder / "img-00003.png"),
        "",
        f"{uri}/img-00004.png",
        f"{uri}/empty.jpg",
        str(folder / "broken.png"),
        str(folder / "missing.png"),
        f"{uri}/missing.png",
    ]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    _run(ray_cluster, "predict", str(tmp_path / "list.txt"), "--out", str(tmp_path / "list.jsonl"), "--top-k", "3")
    rows = [json.loads(line) for line in (tmp_path / "list.jsonl").read_text().splitlines()]
    assert [row["path"] for row in rows] == [p for p in listed if p]  # in order, blank line skipped
    local_row = {
        **local,
        f"{uri}/img-00004.png": local[str(folder / "img-00004.png")],
        f"{uri}/empty.jpg": local[str(folder / "empty.jpg")],
    }
    for row in rows[:4]:  # named as listed: the uri, never the worker's local copy
        expected = local_row[row["path"]]
        error = expected["error"] and expected["error"].replace(expected["path"], row["path"])
        assert row == {**expected, "path": row["path"], "error": error}
    assert [row["error"] for row in rows[4:]] == [f"{p}: no such file (check the path)" for p in listed[-2:]]


def test_object_store_folders_list_their_images(tmp_path: Path) -> None:
    from fashionzoo.distributed.sources import _uri_folder

    folder = _images(tmp_path / "photos", 2)
    (folder / "notes.txt").write_text("not listed")
    uri = folder.as_uri()
    assert [row["path"] for row in _uri_folder(uri)] == [
        f"{uri}/{n}" for n in ("broken.png", "empty.jpg", "img-00000.png", "img-00001.png")
    ]
    (folder / "sub").mkdir()
    (folder / "sub" / "deeper.png").write_bytes(b"")
    assert [row["path"] for row in _uri_folder(uri, recursive=True)][-2:] == [
        f"{uri}/img-00001.png",
        f"{uri}/sub/deeper.png",
    ]
    assert f"{uri}/sub/deeper.png" not in [row["path"] for row in _uri_folder(uri)]
    assert "cannot list" in _uri_folder(uri + "/none")[0]["error"]
    assert "no image files" in _uri_folder(tmp_path.as_uri())[0]["error"]


def _actor_pids(cluster: LocalCluster) -> list[int]:
    pids = []
    for pid in _session_members({node.pid for node in cluster.nodes}):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(ACTOR_TITLE):
                pids.append(pid)
        except OSError:
            continue
    return pids


@pytest.mark.slow  # a two-node Ray cluster
def test_killing_an_inference_actor_loses_and_repeats_nothing(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    folder = _images(tmp_path / "photos", 2000, seed=2)
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        process = _fashionzoo(
            ray_cluster,
            "predict",
            str(folder),
            "--out",
            str(tmp_path / "ray.parquet"),
            "--batch-size",
            "16",
            "--progress",
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 240
        while "images done" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)  # the first progress line: the actor is working through the inputs
        actors = _actor_pids(ray_cluster)
        assert actors and process.poll() is None, log.read_text()[-3000:]
        os.kill(actors[0], signal.SIGKILL)
        assert process.poll() is None  # killed mid-run
        assert process.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        process.kill()
    on_ray = pq.read_table(tmp_path / "ray.parquet")
    paths = on_ray.column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 2002  # every input once
    assert on_ray.equals(_local(str(folder), tmp_path / "local.parquet", "--top-k", "1"))


@pytest.mark.slow  # a two-node Ray cluster
def test_search_runs_its_trials_as_tune_trials(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    from fashionzoo.data.loading import load_split, train_val_split
    from fashionzoo.registry.lookup import get_entry
    from fashionzoo.training.fit import distribution_strategy
    from fashionzoo.training.search import Trial, score_trial, search_trials

    out = json.loads(
        _run(
            ray_cluster,
            "train",
            "lenet5-tuned",
            "--limit",
            "100",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "tuned"),
            "--json",
        )
    )
    search = json.loads((tmp_path / "tuned" / "search.json").read_text())
    assert out["search"] == search
    recipe = get_entry("lenet5-tuned").recipe.replace(epochs=1)
    assert [t["params"] for t in search["trials"]] == search_trials(recipe)  # the local search's trials, in order
    assert search["best"] == max(search["trials"], key=lambda t: t["val_accuracy"])["params"]
    assert len(search["cross_validation"]["folds"]) == 5
    metrics = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert (
        metrics["build_kwargs"]["dense1"] == search["best"]["dense1"]
        and metrics["recipe"]["lr"] == search["best"]["lr"]
    )
    # the first trial again, in this process: the same training, seed and validation accuracy
    train, val = train_val_split(load_split("train"), recipe.val_fraction)
    train, val = train.head(100), val.head(20)
    data = type(train)(np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels]), {})
    trial = Trial(search["trials"][0]["params"], np.arange(100), np.arange(100, 120))
    again = score_trial(get_entry("lenet5-tuned"), recipe, data, trial, distribution_strategy("cpu")[0])
    assert again == search["trials"][0]["val_accuracy"]


@pytest.mark.slow  # a two-node Ray cluster
def test_seed_sweep_reports_the_spread(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    summary = json.loads(
        _run(
            ray_cluster,
            "train",
            "mlp-small",
            "--seeds",
            "3,5",
            "--limit",
            "200",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "sweep"),
            "--json",
        )
    )
    assert summary == json.loads((tmp_path / "sweep" / "seeds.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [3, 5]
    for run in summary["runs"]:
        metrics = json.loads((tmp_path / "sweep" / run["run"] / "metrics.json").read_text())
        assert metrics["seed"] == run["seed"] and metrics["test"]["accuracy"] == run["test_accuracy"]
    for key in ("val_accuracy", "test_accuracy"):
        values = [run[key] for run in summary["runs"]]
        assert summary[key]["min"] == min(values) and summary[key]["max"] == max(values)
        assert summary[key]["mean"] == pytest.approx(np.mean(values))
        assert summary[key]["std"] == pytest.approx(np.std(values, ddof=1))


@pytest.mark.slow  # a two-node Ray cluster
def test_ray_takes_a_relative_list_and_the_options_of_the_local_predict(
    ray_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list named relative to the driver's folder (Ray's readers run elsewhere), --uncertain-below and --recursive
    as the single-machine predict takes them; --save-inputs and a missing list refused in one line."""
    _images(tmp_path / "photos", 6, seed=3)
    (tmp_path / "photos" / "sub").mkdir()
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "photos" / "sub" / "deeper.png")
    (tmp_path / "list.txt").write_text("photos/img-00000.png\nphotos/img-00001.png\n")
    monkeypatch.chdir(tmp_path)
    options = ["--top-k", "3", "--uncertain-below", "0.99"]
    local = _local("photos", tmp_path / "local.parquet", "--recursive", *options).to_pylist()
    assert sum(row["uncertain"] is True for row in local) >= 3 and local[-1]["path"] == "photos/sub/deeper.png"
    process = _fashionzoo(
        ray_cluster,
        "predict",
        "list.txt",
        "--out",
        "listed.jsonl",
        *options,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.wait(timeout=400) == 0, process.stderr.read()[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "listed.jsonl").read_text().splitlines()]
    by_path = {row["path"]: row for row in local}
    assert rows == [by_path["photos/img-00000.png"], by_path["photos/img-00001.png"]]  # uncertain flags included
    _run(ray_cluster, "predict", "photos", "--out", str(tmp_path / "all.parquet"), "--recursive", *options)
    assert pq.read_table(tmp_path / "all.parquet").to_pylist() == local
    for args, message in (
        (["missing.txt", "--out", "x.jsonl"], "missing.txt: no such list of paths"),
        (["photos", "--out", "x.jsonl", "--save-inputs", "seen"], "--save-inputs is for"),
    ):
        process = _fashionzoo(
            ray_cluster, "predict", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
        )
        _, err = process.communicate(timeout=120)
        assert process.returncode == 1 and message in err.strip().splitlines()[-1], err[-2000:]
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.slow  # a two-node Ray cluster
def test_a_failing_trial_fails_the_job_once_not_after_retries(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    process = _fashionzoo(
        ray_cluster,
        "train",
        "mlp-small",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--data-dir",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "sweep"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = process.communicate(timeout=400)
    last = err.strip().splitlines()[-1]
    assert process.returncode == 1 and last.startswith("fashionzoo: error: trial 1 of ") and "none" in last, err
    assert "Trial task failed" not in err  # reported by the trial, not raised and retried by Tune


def test_an_object_store_output_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    from fashionzoo.runtime import prediction_files as predictions
    from fashionzoo.runtime.results import Failure

    def rows(fail_after: int | None) -> Iterator:
        for i in range(3):
            if i == fail_after:
                raise RuntimeError("the job failed")
            yield predictions.table([Failure(f"img-{i}.png", "x")] * ROWS)

    ROWS = predictions.ROW_GROUP_ROWS  # a row group is written before the failure: a valid Parquet file by then
    for name in ("out.parquet", "out.jsonl"):
        target = (tmp_path / name).as_uri()
        with pytest.raises(RuntimeError, match="the job failed"):
            predictions.write(rows(fail_after=2), target, progress=False)
        assert list(tmp_path.iterdir()) == []  # no file cut short under the name, no temporary object
        assert predictions.write(rows(fail_after=None), target, progress=False)["images"] == 3 * ROWS
        assert [p.name for p in tmp_path.iterdir()] == [name]
        (tmp_path / name).unlink()
    with pytest.raises(fashionzoo.FashionZooError, match="foo://b/x.parquet: not a place pyarrow can write to"):
        predictions.check_target("foo://b/x.parquet")
    assert predictions.row(Failure("caf\udce9.png", "caf\udce9.png: no such file"))["path"] == "caf\\xe9.png"


def test_an_address_that_accepts_no_connection_fails_at_once() -> None:
    from fashionzoo.distributed.cluster import check_address, remote_reason

    started = time.monotonic()
    with pytest.raises(fashionzoo.FashionZooError, match="cannot connect to the Ray cluster at 127.0.0.1:1 "):
        check_address("127.0.0.1:1")  # Ray itself retried for about 14 minutes
    assert time.monotonic() - started < 10
    ray_text = (
        'ray::MapBatches(Predictor)() (pid=1)\n  File "x.py", line 1\nKeyError: \'Field "path" does not '
        "exist'\n\nray.exceptions.RayTaskError: retried\nTo change retry attempts, backoff, or which errors "
        "are retried, configure ... if"
    )
    assert remote_reason(RuntimeError(ray_text)) == "KeyError: 'Field \"path\" does not exist'"


def test_a_peer_that_dribbles_its_answer_is_given_up_on_at_one_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The address check's bound applied to each read, and up to 9 reads were made: a peer sending one byte every
    few seconds kept it waiting 9 x 5 s = 45 s. The whole answer now has one deadline (here 1 s; the peer's nine
    bytes take 4.5 s)."""
    from fashionzoo.distributed import cluster

    monkeypatch.setattr(cluster, "REACH_SECONDS", 1.0)
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:

        def dribble() -> None:
            peer, _ = server.accept()
            with peer, contextlib.suppress(OSError):
                peer.recv(len(cluster.HTTP2_PREFACE))
                for _ in range(9):  # a frame header of type 0, never SETTINGS: not a gRPC server either way
                    if stop.wait(0.5):
                        return
                    peer.sendall(b"\0")

        threading.Thread(target=dribble, daemon=True).start()
        outcome: list[BaseException | None] = []

        def check() -> None:
            try:
                cluster.check_address(f"127.0.0.1:{server.getsockname()[1]}")
                outcome.append(None)
            except BaseException as error:  # handed to the test's thread
                outcome.append(error)

        started = time.monotonic()
        checking = threading.Thread(target=check, daemon=True)
        checking.start()
        checking.join(timeout=30)  # the test never hangs, whatever the check does
        seconds = time.monotonic() - started
        stop.set()

    assert outcome and isinstance(outcome[0], fashionzoo.FashionZooError), outcome
    assert_one_line(outcome[0], "is not a Ray cluster")
    assert seconds < 2.5, f"waited {seconds:.1f} s for a 1 s deadline"


def test_a_local_list_is_checked_on_the_driver_before_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fashionzoo.distributed.sources import checked_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text("a.png\n")
    (tmp_path / "blank.txt").write_text("\n  \n")
    pq.write_table(pa.table({"file": ["a.png"]}), tmp_path / "other.parquet")
    pq.write_table(pa.table({"path": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    assert checked_source("list.txt") == str(tmp_path / "list.txt")  # Ray's readers run in other folders
    (tmp_path / "parts.parquet").mkdir()  # a list written as a folder of parts: left to Ray
    assert checked_source("parts.parquet") == str(tmp_path / "parts.parquet")
    assert checked_source("photos/") == "photos/" and checked_source("s3://b/list.txt") == "s3://b/list.txt"
    for name, message in (
        ("missing.txt", "no such list of paths"),
        ("blank.txt", "an empty list of paths"),
        ("other.parquet", r"no 'path' column \(it has: file\)"),
        ("empty.parquet", "an empty list of paths"),
    ):
        with pytest.raises(fashionzoo.FashionZooError, match=message):
            checked_source(name)


def test_path_lists_keep_null_rows_as_errors_and_drop_a_byte_order_mark() -> None:
    """Issue 32, item 11: a Parquet list's NULL paths were dropped silently (5 inputs, 3 rows), and a UTF-8 BOM in a
    .txt list broke its first path."""
    from fashionzoo.distributed.sources import NO_PATH, _path_rows

    text = _path_rows(pa.table({"text": ["\ufeffa.png", " ", "b.png"]})).to_pylist()
    assert text == [{"path": "a.png", "error": None}, {"path": "b.png", "error": None}]
    listed = _path_rows(pa.table({"path": ["x.png", None, "y.png", None, "z.png"]})).to_pylist()
    assert [row["path"] for row in listed] == ["x.png", "", "y.png", "", "z.png"]
    assert [row["error"] for row in listed] == [None, NO_PATH, None, NO_PATH, None]


# ================================================================== issue 32: connecting, logging, inputs, models

RAY_LOG_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\]|^\d{4}-\d\d-\d\d [\d:,]+\s+(WARNING|ERROR|INFO)"
)
"""A line of Ray's own logging: its C++ core (``[2026-12-07 03:35:52,761 E 12445 12445] core_worker.cc``) or Python
(``2026-12-07 03:35:39,428 WARNING authentication_token_setup.py``)."""


def _quiet_run(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """A ``fashionzoo`` command on the cluster: its exit status and stderr, which holds only fashionzoo's lines."""
    process = subprocess.run(
        [sys.executable, "-m", "fashionzoo", *args, "--engine", "ray", "--address", cluster.address],
        env={**cluster.driver_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=400,
    )
    return process.returncode, process.stderr


def _not_fashionzoo(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("fashionzoo:")]


@contextlib.contextmanager
def _server_that_is_not_ray(reply: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 (its port) that answers every connection with ``reply`` (nothing: a silent peer)
    and keeps it open; closed on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                peer, _ = listener.accept()
                peers.append(peer)
                peer.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for peer in peers:
            peer.close()


def test_an_address_that_is_not_ray_fails_in_one_line_not_after_minutes(tmp_path: Path) -> None:
    """Issue 32, item 13: a port that accepts connections but is not Ray passed the reachability check; Ray then
    rewrote the address and retried for 200 s and more. Both commands are bounded: a hang fails the test."""
    folder = _images(tmp_path / "photos", 2)
    for reply in (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", b""):
        with _server_that_is_not_ray(reply) as port:
            address = f"127.0.0.1:{port}"
            result = run_cli(
                "predict", str(folder), "--engine", "ray", "--address", address, "--model", "lenet5",
                "--out", str(tmp_path / "rows.jsonl"), timeout=60,
            )  # fmt: skip
        assert_cli_error(result, f"{address} is not a Ray cluster", "--address")
        assert not _not_fashionzoo(result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "rows.jsonl").exists()


def _processes_naming(text: str) -> list[int]:
    """The processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


LOOPBACK_CHECK = """
import json
from fashionzoo.distributed.cluster import connected

with connected(None) as ray:
    node = ray.nodes()[0]
    ports = {int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]), node["NodeManagerPort"],
             node["ObjectManagerPort"]}
    rows = [line.split() for name in ("/proc/net/tcp", "/proc/net/tcp6") for line in open(name).readlines()[1:]]
    listening = [row[1] for row in rows if row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) in ports]
print(json.dumps({"node": node["NodeManagerAddress"], "ports": sorted(ports), "listening": listening}))
"""
"""The zoo's own instance: the node's address, and the local address of every socket listening on its GCS, raylet
and object manager ports, printed once connected() has given stdout back."""
LOOPBACK = ("0100007F", "0000000000000000FFFF00000100007F")
"""127.0.0.1 as ``/proc/net/tcp`` writes it, and as ``/proc/net/tcp6`` writes ::ffff:127.0.0.1."""


@pytest.mark.slow  # starts two local Ray instances
def test_without_an_address_the_zoo_runs_its_own_instance_on_loopback_and_ends_it(tmp_path: Path) -> None:
    """Issue 32, item 12: without --address Ray joined whatever ray_current_cluster named (a closed port: a hang of
    150 s and more; on a shared machine, someone else's cluster), bound the machine's network address, and wrote
    ~/.ray/auth_token. Ray's folder here names a closed port; the zoo must ignore it."""
    folder = _images(tmp_path / "photos", 3)
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="fzt-", dir="/tmp"))  # short: Ray's socket paths live under it
    (ray_tmpdir / "ray").mkdir()  # where Ray looks for the last cluster started: $RAY_TMPDIR/ray
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}\n")
    ray_variables = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_TMPDIR", "HOME")
    env = {key: value for key, value in os.environ.items() if key not in ray_variables}
    env.update(CLI_ENV, RAY_TMPDIR=str(ray_tmpdir), HOME=str(tmp_path / "home"))
    try:
        check = subprocess.run(
            [sys.executable, "-c", LOOPBACK_CHECK], env=env, capture_output=True, text=True, timeout=180
        )
        assert check.returncode == 0, check.stderr[-3000:]
        own = json.loads(check.stdout)
        assert own["node"] == "127.0.0.1" and len(own["ports"]) == 3, own
        assert own["listening"] and all(address.split(":")[0] in LOOPBACK for address in own["listening"]), own
        result = subprocess.run(
            [sys.executable, "-m", "fashionzoo", "predict", str(folder), "--engine", "ray", "--model", "lenet5",
             "--out", str(tmp_path / "rows.jsonl")],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 5
        assert "Ray: 1 inference actors, 1 nodes" in result.stdout and not _not_fashionzoo(result.stderr), result
        assert not (tmp_path / "home" / ".ray").exists()  # no auth_token left to turn token auth on elsewhere
        left = sorted(str(p.relative_to(ray_tmpdir)) for p in ray_tmpdir.rglob("*"))
        assert left == ["ray", "ray/ray_current_cluster"]  # the instance's own folder removed
        deadline = time.monotonic() + 30
        while _processes_naming(str(ray_tmpdir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _processes_naming(str(ray_tmpdir))  # every process of the instance ended with the command
    finally:
        for pid in _processes_naming(str(ray_tmpdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


@pytest.mark.slow  # a two-node Ray cluster
def test_ray_says_nothing_of_its_own_unless_asked(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    """Issue 32, item 27: every run printed a token-auth WARNING and a ``core_worker.cc ... E`` line, and a failed
    job 3-4 Ray ERROR lines before fashionzoo's own. Now stderr is fashionzoo's lines alone, unless
    FASHIONZOO_RAY_LOG_LEVEL asks for Ray's."""
    folder = _images(tmp_path / "photos", 4)
    code, stderr = _quiet_run(
        ray_cluster, "predict", str(folder), "--model", "lenet5", "--out", str(tmp_path / "rows.parquet")
    )
    assert code == 0 and not _not_fashionzoo(stderr), stderr[-3000:]
    (tmp_path / "parts.parquet").mkdir()  # a list of parts without a 'path' column: the job fails on the cluster
    pq.write_table(pa.table({"file": [str(folder / "img-00000.png")]}), tmp_path / "parts.parquet" / "0.parquet")
    code, stderr = _quiet_run(
        ray_cluster, "predict", str(tmp_path / "parts.parquet"), "--out", str(tmp_path / "x.jsonl")
    )
    assert code == 1 and stderr.splitlines() == [stderr.strip()], stderr[-3000:]
    assert_one_line(stderr.strip(), "fashionzoo: error: the Ray job failed: ", "path")
    code, stderr = _quiet_run(
        ray_cluster, "predict", str(folder), "--out", str(tmp_path / "again.parquet"),
        env={"FASHIONZOO_RAY_LOG_LEVEL": "info"},
    )  # fmt: skip
    assert code == 0 and any(RAY_LOG_LINE.match(line) for line in _not_fashionzoo(stderr)), stderr[-3000:]


def _external_data_model(folder: Path) -> Path:
    """The released lenet5 ONNX file saved again with its weights in a file beside it (ONNX external data)."""
    import onnx

    folder.mkdir()
    onnx.save_model(
        onnx.load(str(released("lenet5.onnx"))),
        str(folder / "lenet5.onnx"),
        save_as_external_data=True,
        location="lenet5.weights.bin",  # tensors of 1 KB and more: the weights, not the shapes ONNX Runtime folds
    )
    return folder / "lenet5.onnx"


def test_the_files_of_a_model_are_its_onnx_file_and_its_external_data(tmp_path: Path) -> None:
    """Issue 32, item 24 (the driver's side): the actors got the ``.onnx`` bytes alone."""
    import onnx

    from fashionzoo.distributed.predict import MODEL_NAME, model_files

    path = _external_data_model(tmp_path / "model")
    files = model_files(path)
    assert sorted(files) == sorted([MODEL_NAME, "lenet5.weights.bin"])
    assert files["lenet5.weights.bin"] == (tmp_path / "model" / "lenet5.weights.bin").read_bytes()
    assert len(files["lenet5.weights.bin"]) > 100_000  # the weights, which the .onnx file no longer holds
    assert list(model_files(released("lenet5.onnx"))) == [MODEL_NAME]
    escaping = onnx.load(str(path), load_external_data=False)
    for tensor in escaping.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere.bin"
    onnx.save_model(escaping, str(tmp_path / "model" / "escaping.onnx"))
    with pytest.raises(fashionzoo.FashionZooError) as error:
        model_files(tmp_path / "model" / "escaping.onnx")
    assert_one_line(error, "escaping.onnx: its external data ../elsewhere.bin is not a file in the model's folder")


@pytest.mark.slow  # a two-node Ray cluster
def test_an_onnx_file_with_external_data_runs_on_ray(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    """Issue 32, item 24: the actors got only the ``.onnx`` bytes and failed with a 159-line raylet traceback."""
    model = _external_data_model(tmp_path / "model")
    folder = _images(tmp_path / "photos", 12, seed=4)
    local = _local(str(folder), tmp_path / "local.parquet", "--onnx", str(model))
    args = ("predict", str(folder), "--onnx", str(model), "--top-k", "3", "--out", str(tmp_path / "ray.parquet"))
    code, stderr = _quiet_run(ray_cluster, *args)
    assert code == 0 and not _not_fashionzoo(stderr), stderr[-3000:]
    assert pq.read_table(tmp_path / "ray.parquet").equals(local)


def test_a_line_of_a_text_list_that_is_not_utf8_is_an_error_row_not_the_end_of_the_job() -> None:
    """Issue 32, item 25 (the rows): one latin-1 path failed the whole job with UnicodeDecodeError."""
    from fashionzoo.distributed.sources import _listed_paths

    listed = b"\xef\xbb\xbfa.png\n\ncaf\xe9.png\r\nb.png\n"  # a BOM, a blank line, latin-1, CRLF
    rows = _listed_paths(pa.table({"bytes": [listed], "path": ["/lists/list.txt"]})).to_pylist()
    assert [row["path"] for row in rows] == ["a.png", "caf\\xe9.png", "b.png"]
    assert rows[0]["error"] is None and rows[2]["error"] is None
    assert_one_line(rows[1]["error"], "/lists/list.txt, line 3: not UTF-8 text (invalid continuation byte at byte 3)")


@pytest.mark.slow  # a two-node Ray cluster
def test_a_text_list_with_a_latin1_path_classifies_the_others(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    """Issue 32, item 25: a .txt list with one latin-1 path failed the whole job with UnicodeDecodeError."""
    folder = _images(tmp_path / "photos", 2, seed=5)
    local = {row["path"]: row for row in _local(str(folder), tmp_path / "local.parquet").to_pylist()}
    good = [str(folder / "img-00000.png"), str(folder / "img-00001.png")]
    (tmp_path / "list.txt").write_bytes(f"{good[0]}\n".encode() + b"caf\xe9.png\n" + f"{good[1]}\n".encode())
    args = ("predict", str(tmp_path / "list.txt"), "--top-k", "3", "--out", str(tmp_path / "rows.jsonl"))
    code, stderr = _quiet_run(ray_cluster, *args)
    assert code == 0 and not _not_fashionzoo(stderr), stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [row["path"] for row in rows] == [good[0], "caf\\xe9.png", good[1]]
    assert rows[0] == local[good[0]] and rows[2] == local[good[1]]
    assert rows[1]["label"] is None and "list.txt, line 2: not UTF-8 text" in rows[1]["error"]
