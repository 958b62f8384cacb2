"""Reliability and security cases (issues 7 and 16) not already covered by test_data, test_hub and test_preprocessing.

``docs/reliability.md`` maps every case of the issues to the test that tries it (here or in the older modules)
and what was observed. Everything runs against real files, real local HTTP servers and, for the disk-full
cases, a real 1 MiB tmpfs (skipped when it cannot be mounted). TensorFlow is only ever imported by the
``fashionzoo`` commands these tests start in subprocesses, as a user would run them.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
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

import huggingface_hub
import huggingface_hub.file_download
import numpy as np
import pytest
import test_hub
from hub_server import HubServer
from PIL import Image
from test_hub import COMMIT_A, CONTENT_A, CONTENT_B, FILENAME, REPO, cached_files, make_entry

from fashionzoo import data, hub, preprocessing, registry
from fashionzoo._files import FashionZooError, atomic_open, atomic_path, check_can_write
from fashionzoo.registry import FileRecord, WeightsRecord, get_entry, is_safe_filename

ROOT = Path(__file__).resolve().parents[1]
SIZE = preprocessing.SIZE

hub_env, server, sleeps = test_hub.hub_env, test_hub.server, test_hub.sleeps
"""Fixtures of test_hub: isolated FASHIONZOO_HOME and huggingface_hub settings, the Hub look-alike, skipped sleeps."""


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def assert_one_line(error: BaseException, *fragments: str) -> str:
    message = str(error)
    assert message.strip() and "\n" not in message, repr(message)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ============================================================================================================ images


def bar(horizontal: bool, size: int = 60) -> Image.Image:
    """A black bar on white: wide (``horizontal``) or tall."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    img.paste((0, 0, 0), (5, 25, 55, 35) if horizontal else (25, 5, 35, 55))
    return img


def extent(result: np.ndarray) -> tuple[int, int]:
    """(rows, columns) holding garment pixels."""
    return int(np.flatnonzero(result.max(axis=1)).size), int(np.flatnonzero(result.max(axis=0)).size)


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True})], ids=["gif", "webp"])
@pytest.mark.parametrize("first_wide", [True, False], ids=["wide-first", "tall-first"])
def test_animated_image_uses_its_first_frame(tmp_path: Path, fmt: str, options: dict, first_wide: bool) -> None:
    path = tmp_path / f"animated.{fmt.lower()}"
    bar(first_wide).save(path, fmt, save_all=True, append_images=[bar(not first_wide)], duration=100, loop=0, **options)
    with Image.open(path) as img:
        assert img.n_frames == 2 and img.is_animated

    rows, cols = extent(preprocessing.preprocess_file(path))

    assert (rows, cols)[1 if first_wide else 0] == SIZE  # the first frame's long side fills the canvas
    assert (rows, cols)[0 if first_wide else 1] < 10


def _one_pixel(mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.array([[40_000]], dtype=np.uint16))
    colour = {"1": 1, "L": 90, "RGB": (200, 10, 10), "RGBA": (0, 0, 0, 0), "CMYK": (0, 200, 200, 0), "P": 3}[mode]
    return Image.new(mode, (1, 1), colour)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "PNG"),
        ("RGB", "JPEG"),
        ("L", "GIF"),
        ("RGB", "WEBP"),
        ("RGBA", "PNG"),
        ("I;16", "PNG"),
        ("CMYK", "JPEG"),
        ("1", "PNG"),
        ("P", "BMP"),
    ],
)
def test_one_pixel_image_gives_a_black_28x28(tmp_path: Path, mode: str, fmt: str) -> None:
    path = tmp_path / f"dot.{fmt.lower()}"
    _one_pixel(mode).save(path, fmt)
    with Image.open(path) as img:
        assert img.size == (1, 1)

    result = preprocessing.preprocess_file(path)

    assert result.shape == (SIZE, SIZE) and result.dtype == np.uint8 and not result.any()


@pytest.mark.parametrize("size", [(1, 3000), (3000, 1), (2, 2)], ids=["1x3000", "3000x1", "2x2"])
def test_degenerate_strips_give_a_28x28(tmp_path: Path, size: tuple[int, int]) -> None:
    img = Image.new("L", size, 255)
    img.putpixel((size[0] // 2, size[1] // 2), 0)
    path = tmp_path / "strip.png"
    img.save(path)

    result = preprocessing.preprocess_file(path)

    assert result.shape == (SIZE, SIZE) and result.dtype == np.uint8
    # a lone dark pixel is no garment: the garment finder keeps only a real outline, so the frame stays black, and
    # predict reports the file as blank ("nothing to classify") instead of guessing
    assert result.max() == 0


@pytest.mark.parametrize(
    ("fmt", "wrong_name"),
    [
        ("PNG", "photo.jpg"),
        ("JPEG", "photo.png"),
        ("WEBP", "photo.gif"),
        ("GIF", "photo.webp"),
        ("PNG", "photo"),
        ("PNG", "photo.txt"),
    ],
)
def test_wrong_extension_is_read_by_content(tmp_path: Path, fmt: str, wrong_name: str) -> None:
    photo = bar(True, 90)
    right = tmp_path / f"right.{fmt.lower()}"
    photo.save(right, fmt)
    wrong = tmp_path / wrong_name
    shutil.copyfile(right, wrong)

    np.testing.assert_array_equal(preprocessing.preprocess_file(wrong), preprocessing.preprocess_file(right))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"),
        ("data.png", b'{"error": "rate limited"}'),
        ("notes.webp", "caf\u00e9 cr\u00e8me\n".encode()),
    ],
)
def test_text_named_as_an_image_is_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FashionZooError) as excinfo:
        preprocessing.preprocess_file(path)
    assert_one_line(excinfo.value, name, "not an image")


