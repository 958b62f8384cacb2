"""Shared fixtures: tiny data sets in the official IDX format written on the fly, the shared data folders, run
records, the Hub look-alike and one ONNX export per session. Shared helpers (the one-line error check, the command line
in a fresh process) are in ``helpers.py``."""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.file_download
import huggingface_hub.utils._http
import numpy as np
import pytest
from helpers import COMMIT_A, COMMIT_B, CONTENT_A, CONTENT_B, FILENAME, REPO, SUMMARY_PROPERTY
from hub_server import HubServer

from fashionzoo.publish.release import TABLE_END, TABLE_START, ReleaseTree
from fashionzoo.training.runs import RunRecord

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Official file names of each split (images, labels); the raw files drop the ``.gz``."""


def build_idx(array: np.ndarray, magic: int | None = None) -> bytes:
    """Raw IDX bytes of a uint8 array: big-endian magic (0x0800 | ndim unless given), dims, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def gzip_bytes(raw: bytes) -> bytes:
    """Gzip ``raw`` deterministically (mtime 0), like the official ``.gz`` files."""
    return gzip.compress(raw, mtime=0)


def fake_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 uint8 images and labels cycling through 0-9."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


@dataclass
class IdxFolder:
    """A folder of IDX files and the arrays written to it, per split: ``arrays["test"] == (images, labels)``."""

    path: Path
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@pytest.fixture
def idx_bytes() -> Callable[..., bytes]:
    """:func:`build_idx`: raw IDX bytes of an array (pass ``magic`` to forge a wrong one)."""
    return build_idx


@pytest.fixture
def make_idx_folder(tmp_path: Path) -> Callable[..., IdxFolder]:
    """Factory writing a small valid data folder under the official file names.

    ``make_idx_folder(folder=None, sizes={"train": 30, "test": 20}, gz=True, seed=0)``; only the splits in
    ``sizes`` are written (``sizes={"test": 5}`` writes just the two ``t10k-*`` files).
    """

    def make(
        folder: Path | str | None = None, sizes: dict[str, int] | None = None, gz: bool = True, seed: int = 0
    ) -> IdxFolder:
        path = Path(folder) if folder is not None else tmp_path / "idx-data"
        path.mkdir(parents=True, exist_ok=True)
        result = IdxFolder(path)
        for offset, (split, n) in enumerate((sizes or {"train": 30, "test": 20}).items()):
            images, labels = fake_split(n, seed + offset)
            for name, array in zip(IDX_NAMES[split], (images, labels), strict=True):
                raw = build_idx(array)
                if gz:
                    (path / name).write_bytes(gzip_bytes(raw))
                else:
                    (path / name.removesuffix(".gz")).write_bytes(raw)
            result.arrays[split] = (images, labels)
        return result

    return make


SHARED_DATA_DIR = Path(
    os.environ.get("FASHIONZOO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist"
).resolve()
"""The shared Fashion-MNIST copy (CI clones the repo with ``shared/`` beside it), as an absolute path."""
if "FASHIONZOO_DATA_DIR" in os.environ:  # the README's relative path must survive tests that change directory
    os.environ["FASHIONZOO_DATA_DIR"] = str(SHARED_DATA_DIR)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared Fashion-MNIST folder; tests that need it skip with the reason when it is absent."""
    if not (SHARED_DATA_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared Fashion-MNIST not found at {SHARED_DATA_DIR} (set FASHIONZOO_DATA_DIR)")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def small_shared_data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 2,000 training and 500 test images of the shared Fashion-MNIST, under the official file names:
    for runs whose claims are not about the full files (a resume, a start, a record) and would otherwise spend most
    of their time measuring all 10,000 test images."""
    from fashionzoo.data.loading import load_split

    folder = tmp_path_factory.mktemp("small-fashion-mnist")
    for split, n in (("train", 2000), ("test", 500)):
        full = load_split(split, data_dir=shared_data)
        for name, array in zip(IDX_NAMES[split], (full.images[:n], full.labels[:n]), strict=True):
            (folder / name).write_bytes(gzip_bytes(build_idx(array)))
    return folder


@pytest.fixture
def small_data(monkeypatch: pytest.MonkeyPatch, small_shared_data: Path) -> Path:
    """:func:`small_shared_data` as ``$FASHIONZOO_DATA_DIR`` (commands in fresh processes read it too)."""
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(small_shared_data))
    return small_shared_data


