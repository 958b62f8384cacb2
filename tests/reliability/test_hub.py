"""Released files from the Hub and the package (``fashionzoo.publish.hub``) under attack: another model's file swapped
in, a Hub that never answers or stalls mid-body, two processes fetching one file, a full disk and records whose names
leave their folder. Everything goes through huggingface_hub's HTTP code to the local Hub look-alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import huggingface_hub
import huggingface_hub.file_download
import pytest
from helpers import (
    COMMIT_A,
    CONTENT_A,
    CONTENT_B,
    FILENAME,
    REPO,
    TOO_BIG,
    SilentServer,
    assert_one_line,
    cached_files,
    entry_with,
    everything_under,
    make_entry,
    sha256,
    wait_for,
)
from hub_server import HubServer

from fashionzoo.core.errors import FashionZooError
from fashionzoo.publish import hub

OTHER_MODELS_FILE = os.urandom(len(CONTENT_A))
"""Another model's released file of exactly the same size (a size check alone would not notice the swap)."""
SWAPS = {"other-model-same-size": OTHER_MODELS_FILE, "other-model-other-size": CONTENT_B}


@pytest.mark.parametrize("swap", SWAPS)
@pytest.mark.parametrize(("key", "filename"), [("weights", FILENAME), ("onnx", "lenet5.onnx")])
def test_cached_file_swapped_for_another_models_file_is_refused(
    server: HubServer, key: str, filename: str, swap: str
) -> None:
    server.add(REPO, COMMIT_A, filename, CONTENT_A)
    entry = entry_with({key: (filename, CONTENT_A)})
    path = hub.released_file(entry, key)
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(SWAPS[swap])  # same name, another model's bytes
    before = server.count()

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry, key)

    assert_one_line(excinfo.value, "SHA-256", filename, "deleted")
    assert server.count() == before  # refused from the cache, before any use, without a request
    assert cached_files() == []
    assert hub.released_file(entry, key).read_bytes() == CONTENT_A  # the next run downloads the genuine file


@pytest.mark.parametrize("swap", SWAPS)
def test_shipped_onnx_swapped_for_another_models_file_is_refused(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setattr(hub, "shipped_dir", lambda: shipped)
    (shipped / "lenet5.onnx").write_bytes(SWAPS[swap])

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry_with({"onnx": ("lenet5.onnx", CONTENT_A)}, shipped=("onnx",)), "onnx")

    assert_one_line(excinfo.value, "SHA-256", "reinstall")
    assert (shipped / "lenet5.onnx").read_bytes() == SWAPS[swap]  # files inside the package are never deleted
    assert server.requests == []


# -- a hub that never answers, or stops mid-body -----------------------------------------------------------------------


@pytest.fixture
def short_hub_timeouts(monkeypatch: pytest.MonkeyPatch) -> float:
    """huggingface_hub's timeouts cut to 0.5 s (defaults: 10 s for the metadata call, then 60 s for its retries,
    10 s per body read)."""
    timeout = 0.5
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ETAG_TIMEOUT", timeout)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", timeout)
    monkeypatch.setattr(huggingface_hub.file_download, "_ETAG_RETRY_TIMEOUT", timeout)
    return timeout


def test_hub_that_never_answers_times_out_with_bounded_retries(
    hub_env: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float], short_hub_timeouts: float
) -> None:
    with SilentServer() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        start = time.perf_counter()
        with pytest.raises(FashionZooError) as excinfo:
            hub.released_file(make_entry())
        elapsed = time.perf_counter() - start
        attempts = len(silent.connections)

    print(f"silent hub: {attempts} connections, {elapsed:.1f} s, sleeps {sleeps}")  # quoted in docs/reliability.md
    assert_one_line(excinfo.value, FILENAME, "could not be reached")
    assert 2 <= attempts <= 8, attempts  # one metadata call, then huggingface_hub's bounded retries
    assert elapsed < attempts * short_hub_timeouts + 10
    assert len(sleeps) <= attempts
    assert cached_files() == []


def test_hub_body_that_stalls_times_out_and_leaves_no_partial_file(
    server: HubServer, sleeps: list[float], short_hub_timeouts: float
) -> None:
    server.pause_mid_body = threading.Event()  # never set during the download: half the file, then silence
    try:
        with pytest.raises(FashionZooError) as excinfo:
            hub.released_file(make_entry())
    finally:
        server.pause_mid_body.set()

    print(f"stalled hub body: {server.count('GET')} GET, message: {excinfo.value}")  # quoted in docs/reliability.md
    assert_one_line(excinfo.value, FILENAME, "interrupted", "Timeout")
    assert server.count("HEAD") == 1 and 2 <= server.count("GET") <= 8  # resumed a bounded number of times
    assert cached_files() == []


