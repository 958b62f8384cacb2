"""Fashion-MNIST and MNIST in the official IDX format: find, download, verify, read and split.

Reads with numpy only. Data folders are searched in this order: ``data_dir`` argument (``--data-dir``),
``$FASHIONZOO_DATA_DIR`` (Fashion-MNIST; ``$FASHIONZOO_MNIST_DIR`` for MNIST), then
``$FASHIONZOO_HOME/datasets/<name>``; files missing from the cache are taken from a distribution package's copy
(Debian's ``dataset-fashion-mnist``, verified by the SHA-256 of its decompressed content) or downloaded from the
official mirrors and verified against the official MD5 sums. A local folder whose files are the official ones is
verified the same way; other files are accepted with a notice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from time import monotonic  # apart from ``time``: tests replace ``time`` to skip the back-off sleeps
from typing import IO, cast

import numpy as np

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.core.files import atomic_open, atomic_path, file_digest, home_dir, remove_stale_temporaries, sha256_file
from fashionzoo.data.datasets import DATASETS, DataFile, DatasetSpec

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MAX_IDX_BYTES = 1 << 30
"""Largest IDX file :func:`read_idx` accepts (header + data); Fashion-MNIST's biggest is 47 MB."""
MIN_DOWNLOAD_RATE = 50 << 10
"""Bytes per second a download must average (after ``timeout`` of grace) before it is abandoned as stalled."""
MAX_DOWNLOAD_SECONDS = 1800.0
"""Longest any one download attempt may take, whatever its size (the cap when the server sends no length)."""
log = logging.getLogger(__name__)

SPLIT_SEED = 20170825  # fixed: every model sees the same validation split, whatever its training seed


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x 28 x 28) and labels (uint8, N) of one split, with where they came from."""

    images: np.ndarray
    labels: np.ndarray
    files: dict[str, str]  # official file name -> SHA-256 of the decompressed content

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> Split:
        """The first ``n`` examples (quick runs and tests)."""
        return Split(self.images[:n], self.labels[:n], self.files)


def _dataset(name: str) -> DatasetSpec:
    """The data set whose IDX files ``name`` reads (itself, or the one it takes its images from)."""
    try:
        spec = DATASETS[name]
    except KeyError:
        raise FashionZooError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    return DATASETS[spec.images_from] if spec.images_from else spec


def data_folder(dataset: str = "fashion-mnist", data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The folder to read ``dataset`` from, and whether it is the verified cache (downloads allowed)."""
    spec = _dataset(dataset)
    chosen = data_dir or os.environ.get(spec.env_var)
    if not chosen:
        return home_dir() / "datasets" / spec.name, True
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        source = "--data-dir" if data_dir else spec.env_var
        raise FashionZooError(f"{folder}: data folder from {source} does not exist (point it at a folder of IDX files)")
    return folder, False


_announced: set[Path] = set()


def _check_local(spec: DatasetSpec, path: Path, official: DataFile) -> None:
    """A file of a local folder: verified if it is the official file (its MD5, or for a raw file the content's
    SHA-256); otherwise accepted with a one-time notice per folder."""
    matches = (
        file_digest(path, "md5") == official.md5
        if path.suffix == ".gz"
        else sha256_file(path) == official.content_sha256
    )
    if not matches and path.parent not in _announced:
        _announced.add(path.parent)
        log.warning(
            "reading %s from local folder %s, whose files are not the official ones (%s differs); official "
            "checksums are not enforced",
            spec.name,
            path.parent,
            path.name,
        )


