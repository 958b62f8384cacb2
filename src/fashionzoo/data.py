"""Fashion-MNIST and MNIST in the official IDX format: find, download, verify, read and split.

Reads with numpy only. Data folders are searched in this order: ``data_dir`` argument (``--data-dir``),
``$FASHIONZOO_DATA_DIR`` (Fashion-MNIST; ``$FASHIONZOO_MNIST_DIR`` for MNIST), then
``$FASHIONZOO_HOME/datasets/<name>``; files missing from the cache are downloaded from the official mirrors
and verified against the official MD5 sums.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from time import monotonic  # apart from ``time``: tests replace ``time`` to skip the back-off sleeps
from typing import IO

import numpy as np

from fashionzoo._files import (
    FashionZooError,
    atomic_open,
    atomic_path,
    file_digest,
    home_dir,
    remove_stale_temporaries,
    sha256_file,
)

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MAX_IDX_BYTES = 1 << 30
"""Largest IDX file :func:`read_idx` accepts (header + data); Fashion-MNIST's biggest is 47 MB."""
MIN_DOWNLOAD_RATE = 50 << 10
"""Bytes per second a download must average (after ``timeout`` of grace) before it is abandoned as stalled."""
MAX_DOWNLOAD_SECONDS = 1800.0
"""Longest any one download attempt may take, whatever its size (the cap when the server sends no length)."""
SPLIT_SEED = 20170825  # fixed: every model sees the same validation split, whatever its training seed


@dataclass(frozen=True)
class DatasetSpec:
    """An IDX data set: file names with their official MD5, and the mirrors that serve them."""

    name: str
    files: dict[str, tuple[str, str]]  # "train-images" -> (file name, official MD5)
    mirrors: tuple[str, ...]
    env_var: str = "FASHIONZOO_DATA_DIR"  # names a local folder of this data set's files


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files={
            "train-images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        env_var="FASHIONZOO_DATA_DIR",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        files={
            "train-images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        env_var="FASHIONZOO_MNIST_DIR",
    ),
}


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x 28 x 28) and labels (uint8, N) of one split, with where they came from."""

    images: np.ndarray
    labels: np.ndarray
    files: dict[str, str]  # file name -> SHA-256

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        """The first ``n`` examples (quick runs and tests)."""
        return Split(self.images[:n], self.labels[:n], self.files)


def _dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise FashionZooError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


_announced: set[Path] = set()


def data_folder(dataset: str = "fashion-mnist", data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The folder to read ``dataset`` from, and whether it is the verified cache (downloads allowed)."""
    env_var = _dataset(dataset).env_var
    chosen = data_dir or os.environ.get(env_var)
    if not chosen:
        return home_dir() / "datasets" / dataset, True
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        source = "--data-dir" if data_dir else env_var
        raise FashionZooError(f"{folder}: data folder from {source} does not exist (point it at a folder of IDX files)")
    if folder not in _announced:
        _announced.add(folder)
        print(f"fashionzoo: reading {dataset} from local folder {folder}; official checksums are not enforced",
              file=sys.stderr)
    return folder, False


def mirrors(spec: DatasetSpec) -> tuple[str, ...]:
    """Mirrors to download from; ``$FASHIONZOO_DATA_MIRROR`` replaces the official ones."""
    override = os.environ.get("FASHIONZOO_DATA_MIRROR")
    return (override,) if override else spec.mirrors


def download_deadline(size: int | None, timeout: float) -> float:
    """Seconds one download attempt of ``size`` bytes (None: unknown) may take: ``timeout`` plus the time at
    :data:`MIN_DOWNLOAD_RATE`, at most :data:`MAX_DOWNLOAD_SECONDS`. Bounds a server that sends a byte now and then,
    which a per-read timeout never stops."""
    return min(timeout + size / MIN_DOWNLOAD_RATE, MAX_DOWNLOAD_SECONDS) if size else MAX_DOWNLOAD_SECONDS