# -- big images: memory measured in a fresh process (peak RSS growth around one preprocess_file call) --------------

MEASURE = r"""
import json, resource, sys, time
from PIL import Image
from fashionzoo import preprocessing
from fashionzoo._files import FashionZooError

def peak_kb():
    # VmHWM belongs to this process's own memory map; ru_maxrss would carry the parent's peak across fork + exec.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

Image.init()  # format plugins are imported lazily: count them in the baseline
base = peak_kb()
start = time.perf_counter()
try:
    result = preprocessing.preprocess_file(sys.argv[1])
    outcome = {"shape": list(result.shape), "dtype": str(result.dtype), "centre": float(result[10:18, 10:18].mean()),
               "corners": int(max(result[0, 0], result[0, -1], result[-1, 0], result[-1, -1]))}
except FashionZooError as error:
    outcome = {"error": str(error)}
outcome["seconds"] = time.perf_counter() - start
outcome["peak_growth_mb"] = (peak_kb() - base) / 1024
print(json.dumps(outcome))
"""

PEAK_LIMIT_MB = 450
"""Allowed peak RSS growth for a legal 36-megapixel photo: 12.5 bytes per pixel, about 3 copies of the decoded RGB
image. Measured: ~280 MB for RGB JPEG; a 16-bit PNG took ~960 MB before ``_scale_to_8bit`` worked in blocks."""


