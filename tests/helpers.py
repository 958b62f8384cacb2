"""Helpers shared by the tests (``from helpers import ...``): the one-line error check, the command line in a fresh
process, the test records of the Hub look-alike and small image makers. Fixtures live in ``conftest.py``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.publish import hub
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import get_entry
from fashionzoo.registry.specs import FileRecord, WeightsRecord

ROOT = Path(__file__).resolve().parents[1]
"""The repository's root folder."""
SUMMARY_PROPERTY = "summary"
"""A test's ``record_property`` under this name is printed in the suite's closing summary (``conftest.py``): figures
a CI log should show even when the test passes."""

# ====================================================================================================== one line


def assert_one_line(error: BaseException | pytest.ExceptionInfo[Any] | str, *fragments: object) -> str:
    """The message of ``error`` (an exception, a ``pytest.raises`` result or the text itself) is one non-empty line
    holding every fragment; returns it."""
    message = str(error.value if isinstance(error, pytest.ExceptionInfo) else error)
    assert message.strip() and "\n" not in message, f"message is not one line: {message!r}"
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!s} not in {message!r}"
    return message


def assert_cli_error(result: Any, *fragments: object) -> str:
    """A command that failed as a user error: exit status 1, exactly one ``fashionzoo: error:`` line on stderr (one
    line, holding ``fragments``) and no traceback; returns that line.

    ``result`` is a ``subprocess.CompletedProcess`` (text mode) or a click ``Result`` (``CliRunner().invoke``)."""
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    stderr = result.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("fashionzoo: error:")]
    assert code == 1, (code, stderr[-3000:])
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    assert len(errors) == 1, stderr[-3000:]
    return assert_one_line(errors[0], *fragments)


# ============================================================================================ the command line

CLI_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(sys.path)}
"""What a ``fashionzoo`` subprocess gets on top of the environment: TensorFlow's C++ log silenced, this sys.path."""


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``python -m fashionzoo ARGS`` in a fresh process, as a user runs it (TensorFlow's C++ log silenced)."""
    return subprocess.run(
        [sys.executable, "-m", "fashionzoo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **CLI_ENV, **(env or {})},
        cwd=cwd,
    )


def failing_without_tensorflow(args: list[str]) -> str:
    """Run ``fashionzoo ARGS`` in a fresh process that must fail (exit status 1) without ever importing TensorFlow,
    Keras or tf2onnx; returns its stderr."""
    code = (
        "import sys; from fashionzoo.cli import main\n"
        f"try: main({args!r}, standalone_mode=False)\n"
        "except SystemExit as stop: assert stop.code == 1, stop.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr.strip()


def released(filename: str) -> Path:
    """A file shipped inside the package (``checkpoints/``)."""
    return hub.shipped_dir() / filename


IMAGES = ROOT / "examples" / "images"
"""The example images: each class as a 28x28 image and as a product photo (``ankle-boot-photo.png``)."""


def expected_label(path: Path) -> str:
    """The class an example image shows, from its name."""
    slug = path.name.rsplit("-", 1)[0].removesuffix("-28x28")
    return next(c for c in FASHION_CLASSES if c.lower().replace("/", "-").replace(" ", "-") == slug)


def released_onnx(name: str = DEFAULT_MODEL) -> Path:
    """A model's released ONNX file (the zoo's default model unless named), found as ``Classifier.from_pretrained``
    finds it: what the embedding examples (Python, Node.js, the web page) run."""
    return hub.released_file(get_entry(name), "onnx")


# ============================================================================================= images


def bar(horizontal: bool, size: int = 60) -> Image.Image:
    """A black bar on white: wide (``horizontal``) or tall."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    img.paste((0, 0, 0), (5, 25, 55, 35) if horizontal else (25, 5, 35, 55))
    return img


def garment_pngs(folder: Path, *names: str) -> list[Path]:
    """Small product-photo PNGs (a dark bar on white) at ``folder``/NAME."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        bar(True).save(path, "PNG")
    return paths


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with its SHA-256: what a command must leave as it was."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ================================================================== the Hub look-alike's test records (hub_server)

REPO = "fashionzoo-test/lenet5"
COMMIT_A = hashlib.sha1(b"fashionzoo-test commit A").hexdigest()
COMMIT_B = hashlib.sha1(b"fashionzoo-test commit B").hexdigest()
FILENAME = "lenet5.weights.h5"
CONTENT_A = os.urandom(4096 + 17)
CONTENT_B = os.urandom(2048 + 5)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def make_entry(
    content: bytes = CONTENT_A,
    revision: str | None = COMMIT_A,
    filename: str = FILENAME,
    shipped: tuple[str, ...] = (),
    repo_id: str = REPO,
) -> ModelEntry:
    """The lenet5 entry with a test weights record describing ``content``."""
    record = FileRecord(filename=filename, sha256=sha256(content), size=len(content))
    weights = WeightsRecord(repo_id=repo_id, revision=revision, files={"weights": record}, metrics={}, shipped=shipped)
    return dataclasses.replace(get_entry("lenet5"), weights=weights)


def entry_with(files: dict[str, tuple[str, bytes]], shipped: tuple[str, ...] = ()) -> ModelEntry:
    """The lenet5 entry with records ``key -> (filename, content)`` pinned at COMMIT_A of REPO."""
    records = {
        key: FileRecord(filename=name, sha256=sha256(content), size=len(content))
        for key, (name, content) in files.items()
    }
    weights = WeightsRecord(repo_id=REPO, revision=COMMIT_A, files=records, metrics={}, shipped=shipped)
    return dataclasses.replace(get_entry("lenet5"), weights=weights)


def repo_cache() -> Path:
    return hub.cache_dir() / f"models--{REPO.replace('/', '--')}"


def cached_files() -> list[Path]:
    """Every file or link (blob, snapshot link, partial download) under the test repo's cache folder."""
    root = repo_cache()
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


# ========================================================================= hostile conditions (tests/reliability/)


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


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` every 50 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def everything_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden and temporary ones too), relative to it, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


TOO_BIG = 2 << 20
"""Twice the 1 MiB tmpfs of the ``full_disk`` fixture (``reliability/conftest.py``)."""


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
"""The kinds of :func:`special_target`."""


def file_kind(path: Path) -> str:
    """What ``path`` itself is (a link is not followed): link, fifo, char or file."""
    mode = os.lstat(path).st_mode
    return "link" if stat.S_ISLNK(mode) else "fifo" if stat.S_ISFIFO(mode) else "char" if stat.S_ISCHR(mode) else "file"


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (another process may take it before the caller binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port_url() -> str:
    """The URL of a local port nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def strict_json(line: str) -> dict:
    """Parse as JSON.parse or jq would: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)