def download(url: str, target: Path, md5: str, attempts: int = 3, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``target`` atomically, verifying its MD5; bounded retries on network errors, each attempt
    bounded in time (:func:`download_deadline`). Temporary files left by killed downloads are removed first."""
    remove_stale_temporaries(target.parent)
    last_error = ""
    for attempt in range(attempts):
        try:
            digest = hashlib.md5()
            with atomic_path(target) as tmp, urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(tmp, "wb") as out:  # fmt: skip
                declared = int(response.headers.get("Content-Length") or 0) or None
                started, received = monotonic(), 0
                allowed = download_deadline(declared, timeout)
                for chunk in iter(lambda: response.read1(1 << 20), b""):  # read1: returns what has arrived
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    if monotonic() - started > allowed:
                        raise TimeoutError(f"too slow: {received} of {declared or 'an unknown number of'} bytes in "
                                           f"{allowed:.0f} s, under {MIN_DOWNLOAD_RATE >> 10} KiB/s")  # fmt: skip
                expected = declared or received
                if received < expected:
                    raise ConnectionError(f"connection dropped after {received} of {expected} bytes")
                if digest.hexdigest() != md5:
                    raise FashionZooError(f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {md5}); "
                                          "the mirror served a wrong file, nothing was saved")
            remember_verified(target, md5)
            return target
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code}"
            if error.code < 500:
                break
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
            last_error = str(getattr(error, "reason", error)) or type(error).__name__
        except OSError as error:
            raise FashionZooError(f"{target}: could not write the download ({error.strerror or error})") from None
        if attempt + 1 < attempts:
            time.sleep(min(2**attempt * 0.5, 4))
    raise FashionZooError(f"{url}: download failed ({last_error}); check the network, or pass --data-dir / "
                          "FASHIONZOO_DATA_DIR pointing at a folder with the IDX files")


def _stamps_path(path: Path) -> Path:
    """Where the cache remembers its verified files: beside the data set's folder, not in it."""
    return path.parent.with_name(f".{path.parent.name}.verified.json")


def _stamp(path: Path, md5: str) -> dict[str, object]:
    info = path.stat()
    return {"md5": md5, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino}


def _read_stamps(path: Path) -> dict[str, dict[str, object]]:
    with contextlib.suppress(OSError, ValueError):
        stamps = json.loads(_stamps_path(path).read_text(encoding="utf-8"))
        if isinstance(stamps, dict):
            return stamps
    return {}


def remember_verified(path: Path, md5: str) -> None:
    """Record that ``path`` matched its official ``md5``, with the size, mtime and inode it had then."""
    stamps = _read_stamps(path) | {path.name: _stamp(path, md5)}
    with atomic_open(_stamps_path(path)) as handle:
        json.dump(stamps, handle, indent=1)


def verified_cache_file(path: Path, md5: str) -> Path:
    """``path`` from the download cache, checked at every use as it was when downloaded.

    Cheap: the official MD5 is computed once and remembered with the file's size, mtime and inode
    (:func:`remember_verified`); while they stay the same the file is used as is. Anything else (a replaced
    file, a symlink to other data) is hashed again; a file that no longer matches is deleted (a link, never
    its target) and the error says to run the command again, which downloads the official file.
    """
    if path.is_file() and _read_stamps(path).get(path.name) == _stamp(path, md5):
        return path
    actual = file_digest(path, "md5") if path.is_file() else "none (not a regular file)"
    if actual == md5:
        remember_verified(path, md5)
        return path
    path.unlink(missing_ok=True)
    raise FashionZooError(f"{path}: the cached file is not the official {path.name} (MD5 {actual}, expected {md5}); "
                          "it was deleted, run the command again to download it")  # fmt: skip


def _locate(spec: DatasetSpec, role: str, data_dir: str | os.PathLike | None) -> Path:
    folder, is_cache = data_folder(spec.name, data_dir)
    filename, md5 = spec.files[role]
    if is_cache and os.path.lexists(folder / filename):
        return verified_cache_file(folder / filename, md5)  # the cache serves only the official files
    if not is_cache:
        for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
        raise FashionZooError(f"{folder / filename}: missing (the data folder must hold the official IDX file names)")
    errors = []
    for mirror in mirrors(spec):
        try:
            return download(mirror.rstrip("/") + "/" + filename, folder / filename, md5)
        except FashionZooError as error:
            errors.append(str(error))
    raise FashionZooError(errors[-1])


def _read_up_to(handle: IO[bytes], size: int) -> bytes:
    """At most ``size`` bytes from ``handle``, read in chunks: memory follows the data actually there, not ``size``."""
    chunks, remaining = [], size
    while remaining > 0:
        chunk = handle.read(min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for reading (gzip or raw); read errors become a one-line error naming it."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            yield handle
    except (OSError, EOFError, zlib.error) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise FashionZooError(f"{path}: unreadable or corrupt ({detail}); delete it and download it again") from None


def _read_header(handle: IO[bytes], path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions an IDX header declares, checked: the magic number, and at most :data:`MAX_IDX_BYTES`."""
    head = _read_up_to(handle, 8)
    if len(head) < 8:
        raise FashionZooError(f"{path}: truncated IDX file ({len(head)} bytes); delete it and download it again")
    found_magic = int.from_bytes(head[:4], "big")
    if found_magic != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise FashionZooError(f"{path}: not an IDX {kind} file (magic {found_magic}, expected {magic})")
    ndim = head[3]
    header = 4 + 4 * ndim
    head += _read_up_to(handle, header - len(head))
    if len(head) < header:
        raise FashionZooError(f"{path}: truncated IDX file ({len(head)} bytes, its header alone needs "
                              f"{header}); delete it and download it again")  # fmt: skip
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # max(d, 1): "0 x 4294967295 x 4294967295" holds no byte but no array can have that shape either
    if header + math.prod(max(d, 1) for d in shape) > MAX_IDX_BYTES:
        raise FashionZooError(f"{path}: the IDX header declares dimensions {' x '.join(map(str, shape))}, "
                              f"over the {MAX_IDX_BYTES >> 20} MiB limit; not an IDX file of this package")
    return shape


def idx_shape(path: str | os.PathLike, magic: int) -> tuple[int, ...]:
    """The dimensions an IDX file (gzip or raw) declares; only its header is read (a few bytes decompressed)."""
    path = Path(path)
    with _reading(path) as handle:
        return _read_header(handle, path, magic)


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read an IDX file (gzip or raw) with the expected magic number into a uint8 array.

    The header is checked before the data is read: a file whose header declares more than :data:`MAX_IDX_BYTES`
    is refused, and no more than the declared size (plus one byte, to detect padding) is ever decompressed,
    so a small gzip bomb cannot fill the memory.
    """
    path = Path(path)
    with _reading(path) as handle:
        shape = _read_header(handle, path, magic)
        size = math.prod(shape)
        body = _read_up_to(handle, size + 1)
    header = 4 + 4 * len(shape)
    if len(body) > size:
        raise FashionZooError(f"{path}: padded IDX file (more than the {header + size} bytes its header says); "
                              "delete it and download it again")  # fmt: skip
    if len(body) < size:
        raise FashionZooError(f"{path}: truncated IDX file ({header + len(body)} bytes, header says {header + size}); "
                              "delete it and download it again")  # fmt: skip
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_split(split: str, dataset: str = "fashion-mnist", data_dir: str | os.PathLike | None = None) -> Split:
    """Load ``"train"`` (the full training file) or ``"test"``; only that split's two files are needed."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    spec = _dataset(dataset)
    images_path = _locate(spec, f"{split}-images", data_dir)
    labels_path = _locate(spec, f"{split}-labels", data_dir)
    # both headers first: a mismatch is refused before a byte of data is decompressed
    images_shape, labels_shape = idx_shape(images_path, IMAGES_MAGIC), idx_shape(labels_path, LABELS_MAGIC)
    if len(images_shape) != 3 or len(labels_shape) != 1:
        raise FashionZooError(f"{images_path}: expected N x rows x cols images and N labels")
    if images_shape[0] != labels_shape[0]:
        raise FashionZooError(f"{images_path}: {images_shape[0]} images but {labels_path.name} has {labels_shape[0]} "
                              "labels")  # fmt: skip
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if labels.size and labels.max() >= 10:
        raise FashionZooError(f"{labels_path}: label {labels.max()} out of range 0-9")
    files = {p.name: sha256_file(p) for p in (images_path, labels_path)}
    return Split(images, labels, files)


def train_val_split(train: Split, val_fraction: float) -> tuple[Split, Split]:
    """Hold out a validation split from the training file with the fixed :data:`SPLIT_SEED`."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
    n_val = int(round(len(train) * val_fraction))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (Split(train.images[train_idx], train.labels[train_idx], train.files),
            Split(train.images[val_idx], train.labels[val_idx], train.files))  # fmt: skip