def measure(path: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    print(f"{path.name}: {outcome}")  # shown with -s: the figures quoted in docs/reliability.md
    return outcome


def garment_photo(mode: str, side: int) -> Image.Image:
    """A ``side`` x ``side`` product photo: a dark-red garment-sized block on white."""
    colour = {"RGB": (120, 60, 40), "CMYK": (20, 90, 100, 10)}[mode]
    photo = Image.new(mode, (side, side), (255, 255, 255) if mode == "RGB" else (0, 0, 0, 0))
    photo.paste(colour, (side // 4, side // 8, side - side // 4, side - side // 8))
    return photo


def test_huge_legal_jpeg_photo_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    garment_photo("RGB", 6000).save(path, quality=90)  # 36 MP, under the 40 MP limit

    outcome = measure(path)

    assert outcome.get("shape") == [SIZE, SIZE] and outcome["dtype"] == "uint8", outcome
    assert outcome["centre"] > 100 and outcome["corners"] <= 10
    assert outcome["peak_growth_mb"] < PEAK_LIMIT_MB


def test_huge_legal_16_bit_png_keeps_memory_bounded(tmp_path: Path) -> None:
    pixels = np.full((6000, 6000), 65535, dtype=np.uint16)
    pixels[750:5250, 1500:4500] = 15_000
    path = tmp_path / "huge16.png"
    Image.fromarray(pixels).save(path)
    del pixels

    outcome = measure(path)

    assert outcome.get("shape") == [SIZE, SIZE], outcome
    assert outcome["centre"] > 100 and outcome["corners"] <= 10
    assert outcome["peak_growth_mb"] < PEAK_LIMIT_MB


FUZZED_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d494844520000001d0000001e0100000000f87c280cf76a008049444154789c7dce310e01"
    "511486d1efdd772b51984c446f74cad158885de8ec44a5d552b103914c21910c4165013ac5a399c26f07d39cfa040118"
    "ed1e82e3f4678693ca08ba0e0b39697f043d76858cf7fa85d1fbad40d57d20a3"
)
"""A 128-byte case found by scripts/fuzz.py: a 29x30 1-bit PNG whose IDAT chunk declares 0xF76A0080 bytes (3.9 GB)."""

CAPPED = r"""
import resource, sys
from fashionzoo import preprocessing
from fashionzoo._files import FashionZooError
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))  # 1 GB of address space left
try:
    preprocessing.preprocess_file(sys.argv[1])
    print("ok")
except FashionZooError as error:
    print(error)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmSize from /proc (Linux)")
def test_chunk_declaring_gigabytes_is_not_allocated(tmp_path: Path) -> None:
    """Pillow reads the rest of an IDAT chunk with one read(declared length); preprocessing caps reads at the file
    size, so the file is reported as corrupt, not as "not enough memory", even with 1 GB of address space left."""
    path = tmp_path / "fuzzed.png"
    path.write_bytes(FUZZED_PNG)

    result = subprocess.run([sys.executable, "-c", CAPPED, str(path)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert_one_line(FashionZooError(result.stdout.strip()), "fuzzed.png", "truncated or corrupt")
    assert "memory" not in result.stdout


def png_bomb(side: int) -> bytes:
    """A valid all-black 1-bit PNG of ``side`` x ``side`` pixels, small on disk (repeated deflate blocks)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = 1000
    block = bytes(1 + (side + 7) // 8) * rows  # filter byte + packed bits, per row
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    middle = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(block) + compressor.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(side // rows):
        adler = zlib.adler32(block, adler)
    stream = first + middle * (side // rows - 2) + last[:-4] + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def test_png_bomb_helper_builds_a_valid_png() -> None:
    with Image.open(io.BytesIO(png_bomb(3000))) as img:
        assert img.size == (3000, 3000) and img.mode == "1"
        img.load()
        assert img.getextrema() == (0, 0)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(50_000))  # 2.5 gigapixels, ~300 kB on disk, 312 MB of deflated rows
    assert path.stat().st_size < 1 << 20

    outcome = measure(path)

    assert_one_line(FashionZooError(outcome.get("error", "")), "bomb.png", "megapixel limit")
    assert outcome["peak_growth_mb"] < 20 and outcome["seconds"] < 2


# =============================================================================================== weights and ONNX


def entry_with(files: dict[str, tuple[str, bytes]], shipped: tuple[str, ...] = ()) -> registry.ModelEntry:
    """The lenet5 entry with records ``key -> (filename, content)`` pinned at COMMIT_A of REPO."""
    records = {
        key: FileRecord(filename=name, sha256=sha256(content), size=len(content))
        for key, (name, content) in files.items()
    }
    weights = WeightsRecord(repo_id=REPO, revision=COMMIT_A, files=records, metrics={}, shipped=shipped)
    return dataclasses.replace(get_entry("lenet5"), weights=weights)


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
    path = hub.resolve(entry, key)
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(SWAPS[swap])  # same name, another model's bytes
    before = server.count()

    with pytest.raises(FashionZooError) as excinfo:
        hub.resolve(entry, key)

    assert_one_line(excinfo.value, "SHA-256", filename, "deleted")
    assert server.count() == before  # refused from the cache, before any use, without a request
    assert cached_files() == []
    assert hub.resolve(entry, key).read_bytes() == CONTENT_A  # the next run downloads the genuine file


@pytest.mark.parametrize("swap", SWAPS)
def test_shipped_onnx_swapped_for_another_models_file_is_refused(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setattr(hub, "shipped_dir", lambda: shipped)
    (shipped / "lenet5.onnx").write_bytes(SWAPS[swap])

    with pytest.raises(FashionZooError) as excinfo:
        hub.resolve(entry_with({"onnx": ("lenet5.onnx", CONTENT_A)}, shipped=("onnx",)), "onnx")

    assert_one_line(excinfo.value, "SHA-256", "reinstall")
    assert (shipped / "lenet5.onnx").read_bytes() == SWAPS[swap]  # files inside the package are never deleted
    assert server.requests == []


# ======================================================================================================= network


class SilentServer:
    """Accepts TCP connections and never answers: a hung server, or a network path that black-holes replies."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(connection)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self._sock.close()


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
            hub.resolve(make_entry())
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
            hub.resolve(make_entry())
    finally:
        server.pause_mid_body.set()

    print(f"stalled hub body: {server.count('GET')} GET, message: {excinfo.value}")  # quoted in docs/reliability.md
    assert_one_line(excinfo.value, FILENAME, "interrupted", "Timeout")
    assert server.count("HEAD") == 1 and 2 <= server.count("GET") <= 8  # resumed a bounded number of times
    assert cached_files() == []


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
    """A plain HTTP server for ``data.download``; ``state.url`` serves ``state.body``."""
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
    """Record data.download's back-off sleeps instead of waiting."""
    calls: list[float] = []
    monkeypatch.setattr(data, "time", SimpleNamespace(sleep=calls.append))
    return calls


def test_data_mirror_that_never_answers_times_out(
    tmp_path: Path, data_sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "*")
    target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
    with SilentServer() as silent:
        url = silent.url + "/train-images-idx3-ubyte.gz"
        start = time.perf_counter()
        with pytest.raises(FashionZooError) as excinfo:
            data.download(url, target, "0" * 32, attempts=3, timeout=0.5)
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
        data.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest(), attempts=2, timeout=0.5)

    assert_one_line(excinfo.value, "download failed", "timed out")
    assert body_server.requests == 2
    assert list(target.parent.iterdir()) == []  # no partial file, no temporary file


# ================================================================================= two processes, one cached file

FETCH = r"""
import dataclasses, hashlib, json, sys
from fashionzoo import hub
from fashionzoo.registry import FileRecord, WeightsRecord, get_entry
repo, revision, filename, digest, size = sys.argv[1:6]
record = FileRecord(filename=filename, sha256=digest, size=int(size))
weights = WeightsRecord(repo_id=repo, revision=revision, files={"weights": record}, metrics={})
path = hub.resolve(dataclasses.replace(get_entry("lenet5"), weights=weights))
print(json.dumps({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
"""


def _wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


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
            assert _wait_for(lambda: running.count("HEAD") == 2), "the second process never asked for the file"
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


# ===================================================================================================== disk full


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on a fresh folder (root only), unmounted afterwards."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a 1 MiB tmpfs needs root and mount(8)")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


TOO_BIG = 2 << 20  # twice the tmpfs


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


def test_data_download_on_a_full_disk_is_a_clear_error(
    full_disk: Path, body_server: SimpleNamespace, data_sleeps: list[float]
) -> None:
    body_server.body = os.urandom(TOO_BIG)
    target = full_disk / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz"

    with pytest.raises(FashionZooError) as excinfo:
        data.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest())

    assert_one_line(excinfo.value, "could not write", "No space left on device")
    assert body_server.requests == 1 and data_sleeps == []  # a full disk is not retried
    assert everything_under(full_disk) == []


@pytest.mark.filterwarnings("ignore:Not enough free disk space")  # huggingface_hub's own early warning
def test_hub_fetch_on_a_full_disk_is_a_clear_error(
    full_disk: Path, server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHIONZOO_HOME", str(full_disk))
    big = os.urandom(TOO_BIG)
    server.add(REPO, COMMIT_A, "big.onnx", big)

    with pytest.raises(FashionZooError) as excinfo:
        hub.resolve(entry_with({"onnx": ("big.onnx", big)}), "onnx")

    assert_one_line(excinfo.value, "big.onnx", "No space left on device", "free some disk space")
    assert server.count("GET") == 1
    assert [name for name in everything_under(full_disk) if "/blobs/" in name or "/snapshots/" in name] == []
    assert shutil.disk_usage(full_disk).used < 64 << 10  # the partial download was deleted, the space is back


# ================================================================================================ path traversal

UNSAFE_NAMES = [
    "../lenet5.weights.h5",
    "..",
    ".",
    "a/../../b.onnx",
    "/etc/passwd",
    "sub/lenet5.onnx",
    "..\\evil.onnx",
    "C:evil.onnx",
    ".hidden.onnx",
    "",
    "name\n.onnx",
    "nul\x00.onnx",
    "~/x.onnx",
    "a" * 300,
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_file_record_refuses_names_that_leave_their_folder(name: str) -> None:
    assert not is_safe_filename(name)
    with pytest.raises(ValueError, match="not a plain file name"):
        FileRecord(filename=name, sha256=sha256(b""), size=0)


@pytest.mark.parametrize(
    "name",
    [
        "lenet5.weights.h5",
        "cnn.onnx",
        "cnn.int8.onnx",
        "mlp-64-128-64-32.onnx",
        "README.md",
        "metrics.json",
        "resnet50-tl.weights.h5",
    ],
)
def test_file_record_accepts_released_names(name: str) -> None:
    assert FileRecord(filename=name, sha256=sha256(b"x"), size=1).filename == name


@pytest.mark.parametrize(("field", "value"), [("sha256", "ABC"), ("sha256", "g" * 64), ("size", -1), ("size", "12")])
def test_file_record_refuses_malformed_checksums_and_sizes(field: str, value: object) -> None:
    fields = {"filename": "cnn.onnx", "sha256": sha256(b""), "size": 0} | {field: value}
    with pytest.raises(ValueError):
        FileRecord(**fields)


def test_weights_json_with_a_traversing_name_fails_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"filename": "../../outside.onnx", "sha256": sha256(b""), "size": 0}
    (tmp_path / "weights.json").write_text(
        json.dumps({"lenet5": {"repo_id": REPO, "revision": COMMIT_A, "files": {"onnx": record}, "metrics": {}}}),
        encoding="utf-8",
    )
    monkeypatch.setattr(registry.resources, "files", lambda package: tmp_path)

    with pytest.raises(ValueError, match="outside.onnx"):
        registry._load_weights_records()


def test_every_released_record_has_a_plain_name() -> None:
    for entry in registry.REGISTRY.values():
        for record in entry.weights.files.values() if entry.weights else ():
            assert is_safe_filename(record.filename), (entry.name, record.filename)


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
        hub.resolve(entry, "onnx")

    assert_one_line(excinfo.value, "outside its folder")
    assert server.requests == []
    assert sorted(tmp_path.rglob("*")) == before  # nothing created or deleted anywhere


# ================================================================================= nothing downloaded runs as code

FORBIDDEN = {
    "pickle": r"\b(c?pickle|cloudpickle|dill|joblib|marshal|shelve)\b",
    "allow_pickle=True": r"allow_pickle\s*=\s*True",
    "eval(": r"\beval\s*\(",
    "exec(": r"\bexec\s*\(",
    "safe_mode=False": r"safe_mode\s*=\s*False",
    "load_model(": r"\bload_model\s*\(|keras\.models\.load_model|saving\.load_model",
    "torch.load / yaml.load": r"\btorch\.load\s*\(|\byaml\.(unsafe_)?load\s*\(",
}
SOURCES = sorted((ROOT / "src" / "fashionzoo").rglob("*.py"))


def test_forbidden_patterns_do_match_what_they_forbid() -> None:
    planted = [
        "import pickle",
        "np.load(f, allow_pickle=True)",
        "eval(text)",
        "exec (code)",
        "keras.saving.load_model(p, safe_mode=False)",
        "keras.models.load_model(p)",
        "yaml.load(s)",
    ]
    for line in planted:
        assert any(re.search(pattern, line) for pattern in FORBIDDEN.values()), line


def test_no_source_file_deserialises_downloads_as_code() -> None:
    assert len(SOURCES) >= 10
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for what, pattern in FORBIDDEN.items()
        if re.search(pattern, line)
    ]
    assert hits == []


def test_predict_streams_a_directory_of_10000_images_with_bounded_memory(tmp_path: Path) -> None:
    """10,000 files go through in batches with a progress count, and the process stays small."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10_000):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    onnx_path = hub.resolve(get_entry("lenet5"), "onnx")
    # VmHWM: the peak RSS of this process image (ru_maxrss would include the forking pytest process)
    code = (
        "import sys\n"
        "from fashionzoo.cli import main\n"
        "try:\n"
        f"    main(['predict', {str(folder)!r}, '--onnx', {str(onnx_path)!r}, '--model', 'lenet5', '--json',\n"
        "          '--progress', '--batch-size', '500'])\n"
        "except SystemExit:\n"
        "    peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "    print('peak_kb', peak.split()[1], file=sys.stderr)\n"
        "    raise\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 10_000 and rows[0]["file"].endswith("00000.png") and rows[-1]["file"].endswith("09999.png")
    assert "fashionzoo: 500 files done" in result.stderr and "fashionzoo: 10000 files done" in result.stderr
    peak_mb = int(result.stderr.split("peak_kb")[-1].split()[0]) / 1024
    assert peak_mb < 400, f"peak memory {peak_mb:.0f} MB"


# ====================================================================================== issue 16: the CLI, attacked
# Each case runs the installed command line in a fresh process, as the hostile user did.

CLI_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(sys.path)}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m fashionzoo ARGS`` in a fresh process (TensorFlow's C++ log silenced)."""
    return subprocess.run([sys.executable, "-m", "fashionzoo", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **CLI_ENV, **(env or {})}, cwd=cwd)  # fmt: skip


def assert_cli_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 1, one ``fashionzoo: error:`` line holding ``fragments`` and no traceback; returns the message."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("fashionzoo: error:")]
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]
    return assert_one_line(FashionZooError(errors[0]), *fragments)


def released(filename: str) -> Path:
    return hub.shipped_dir() / filename


def weights_bomb(folder: Path) -> Path:
    """lenet5's released weights with the dense kernel replaced by a gzip-chunked dataset declaring 250 million
    float32 values (1 GB) and holding none: 205 kB on disk."""
    import h5py

    bomb = folder / "bomb.weights.h5"
    shutil.copyfile(released("lenet5.weights.h5"), bomb)
    with h5py.File(bomb, "a") as file:
        del file["layers/dense/vars/0"]
        file["layers/dense/vars"].create_dataset("0", shape=(250_000_000,), dtype="float32", chunks=(1 << 20,),
                                                 compression="gzip")  # fmt: skip
    assert bomb.stat().st_size < 300_000
    return bomb


LOAD_PEAK = r"""
import json, sys, time
from fashionzoo import models
from fashionzoo._files import FashionZooError

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

models.build("lenet5").save_weights  # TensorFlow and the builder warmed up: count them in the baseline
base, start = peak_kb(), time.perf_counter()
try:
    models.load("lenet5", sys.argv[1])
    outcome = {"error": None}
except FashionZooError as error:
    outcome = {"error": str(error)}
outcome.update(seconds=time.perf_counter() - start, peak_growth_mb=(peak_kb() - base) / 1024)
print(json.dumps(outcome))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc (Linux)")
def test_weights_bomb_is_refused_from_its_structure_with_bounded_memory(tmp_path: Path) -> None:
    bomb = weights_bomb(tmp_path)

    result = subprocess.run([sys.executable, "-c", LOAD_PEAK, str(bomb)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, **CLI_ENV})  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    print(f"weights bomb: {outcome}")  # quoted in docs/reliability.md
    assert_one_line(FashionZooError(outcome["error"]), "bomb.weights.h5", "layers/dense/vars/0", "(250000000,)",
                    "(256, 120)")  # fmt: skip
    assert outcome["peak_growth_mb"] < 100  # Keras alone allocated 4.5 GB for it


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "lenet5", "--weights", "{bomb}", "--data-dir", "{data}"],
        ["export", "lenet5", "--weights", "{bomb}", "--out", "{out}/lenet5.onnx", "--data-dir", "{data}"],
        ["predict", "{image}", "--model", "lenet5", "--backend", "keras", "--weights", "{bomb}"],
        ["bench", "lenet5", "--weights", "{bomb}", "--batch-sizes", "1", "--data-dir", "{data}"],
    ],
    ids=["eval", "export", "predict-keras", "bench"],
)
def test_every_command_refuses_the_weights_bomb(tmp_path: Path, make_idx_folder, command: list[str]) -> None:
    image = tmp_path / "shirt.png"
    bar(True).save(image)
    names = {"bomb": weights_bomb(tmp_path), "data": make_idx_folder(sizes={"test": 20}).path, "out": tmp_path,
             "image": image}  # fmt: skip

    result = run_cli(*(part.format(**names) for part in command), env={"FASHIONZOO_HOME": str(tmp_path / "home")})

    assert_cli_error(result, "bomb.weights.h5", "do not fit model 'lenet5'", "layers/dense/vars/0")
    assert not (tmp_path / "lenet5.onnx").exists()


def test_weights_of_another_model_name_the_real_difference(tmp_path: Path, make_idx_folder) -> None:
    data_dir = make_idx_folder(sizes={"test": 20}).path

    result = run_cli("eval", "lenet5", "--weights", str(released("cnn.weights.h5")), "--data-dir", str(data_dir))

    message = assert_cli_error(result, "cnn.weights.h5", "layers/conv2d/vars/0 is (3, 3, 1, 32) float32 in the file",
                               "the model needs (5, 5, 1, 6) float32")  # fmt: skip
    assert "Skipping" not in message


# -- --out and atomic_path: only regular files are replaced ---------------------------------------------------------


def special_target(folder: Path, kind: str) -> Path:
    """A fifo, a character device like /dev/null (root only) or a symlink to /proc/self/fd/1, at ``folder``/out."""
    target = folder / "out.onnx"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "char-device":
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
    else:
        target.symlink_to("/proc/self/fd/1")
    return target


SPECIAL_KINDS = ["fifo", "char-device", "symlink-to-stdout"]


def file_kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return "link" if stat.S_ISLNK(mode) else "fifo" if stat.S_ISFIFO(mode) else "char" if stat.S_ISCHR(mode) else "file"


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_atomic_path_never_replaces_a_special_file(tmp_path: Path, kind: str) -> None:
    target = special_target(tmp_path, kind)
    before = file_kind(target)

    with pytest.raises(FashionZooError) as excinfo, atomic_path(target) as tmp:
        tmp.write_bytes(b"onnx")

    assert_one_line(excinfo.value, str(target), "symbolic link" if kind.startswith("symlink") else "not a regular file")
    assert file_kind(target) == before and sorted(os.listdir(tmp_path)) == ["out.onnx"]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_export_out_refuses_a_special_file(tmp_path: Path, kind: str) -> None:
    target = special_target(tmp_path, kind)
    before = file_kind(target)

    result = run_cli("export", "lenet5", "--out", str(target))

    assert_cli_error(result, str(target))
    assert file_kind(target) == before and result.stdout == ""


def test_bench_out_refuses_a_special_file_before_benchmarking(tmp_path: Path) -> None:
    target = special_target(tmp_path, "fifo")

    # the missing weights file would stop the benchmark itself: the --out error must come first
    result = run_cli("bench", "lenet5", "--weights", str(tmp_path / "missing.weights.h5"), "--out", str(target))

    assert_cli_error(result, str(target), "not a regular file")
    assert file_kind(target) == "fifo"


# -- read-only and full file systems -----------------------------------------------------------------------------


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


# -- training on a full disk ---------------------------------------------------------------------------------------


def test_training_on_a_full_disk_keeps_the_last_backup_and_resumes(full_disk: Path, make_idx_folder) -> None:
    """1 MiB holds one lenet5 backup (weights + Adam state, 0.57 MB) but not a second one beside it."""
    import h5py

    data_dir = make_idx_folder(sizes={"train": 30, "test": 20}).path
    run = full_disk / "run"
    train = ["train", "lenet5", "--epochs", "2", "--limit", "100", "--data-dir", str(data_dir), "--out", str(run)]

    result = run_cli(*train)

    print(f"full disk: exit {result.returncode}, {result.stderr.splitlines()[-1]}")  # quoted in docs/reliability.md
    assert_cli_error(result, "latest.weights.h5", "No space left on device", "--resume")
    assert everything_under(run) == ["backup/latest.weights.h5", "history.csv", "state.json"]  # no temporary file
    with h5py.File(run / "backup" / "latest.weights.h5", "r") as backup:  # the epoch-1 backup, whole
        assert backup["layers/dense/vars/0"].shape == (256, 120) and "optimizer" in backup
        assert backup.attrs["fashionzoo_epochs_done"] == 1

    grown = subprocess.run(["mount", "-o", "remount,size=16m", str(full_disk)], capture_output=True, text=True)
    assert grown.returncode == 0, grown.stderr
    resumed = run_cli(*train, "--resume")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()] == ["epoch", "0", "1"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2 and not (run / "backup").exists()


# -- data files: header bombs, slow mirrors, killed downloads, a tampered cache -------------------------------------


def idx_gzip_bomb(images: int) -> bytes:
    """A valid gzip IDX images file declaring ``images`` x 28 x 28 zero pixels, about 1 kB per 1,000 images."""
    header = struct.pack(">IIII", data.IMAGES_MAGIC, images, SIZE, SIZE)
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
            data.load_split("test", data_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert_one_line(excinfo.value, "t10k-images-idx3-ubyte.gz", "1300000 images", "has 10 labels")
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB allocated"  # was 2.6 GB: the images decompressed first


def test_slow_drip_mirror_is_abandoned_at_the_deadline(
    tmp_path: Path, body_server: SimpleNamespace, data_sleeps: list[float]
) -> None:
    """One byte every 50 ms: each read returns within the timeout, so only a whole-download deadline stops it."""
    body_server.body, body_server.drip = os.urandom(400), 0.05  # 20 s if let through
    target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"

    with pytest.raises(FashionZooError) as excinfo:
        data.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest(), attempts=2, timeout=0.5)

    assert_one_line(excinfo.value, "download failed", "too slow", "of 400 bytes")
    assert body_server.requests == 2 and len(data_sleeps) == 1
    assert list(target.parent.iterdir()) == []


DOWNLOAD = r"""
import sys
from pathlib import Path
from fashionzoo import data
data.download(sys.argv[1], Path(sys.argv[2]), "0" * 32, attempts=1, timeout=30)
"""


def test_download_killed_midway_leaves_a_temporary_file_the_next_run_removes(
    tmp_path: Path, body_server: SimpleNamespace
) -> None:
    body_server.body, body_server.drip = os.urandom(2000), 0.05
    folder = tmp_path / "cache"
    target = folder / "t10k-labels-idx1-ubyte.gz"
    killed = subprocess.Popen([sys.executable, "-c", DOWNLOAD, body_server.url, str(target)])
    try:
        assert _wait_for(lambda: folder.is_dir() and any(folder.iterdir())), "the download never started"
        time.sleep(0.3)
    finally:
        killed.kill()
        killed.wait(timeout=30)
    stale = sorted(p.name for p in folder.iterdir())
    assert len(stale) == 1 and stale[0].startswith(".t10k-labels-idx1-ubyte.gz.")  # what SIGKILL leaves behind

    body_server.drip, body_server.body = 0.0, os.urandom(1000)
    data.download(body_server.url, target, hashlib.md5(body_server.body).hexdigest())

    assert sorted(p.name for p in folder.iterdir()) == [target.name]  # the dead process's temporary file is gone
    assert target.read_bytes() == body_server.body


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
    assert len(data.load_split("test")) == 10_000  # genuine: verified once (MD5) and remembered
    zeros = tmp_path / "zeros-idx1-ubyte.gz"
    zeros.write_bytes(gzip.compress(idx_bytes(np.zeros(10_000, np.uint8))))
    labels = official_cache / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.symlink_to(zeros)

    with pytest.raises(FashionZooError) as excinfo:
        data.load_split("test")

    assert_one_line(excinfo.value, str(labels), "not the official", "deleted", "run the command again")
    assert not os.path.lexists(labels) and zeros.is_file()  # the link is removed, never what it points to


def test_verified_cache_files_are_not_hashed_again(official_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data.load_split("test")
    monkeypatch.setattr(data, "file_digest", lambda *args: pytest.fail("an unchanged cached file was hashed again"))

    assert len(data.load_split("test")) == 10_000  # size, mtime and inode as recorded: used as is


# -- one-line errors instead of tracebacks ------------------------------------------------------------------------


def tiny_onnx(path: Path, kind: str, classes: list[str] | None = None) -> Path:
    """A small hand-built ONNX classifier, [N, 28, 28, 1] -> declared [N, 10]: ``softmax`` (first 10 pixels),
    ``one-row`` (one row whatever N), ``fails`` (a Reshape that fails unless N is a multiple of 5), ``nan`` (pixels
    divided by 0: NaN and infinity). ``classes`` go into the fashionzoo.classes metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, constants = [], []

    def const(name: str, values: list, dtype: type = np.int64) -> str:
        constants.append(numpy_helper.from_array(np.array(values, dtype), name))
        return name

    shape = {"one-row": [1, 784], "fails": [-1, 10]}.get(kind, [-1, 784])
    source = "image"
    if kind == "one-row":
        nodes.append(helper.make_node("ReduceMean", ["image"], ["mean"], axes=[0], keepdims=1))
        source = "mean"
    nodes.append(helper.make_node("Reshape", [source, const("shape", shape)], ["flat"]))
    logits = "flat"
    if kind != "fails":
        nodes.append(helper.make_node("Slice", ["flat", const("starts", [0]), const("ends", [10]), const("axes", [1])],
                                      ["logits"]))  # fmt: skip
        logits = "logits"
    if kind == "nan":
        nodes.append(helper.make_node("Div", [logits, const("zero", [0.0], np.float32)], ["probabilities"]))
    else:
        nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])]
    graph = helper.make_graph(nodes, kind, inputs, outputs, constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if classes:
        helper.set_model_props(model, {"fashionzoo.classes": json.dumps(classes)})
    onnx.save(model, path)
    return path


def garment_pngs(folder: Path, *names: str) -> list[Path]:
    """Small product-photo PNGs (a dark bar on white) at ``folder``/NAME."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        bar(True).save(path, "PNG")
    return paths


@pytest.mark.parametrize(("kind", "fragment"), [("one-row", "returned shape (1, 10) for 2 images"),
                                                ("fails", "failed while running")])  # fmt: skip
def test_predict_with_an_onnx_model_that_breaks_at_run_time(tmp_path: Path, kind: str, fragment: str) -> None:
    model = tiny_onnx(tmp_path / f"{kind}.onnx", kind)
    images = garment_pngs(tmp_path / "photos", "a.png", "b.png")

    result = run_cli("predict", *map(str, images), "--onnx", str(model), "--model", "lenet5")

    assert_cli_error(result, str(model), fragment)


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


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


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


def test_export_with_an_absurd_opset_is_one_line(tmp_path: Path) -> None:
    result = run_cli("export", "lenet5", "--opset", "99999999999999999999", "--out", str(tmp_path / "x.onnx"))

    assert_cli_error(result, "opset 99999999999999999999", "converts opsets 9 to")  # was: 7 tf2onnx tracebacks


# -- symbolic link loops in folders -------------------------------------------------------------------------------


@pytest.fixture
def loop_dir(tmp_path: Path) -> Path:
    """loopdir/{a,b}.png, loopdir/sub/c.png, two '..' links in sub and a self-looping self.png."""
    folder = tmp_path / "loopdir"
    garment_pngs(folder, "a.png", "b.png")
    garment_pngs(folder / "sub", "c.png")
    (folder / "sub" / "up1").symlink_to("..")
    (folder / "sub" / "up2").symlink_to("..")
    (folder / "self.png").symlink_to("self.png")
    return folder


def test_recursive_pattern_over_link_loops_walks_each_folder_once(loop_dir: Path) -> None:
    result = run_cli("predict", str(loop_dir / "**" / "*.png"), "--model", "lenet5", "--json", timeout=120)

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    classified = sorted(Path(row["file"]).relative_to(loop_dir).as_posix() for row in rows if "error" not in row)
    assert classified == ["a.png", "b.png", "sub/c.png"]
    failed = sorted(Path(row["file"]).relative_to(loop_dir).as_posix() for row in rows if "error" in row)
    assert failed == ["self.png", "sub/up1", "sub/up2"]  # --json has a line for every input
    errors = [line for line in result.stderr.splitlines() if line.startswith("fashionzoo: error:")]
    assert sorted(errors) == sorted([
        f"fashionzoo: error: {loop_dir / 'self.png'}: a broken or looping symbolic link (check the path)",
        f"fashionzoo: error: {loop_dir / 'sub' / 'up1'}: symbolic link loop (it leads back to a folder above it); "
        "not followed",
        f"fashionzoo: error: {loop_dir / 'sub' / 'up2'}: symbolic link loop (it leads back to a folder above it); "
        "not followed",
    ])  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_a_self_looping_link_does_not_hide_the_good_images_of_its_folder(loop_dir: Path) -> None:
    result = run_cli("predict", str(loop_dir), "--model", "lenet5", "--json", timeout=120)

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(row["file"]).name for row in rows if "error" not in row) == ["a.png", "b.png"]
    assert_cli_error(result, "self.png", "looping symbolic link")


# -- strict JSON ------------------------------------------------------------------------------------------------


def strict_json(line: str) -> dict:
    """Parse as JSON.parse or jq would: NaN, Infinity and -Infinity are errors."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_eval_json_with_nan_weights_is_strict_json(tmp_path: Path, make_idx_folder) -> None:
    import h5py

    weights = tmp_path / "nan.weights.h5"
    shutil.copyfile(released("lenet5.weights.h5"), weights)
    with h5py.File(weights, "a") as file:
        file["layers/dense_2/vars/0"][...] = np.nan
    data_dir = make_idx_folder(sizes={"test": 20}).path

    result = run_cli("eval", "lenet5", "--weights", str(weights), "--data-dir", str(data_dir), "--json")

    row = strict_json(result.stdout)
    assert row["loss"] is None and "loss" in row["error"] and row["n"] == 20
    assert_cli_error(result, "nan.weights.h5", "not finite")


def test_predict_json_with_a_model_giving_nan_and_infinity_is_strict_json(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "nan.onnx", "nan")
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(model), "--model", "lenet5", "--json")

    message = assert_cli_error(result, "shirt.png", "non-finite probabilities")
    assert [strict_json(line) for line in result.stdout.splitlines()] == [
        {"file": str(image), "error": message.removeprefix("fashionzoo: error: ")}]  # no probability, no NaN