SHARED_MNIST_DIR = Path(
    os.environ.get("FASHIONZOO_MNIST_DIR") or Path(__file__).resolve().parents[2] / "shared/data/mnist"
).resolve()
"""The shared MNIST copy, beside the Fashion-MNIST one."""


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    """The shared MNIST folder; tests that need it skip with the reason when it is absent."""
    if not (SHARED_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST not found at {SHARED_MNIST_DIR} (set FASHIONZOO_MNIST_DIR)")
    return SHARED_MNIST_DIR


@pytest.fixture
def data_of(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """The shared folder of a data set by tag (``fashion-mnist``, ``mnist``), skipping when it is absent."""
    return lambda tag: request.getfixturevalue("shared_mnist" if tag == "mnist" else "shared_data")


def fake_run_record(model: str, weights_file: str, accuracy: float = 0.5, dataset: str = "fashion-mnist") -> RunRecord:
    """A complete run record for weights that were not trained (for tests of what reads run folders)."""
    return RunRecord(
        model=model,
        params=0,
        build_kwargs={},
        recipe={},
        overrides={},
        search=None,
        dataset=dataset,
        data_files={},
        split_seed=0,
        n_train=0,
        n_val=0,
        epochs=0,
        wall_time_s=0.0,
        seed=0,
        test={"accuracy": accuracy, "loss": 1.0, "n": 10_000},
        val={},
        test_time_flip=False,
        weights_file=weights_file,
        versions={},
        machine={},
    )


@pytest.fixture
def tree(tmp_path: Path) -> ReleaseTree:
    """An empty package tree laid out like a checkout: no released weights yet, a README with the table markers."""
    root = tmp_path / "checkout"
    (root / "src" / "fashionzoo").mkdir(parents=True)
    (root / "src" / "fashionzoo" / "weights.json").write_text("{}\n")
    (root / "README.md").write_text(f"# zoo\n\n{TABLE_START}\nold table\n{TABLE_END}\n\nmore text\n")
    return ReleaseTree(root)


@pytest.fixture
def run_record() -> Callable[..., RunRecord]:
    """:func:`fake_run_record`: ``run_record(model, weights_file, accuracy=0.5)``."""
    return fake_run_record


# ================================================================================================ the Hub look-alike


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip (and record) huggingface_hub's retry back-off sleeps: its retries still happen, just without waiting."""
    import types

    calls: list[float] = []
    fake_time = types.SimpleNamespace(sleep=calls.append)
    monkeypatch.setattr(huggingface_hub.utils._http, "time", fake_time)
    monkeypatch.setattr(huggingface_hub.file_download, "time", fake_time)
    return calls


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> Path:
    """An isolated environment: FASHIONZOO_HOME in tmp_path, online, no token, short timeouts."""
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    # Read by huggingface_hub at import time: pin them whatever the calling shell had.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "stored_tokens"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_ETAG_TIMEOUT", 5)
    return tmp_path


@pytest.fixture
def server(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running Hub look-alike serving CONTENT_A at COMMIT_A and CONTENT_B at COMMIT_B; HF_ENDPOINT points at it."""
    with HubServer() as running:
        running.add(REPO, COMMIT_A, FILENAME, CONTENT_A)
        running.add(REPO, COMMIT_B, FILENAME, CONTENT_B)
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        yield running


# ============================================================================================= one ONNX export


@dataclass(frozen=True)
class Exported:
    """A trained LeNet-5 exported to ONNX once per session (tf2onnx; parity with Keras checked on the shared test file).

    ``weights`` are the released LeNet-5's with a constant added to the output layer's bias: the same probabilities
    (a softmax ignores a shift of every logit) in other bytes than the released file, so the export reads the run
    record beside them, which measured these very bytes and claims a test accuracy of :attr:`RECORDED_ACCURACY`.
    ``model`` is the Keras model holding them."""

    name: str
    path: Path
    weights: Path
    model: Any

    RECORDED_ACCURACY = 0.1234


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Exported:
    """The session's one ONNX export (see :class:`Exported`), made with FASHIONZOO_HOME in a private folder."""
    import fashionzoo
    from fashionzoo.core.files import sha256_file
    from fashionzoo.publish.export import export_onnx
    from fashionzoo.registry.lookup import get_entry
    from fashionzoo.training import runs

    folder = tmp_path_factory.mktemp("exported")
    model = fashionzoo.load("lenet5")
    output = model.layers[-1]
    kernel, bias = output.get_weights()
    output.set_weights([kernel, bias + 0.25])
    weights = folder / "lenet5.weights.h5"
    model.save_weights(weights)
    assert sha256_file(weights) != get_entry("lenet5").weights.files["weights"].sha256
    record = fake_run_record("lenet5", weights.name, accuracy=Exported.RECORDED_ACCURACY)
    runs.write_record(folder, record.replace(weights_sha256=sha256_file(weights)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASHIONZOO_HOME", str(folder / "home"))
        path = export_onnx("lenet5", folder / "lenet5.onnx", weights=weights, data_dir=shared_data)
    return Exported("lenet5", path, weights, model)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures tests recorded under :data:`helpers.SUMMARY_PROPERTY`, one line each, passed or failed."""
    for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        for name, value in report.user_properties:
            if name == SUMMARY_PROPERTY:
                terminalreporter.write_line(f"{report.nodeid}: {value}")
