"""Data files (``fashionzoo.data.loading``) under attack: mirrors that never answer, stall or drip, a full disk, a
download killed midway, IDX header bombs, a tampered cache and a failed MNIST download. Real local HTTP servers."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import TOO_BIG, SilentServer, assert_one_line, closed_port_url, everything_under, wait_for

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data import loading as data_loading

SIZE = 28
"""The side of a Fashion-MNIST image."""


class BodyHandler(BaseHTTPRequestHandler):
    """Serves ``server.state.body`` for any path; ``server.state.stall`` sends half of it, then nothing;
    ``server.state.drip`` (seconds) sends it one byte at a time, that long apart."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        state.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(state.body)))
        self.end_headers()
        if state.stall:
            self.wfile.write(state.body[: len(state.body) // 2])
            self.wfile.flush()
            state.release.wait(timeout=30)
            return
        if state.drip:
            for byte in state.body:
                if state.release.wait(timeout=state.drip):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            return
        self.wfile.write(state.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass


@pytest.fixture
def body_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A plain HTTP server for ``data_loading.download``; ``state.url`` serves ``state.body``."""
    monkeypatch.setenv("no_proxy", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BodyHandler)
    httpd.daemon_threads = True
    httpd.state = SimpleNamespace(
        body=b"",
        stall=False,
        drip=0.0,
        requests=0,
        release=threading.Event(),
        url=f"http://127.0.0.1:{httpd.server_address[1]}/train-images-idx3-ubyte.gz",
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def data_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record data_loading.download's back-off sleeps instead of waiting."""
    calls: list[float] = []
    monkeypatch.setattr(data_loading, "time", SimpleNamespace(sleep=calls.append))
    return calls


# -- mirrors that never answer, stall or drip --------------------------------------------------------------------------


def test_data_mirror_that_never_answers_times_out(
    tmp_path: Path, data_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "*")
    target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
    with SilentServer() as silent:
        url = silent.url + "/train-images-idx3-ubyte.gz"
        start = time.perf_counter()
        with pytest.raises(FashionZooError) as excinfo:
            data_loading.download(url, target, "0" * 32, attempts=3, timeout=0.5)
        elapsed = time.perf_counter() - start
        attempts = len(silent.connections)

    assert_one_line(excinfo.value, url, "download failed", "timed out")
    assert attempts == 3 and len(data_sleeps) == 2 and elapsed < 3 * 0.5 + 5
    assert list(target.parent.iterdir()) == []


def test_data_download_that_stalls_mid_file_times_out(
    tmp_path: Path, body_server: SimpleNamespace, data_sleeps: list[float]
) -> None:
    body_server.body, body_server.stall = os.urandom(200_000), True
    target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"

    with pytest.raises(FashionZooError) as excinfo:
        data_loading.download(
            body_server.url, target, hashlib.md5(body_server.body).hexdigest(), attempts=2, timeout=0.5
        )

    assert_one_line(excinfo.value, "download failed", "timed out")
    assert body_server.requests == 2
    assert list(target.parent.iterdir()) == []  # no partial file, no temporary file


def test_slow_drip_mirror_is_abandoned_at_the_deadline(
    tmp_path: Path, body_server: SimpleNamespace, data_sleeps: list[float]
) -> None:
    """One byte every 50 ms: each read returns within the timeout, so only a whole-download deadline stops it."""
    body_server.body, body_server.drip = os.urandom(400), 0.05  # 20 s if let through
    target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"

    with pytest.raises(FashionZooError) as excinfo:
        data_loading.download(
            body_server.url, target, hashlib.md5(body_server.body).hexdigest(), attempts=2, timeout=0.5
        )

    assert_one_line(excinfo.value, "download failed", "too slow", "of 400 bytes")
    assert body_server.requests == 2 and len(data_sleeps) == 1
    assert list(target.parent.iterdir()) == []


# -- a full disk, a download killed midway -----------------------------------------------------------------------------


def test_data_download_on_a_full_disk_is_a_clear_error(
    full_disk: Path, body_server: SimpleNamespace, data_sleeps: list[float]
) -> None:
    body_server.body = os.urandom(TOO_BIG)
    target = full_disk / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz"

    with pytest.raises(FashionZooError) as excinfo:
        data_loading.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest())

    assert_one_line(excinfo.value, "could not write", "No space left on device")
    assert body_server.requests == 1 and data_sleeps == []  # a full disk is not retried
    assert everything_under(full_disk) == []


DOWNLOAD = r"""
import sys
from pathlib import Path
from fashionzoo.data import loading as data_loading
data_loading.download(sys.argv[1], Path(sys.argv[2]), "0" * 32, attempts=1, timeout=30)
"""


def test_download_killed_midway_leaves_a_temporary_file_the_next_run_removes(
    tmp_path: Path, body_server: SimpleNamespace
) -> None:
    body_server.body, body_server.drip = os.urandom(2000), 0.05
    folder = tmp_path / "cache"
    target = folder / "t10k-labels-idx1-ubyte.gz"
    killed = subprocess.Popen([sys.executable, "-c", DOWNLOAD, body_server.url, str(target)])
    try:
        assert wait_for(lambda: folder.is_dir() and any(folder.iterdir())), "the download never started"
        time.sleep(0.3)
    finally:
        killed.kill()
        killed.wait(timeout=30)
    stale = sorted(p.name for p in folder.iterdir())
    assert len(stale) == 1 and stale[0].startswith(".t10k-labels-idx1-ubyte.gz.")  # what SIGKILL leaves behind

    body_server.drip, body_server.body = 0.0, os.urandom(1000)
    data_loading.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest())

    assert sorted(p.name for p in folder.iterdir()) == [target.name]  # the dead process's temporary file is gone
    assert target.read_bytes() == body_server.body


# -- header bombs, a tampered cache ------------------------------------------------------------------------------------


def idx_gzip_bomb(images: int) -> bytes:
    """A valid gzip IDX images file declaring ``images`` x 28 x 28 zero pixels, about 1 kB per 1,000 images."""
    header = struct.pack(">IIII", data_loading.IMAGES_MAGIC, images, SIZE, SIZE)
    blocks, block = 1000, bytes(images * SIZE * SIZE // 1000)
    assert len(block) * blocks == images * SIZE * SIZE
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(header) + compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every block
    crc = zlib.crc32(header)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    stream = first + repeated * (blocks - 1) + compressor.flush(zlib.Z_FINISH)
    trailer = struct.pack("<II", crc, (len(header) + len(block) * blocks) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + trailer


def test_idx_gzip_bomb_under_the_cap_is_refused_from_the_headers(tmp_path: Path, idx_bytes) -> None:
    """1,300,000 x 28 x 28 declared (1.02 GB, under the 1 GiB cap) beside a 10-label file."""
    import tracemalloc

    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(idx_gzip_bomb(1_300_000))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8))))
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").stat().st_size < 1 << 20

    tracemalloc.start()
    try:
        with pytest.raises(FashionZooError) as excinfo:
            data_loading.load_split("test", data_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert_one_line(excinfo.value, "t10k-images-idx3-ubyte.gz", "1300000 images", "has 10 labels")
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB allocated"  # was 2.6 GB: the images decompressed first


@pytest.fixture
def official_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> Path:
    """A FASHIONZOO_HOME whose data cache holds the official test files, as a download leaves them."""
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASHIONZOO_DATA_DIR", raising=False)
    cache = tmp_path / "home" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(shared_data / name, cache / name)
    return cache


def test_cached_labels_swapped_for_a_symlink_to_zeros_are_refused(
    official_cache: Path, tmp_path: Path, idx_bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(data_loading.load_split("test")) == 10_000  # genuine: verified once (MD5) and remembered
    zeros = tmp_path / "zeros-idx1-ubyte.gz"
    zeros.write_bytes(gzip.compress(idx_bytes(np.zeros(10_000, np.uint8))))
    labels = official_cache / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.symlink_to(zeros)

    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")

    assert_one_line(excinfo.value, str(labels), "not the official", "deleted", "run the command again")
    assert not os.path.lexists(labels) and zeros.is_file()  # the link is removed, never what it points to


def test_verified_cache_files_are_not_hashed_again(official_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_loading.load_split("test")
    monkeypatch.setattr(
        data_loading, "file_digest", lambda *args: pytest.fail("an unchanged cached file was hashed again")
    )

    assert len(data_loading.load_split("test")) == 10_000  # size, mtime and inode as recorded: used as is


def test_a_failed_mnist_download_names_the_mnist_folder_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", closed_port_url())
    monkeypatch.delenv("FASHIONZOO_MNIST_DIR", raising=False)
    monkeypatch.setattr(
        data_loading, "_system_copy", lambda spec, official: None
    )  # no Debian copy: the mirror is asked

    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", "mnist")

    assert_one_line(excinfo.value, "download failed", "--data-dir / FASHIONZOO_MNIST_DIR")