# -- download of models without released files --------------------------------------------------------------------


def test_download_of_models_without_released_files_says_so() -> None:
    result = run_cli("download", "resnet50", "vgg16")

    assert_cli_error(result, "no released files", "resnet50-tl (", "vgg16-tl (")
    assert result.stdout == ""


# -- small ones -----------------------------------------------------------------------------------------------------


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path: Path) -> None:
    garment_pngs(tmp_path, "here.png")

    result = run_cli("predict", "", "--model", "lenet5", cwd=tmp_path)

    assert_cli_error(result, "empty path")
    assert result.stdout == ""  # here.png is not classified


def test_newlines_and_escapes_in_names_and_class_names_are_escaped(tmp_path: Path) -> None:
    image = garment_pngs(tmp_path, "evil\n\x1b[2J.png")[0]
    classes = [f"class{i}\x1b[31m\nred" for i in range(10)]
    model = tiny_onnx(tmp_path / "named.onnx", "softmax", classes=classes)

    result = run_cli("predict", str(image), str(tmp_path / "gone\x1b]0;x\x07.png"), "--onnx", str(model),
                     "--model", "lenet5", "--top-k", "2")  # fmt: skip

    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "evil\\n\\x1b[2J.png: class" in result.stdout and "\\x1b[31m\\nred" in result.stdout
    assert_cli_error(result, "gone\\x1b]0;x\\x07.png")