def _content_sha256(path: Path) -> str:
    """SHA-256 of a file's content, decompressed if it is gzip (so repackaged copies compare equal)."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return ""
    return digest.hexdigest()


def _system_copy(spec: DatasetSpec, official: DataFile) -> Path | None:
    """The distribution package's copy of a file (``apt-get install dataset-fashion-mnist``), if installed and its
    decompressed content is the official one."""
    if not spec.system_dir:
        return None
    path = Path(spec.system_dir) / official.name
    if path.is_file() and _content_sha256(path) == official.content_sha256:
        return path
    if path.is_file():
        log.warning("%s: not the official content (SHA-256 differs); ignored", path)
    return None


def mirrors(spec: DatasetSpec) -> tuple[str, ...]:
    """Mirrors to download from; ``$FASHIONZOO_DATA_MIRROR`` replaces the official ones."""
    override = os.environ.get("FASHIONZOO_DATA_MIRROR")
    return (override,) if override else spec.mirrors


def download_deadline(size: int | None, timeout: float) -> float:
    """Seconds one download attempt of ``size`` bytes (None: unknown) may take: ``timeout`` plus the time at
    :data:`MIN_DOWNLOAD_RATE`, at most :data:`MAX_DOWNLOAD_SECONDS`. Bounds a server that sends a byte now and then,
    which a per-read timeout never stops."""
    return min(timeout + size / MIN_DOWNLOAD_RATE, MAX_DOWNLOAD_SECONDS) if size else MAX_DOWNLOAD_SECONDS


def download(
    url: str,
    target: Path,
    md5: str,
    attempts: int = 3,
    timeout: float = 30.0,
    env_var: str = "FASHIONZOO_DATA_DIR",
    size: int | None = None,
) -> Path:
    """Download ``url`` to ``target`` atomically, verifying its MD5 (and, with ``size``, stopping as soon as more
    bytes arrive than the official file has, so a wrong mirror cannot fill the disk); bounded retries on network
    errors, each attempt bounded in time (:func:`download_deadline`). Temporary files left by killed downloads are
    removed first. A failure names ``env_var``, the data set's own folder variable, as the way around the network."""
    remove_stale_temporaries(target.parent)
    last_error = ""
    for attempt in range(attempts):
        try:
            digest = hashlib.md5()
            with (
                atomic_path(target) as tmp,
                urllib.request.urlopen(url, timeout=timeout) as response,
                open(tmp, "wb") as out,
            ):
                declared = int(response.headers.get("Content-Length") or 0) or None
                if size and declared and declared != size:
                    raise FashionZooError(
                        f"{url}: the mirror offers {declared:,} bytes, not the official {size:,}; nothing was saved"
                    )
                started, received = monotonic(), 0
                allowed = download_deadline(declared, timeout)
                for chunk in iter(lambda: response.read1(1 << 20), b""):  # read1: returns what has arrived
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    if size and received > size:
                        raise FashionZooError(
                            f"{url}: the mirror sent more than the official {size:,} bytes; nothing was saved"
                        )
                    if monotonic() - started > allowed:
                        raise TimeoutError(
                            f"too slow: {received} of {declared or 'an unknown number of'} bytes in "
                            f"{allowed:.0f} s, under {MIN_DOWNLOAD_RATE >> 10} KiB/s"
                        )
                expected = declared or received
                if received < expected:
                    raise ConnectionError(f"connection dropped after {received} of {expected} bytes")
                if digest.hexdigest() != md5:
                    raise FashionZooError(
                        f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {md5}); "
                        "the mirror served a wrong file, nothing was saved"
                    )
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
    raise FashionZooError(
        f"{url}: download failed ({last_error}); check the network, or pass --data-dir / "
        f"{env_var} pointing at a folder with the IDX files"
    )


def _stamps_path(path: Path) -> Path:
    """Where the cache remembers its verified files: beside the data set's folder, not in it."""
    return path.parent.with_name(f".{path.parent.name}.verified.json")


def _stamp(path: Path, md5: str) -> dict[str, object]:
    """What a verified file looked like: ``ctime`` too, which no tool can set back (``touch``, ``rsync -t`` and
    backups restore the mtime of a file rewritten in place)."""
    info = path.stat()
    return {
        "md5": md5,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
        "inode": info.st_ino,
        "device": info.st_dev,
    }


def _read_stamps(path: Path) -> dict[str, dict[str, object]]:
    with contextlib.suppress(OSError, ValueError):
        stamps = json.loads(_stamps_path(path).read_text(encoding="utf-8"))
        if isinstance(stamps, dict):
            return stamps
    return {}


def remember_verified(path: Path, md5: str) -> None:
    """Record that ``path`` matched its official ``md5``, with the size, times, inode and device it had then."""
    stamps = _read_stamps(path) | {path.name: _stamp(path, md5)}
    with atomic_open(_stamps_path(path)) as handle:
        json.dump(stamps, handle, indent=1)