# -- two processes, one cached file ------------------------------------------------------------------------------------


FETCH = r"""
import dataclasses, hashlib, json, sys
from fashionzoo.publish import hub
from fashionzoo.registry import FileRecord, WeightsRecord, get_entry
repo, revision, filename, digest, size = sys.argv[1:6]
record = FileRecord(filename=filename, sha256=digest, size=int(size))
weights = WeightsRecord(repo_id=repo, revision=revision, files={"weights": record}, metrics={})
path = hub.released_file(dataclasses.replace(get_entry("lenet5"), weights=weights))
print(json.dumps({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
"""


def test_two_processes_fetching_the_same_file_at_once(hub_env: Path) -> None:
    content = os.urandom(512 * 1024)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env |= {
        "FASHIONZOO_HOME": str(hub_env / "home"),
        "HF_HOME": str(hub_env / "hf"),
        "no_proxy": "*",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    args = [REPO, COMMIT_A, FILENAME, sha256(content), str(len(content))]
    with HubServer() as running:
        running.add(REPO, COMMIT_A, FILENAME, content)
        env["HF_ENDPOINT"] = running.url
        running.pause_mid_body = threading.Event()  # the first download stops half-way until released
        popen = [sys.executable, "-c", FETCH, *args]
        first = subprocess.Popen(popen, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert running.paused.wait(timeout=60), "the first process never started its download"
            second = subprocess.Popen(popen, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert wait_for(lambda: running.count("HEAD") == 2), "the second process never asked for the file"
            time.sleep(0.5)  # let it reach huggingface_hub's file lock while the first download is still cut
        finally:
            running.pause_mid_body.set()
        outputs = [process.communicate(timeout=60) for process in (first, second)]
        gets = running.count("GET")
        print(f"two processes: {running.count('HEAD')} HEAD, {gets} GET")  # quoted in docs/reliability.md

    for process, (_, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert results[0] == results[1]  # the same snapshot path, the same verified bytes
    assert results[0]["sha256"] == sha256(content)
    path = Path(results[0]["path"])
    assert path.read_bytes() == content
    assert gets == 1  # the second process waited for the lock and reused the first one's blob
    assert cached_files() == [path.resolve(), path]  # one blob, one link, no *.incomplete left


# -- a full disk, names that leave their folder ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Not enough free disk space")  # huggingface_hub's own early warning
def test_hub_fetch_on_a_full_disk_is_a_clear_error(
    full_disk: Path, server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONZOO_HOME", str(full_disk))
    big = os.urandom(TOO_BIG)
    server.add(REPO, COMMIT_A, "big.onnx", big)

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry_with({"onnx": ("big.onnx", big)}), "onnx")

    assert_one_line(excinfo.value, "big.onnx", "No space left on device", "free some disk space")
    assert server.count("GET") == 1
    assert [name for name in everything_under(full_disk) if "/blobs/" in name or "/snapshots/" in name] == []
    assert shutil.disk_usage(full_disk).used < 64 << 10  # the partial download was deleted, the space is back


@pytest.mark.parametrize("name", ["../outside.onnx", "../../outside.onnx", "/tmp/outside.onnx", "..", "sub/x.onnx"])
@pytest.mark.parametrize("shipped", [True, False], ids=["shipped", "hub"])
def test_hub_resolve_never_leaves_its_folders(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, shipped: bool
) -> None:
    """A record forced past FileRecord's check (object.__setattr__) is still refused, before any file or request."""
    package = tmp_path / "pkg" / "checkpoints"
    package.mkdir(parents=True)
    monkeypatch.setattr(hub, "shipped_dir", lambda: package)
    (tmp_path / "pkg" / "outside.onnx").write_bytes(CONTENT_A)  # bait: the right bytes, outside the folder
    (tmp_path / "outside.onnx").write_bytes(CONTENT_A)
    entry = entry_with({"onnx": ("lenet5.onnx", CONTENT_A)}, shipped=("onnx",) if shipped else ())
    object.__setattr__(entry.weights.files["onnx"], "filename", name)
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(FashionZooError) as excinfo:
        hub.released_file(entry, "onnx")

    assert_one_line(excinfo.value, "outside its folder")
    assert server.requests == []
    assert sorted(tmp_path.rglob("*")) == before  # nothing created or deleted anywhere