def test_a_non_utf8_file_name_round_trips_through_json(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    garment_pngs(tmp_path, os.fsdecode(b"caf\xe9.png"))
    gone = os.fsencode(tmp_path) + b"/gone\xe9.png"

    result = subprocess.run([sys.executable, "-m", "fashionzoo", "predict", raw, gone, "--model", "lenet5", "--json"],
                            capture_output=True, timeout=300, env={**os.environ, **CLI_ENV})  # fmt: skip

    assert result.returncode == 1, result.stderr[-2000:]  # the missing file
    row, failed = (strict_json(line) for line in result.stdout.decode("utf-8").splitlines())  # valid UTF-8
    assert row["file"].endswith("caf\ufffd.png") and failed["file"].endswith("gone\ufffd.png") and failed["error"]
    assert base64.b64decode(row["file_base64"]) == raw  # the exact bytes, to find the file again
    assert base64.b64decode(failed["file_base64"]) == gone


@pytest.mark.parametrize("image", ["white", "black", "1x1"])
def test_a_blank_image_is_not_classified(tmp_path: Path, image: str) -> None:
    path = tmp_path / f"{image}.png"
    {"white": Image.new("RGB", (300, 400), "white"), "black": Image.new("L", (28, 28), 0),
     "1x1": Image.new("RGB", (1, 1), (200, 10, 10))}[image].save(path)  # fmt: skip

    result = run_cli("predict", str(path), "--model", "lenet5")

    assert_cli_error(result, f"{image}.png", "blank image", "nothing to classify")
    assert result.stdout == ""


# -- third round: a review of the CLI (session 11) --------------------------------------------------------------------


def test_tensorflow_start_up_notices_do_not_bury_the_error(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    missing = tmp_path / "missing.weights.h5"

    result = subprocess.run([sys.executable, "-m", "fashionzoo", "eval", "lenet5", "--weights", str(missing)],
                            capture_output=True, text=True, timeout=300,
                            env={**env, "PYTHONPATH": CLI_ENV["PYTHONPATH"]})  # fmt: skip

    assert result.stderr.splitlines() == [f"fashionzoo: error: {missing}: no such file (pass the path of a weights "
                                          "file)"]  # fmt: skip


def test_eval_plot_is_checked_before_the_evaluation(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    plot = tmp_path / "a-file" / "matrix.png"
    empty = tmp_path / "no-data"
    empty.mkdir()

    # the empty data folder would stop the evaluation itself: the --plot error must come first
    result = run_cli("eval", "lenet5", "--plot", str(plot), "--data-dir", str(empty))

    assert_cli_error(result, str(plot), "cannot write there", "Not a directory")


def test_check_can_write_makes_the_folder_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "model.onnx"
    check_can_write(target)
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(FashionZooError) as excinfo:
        check_can_write(tmp_path / "a-file" / "model.onnx")
    assert_one_line(excinfo.value, "a-file/model.onnx: cannot write there (Not a directory)")


def test_a_failed_mnist_download_names_the_mnist_folder_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:  # fmt: skip
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", closed_port_url())
    monkeypatch.delenv("FASHIONZOO_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "_system_copy", lambda spec, official: None)  # no Debian copy: the mirror is asked

    with pytest.raises(FashionZooError) as excinfo:
        data.load_split("test", "mnist")

    assert_one_line(excinfo.value, "download failed", "--data-dir / FASHIONZOO_MNIST_DIR")