def verified_cache_file(path: Path, md5: str) -> Path:
    """``path`` from the download cache, checked at every use as it was when downloaded.

    Cheap: the official MD5 is computed once and remembered with the file's size, times, inode and device
    (:func:`remember_verified`); while they stay the same the file is used as is. Anything else (a replaced
    file, a symlink to other data) is hashed again; a file that no longer matches is deleted (a link, never
    its target) and the error says to run the command again, which downloads the official file.
    """
    if path.is_file() and _read_stamps(path).get(path.name) == _stamp(path, md5):
        return path
    if path.is_dir() and not path.is_symlink():
        raise FashionZooError(
            f"{path}: a folder where the cached data file belongs; remove it and run the command again"
        )
    actual = file_digest(path, "md5") if path.is_file() else "none (not a regular file)"
    if actual == md5:
        remember_verified(path, md5)
        return path
    path.unlink(missing_ok=True)
    raise FashionZooError(
        f"{path}: the cached file is not the official {path.name} (MD5 {actual}, expected {md5}); "
        "it was deleted, run the command again to download it"
    )


def _locate(spec: DatasetSpec, role: str, data_dir: str | os.PathLike | None) -> Path:
    """A verified path to one file: the local folder's (notice if unofficial), else the cache's, the distribution
    package's, or a fresh download into the cache."""
    folder, is_cache = data_folder(spec.name, data_dir)
    official = spec.files[role]
    if is_cache and os.path.lexists(folder / official.name):
        return verified_cache_file(folder / official.name, official.md5)  # the cache serves only the official files
    if not is_cache:
        for candidate in (folder / official.name, folder / official.name.removesuffix(".gz")):
            if candidate.is_file():
                _check_local(spec, candidate, official)
                return candidate
        raise FashionZooError(
            f"{folder / official.name}: missing (the data folder must hold the official IDX file names)"
        )
    system = _system_copy(spec, official)
    if system is not None:
        return system
    errors = []
    for mirror in mirrors(spec):
        try:
            return download(
                mirror.rstrip("/") + "/" + official.name,
                folder / official.name,
                official.md5,
                env_var=spec.env_var,
                size=official.size,
            )
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
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            yield cast(IO[bytes], handle)
    except (OSError, EOFError, zlib.error) as error:
        detail = reason(error)
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
        raise FashionZooError(
            f"{path}: truncated IDX file ({len(head)} bytes, its header alone needs "
            f"{header}); delete it and download it again"
        )
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # max(d, 1): "0 x 4294967295 x 4294967295" holds no byte but no array can have that shape either
    if header + math.prod(max(d, 1) for d in shape) > MAX_IDX_BYTES:
        raise FashionZooError(
            f"{path}: the IDX header declares dimensions {' x '.join(map(str, shape))}, "
            f"over the {MAX_IDX_BYTES >> 20} MiB limit; not an IDX file of this package"
        )
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
        raise FashionZooError(
            f"{path}: padded IDX file (more than the {header + size} bytes its header says); "
            "delete it and download it again"
        )
    if len(body) < size:
        raise FashionZooError(
            f"{path}: truncated IDX file ({header + len(body)} bytes, header says {header + size}); "
            "delete it and download it again"
        )
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
        raise FashionZooError(
            f"{images_path}: {images_shape[0]} images but {labels_path.name} has {labels_shape[0]} labels"
        )
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if labels.size and labels.max() >= 10:
        raise FashionZooError(f"{labels_path}: label {labels.max()} out of range 0-9")
    files = {
        spec.files[f"{split}-{kind}"].name: content_sha256(array, magic)
        for kind, array, magic in (("images", images, IMAGES_MAGIC), ("labels", labels, LABELS_MAGIC))
    }
    return Split(images, labels, files)


def content_sha256(array: np.ndarray, magic: int) -> str:
    """SHA-256 of the decompressed IDX content an array was read from (header rebuilt from its shape)."""
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def train_val_split(train: Split, val_fraction: float) -> tuple[Split, Split]:
    """Hold out a validation split from the training file with the fixed :data:`SPLIT_SEED`."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
    n_val = int(round(len(train) * val_fraction))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (
        Split(train.images[train_idx], train.labels[train_idx], train.files),
        Split(train.images[val_idx], train.labels[val_idx], train.files),
    )
