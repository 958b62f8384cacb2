"""Tests for fashionzoo.data: IDX reading, data folder resolution, verified downloads from a local mirror, splits.

Everything runs on tiny generated IDX files and a real HTTP server on 127.0.0.1; the real data set is used
only when its folder exists (``$FASHIONZOO_DATA_DIR`` or ``shared/data/fashion-mnist`` beside the repo).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SHARED_DATA_DIR  # read before the autouse fixture below clears the variable
from helpers import assert_one_line

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data import datasets as data_datasets
from fashionzoo.data import loading as data_loading

TEST_NAMES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user cache, no env folder, no real network, no real sleeping, a fresh "already announced" set."""
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASHIONZOO_DATA_DIR", raising=False)
    monkeypatch.delenv("FASHIONZOO_DATA_MIRROR", raising=False)
    monkeypatch.setenv("no_proxy", "*")  # requests to the local mirror must not go through a proxy
    monkeypatch.setattr(data_loading, "_announced", set())
    for (
        name,
        spec,
    ) in data_datasets.DATASETS.items():  # a machine with Debian's dataset-fashion-mnist must still download
        monkeypatch.setitem(
            data_datasets.DATASETS, name, dataclasses.replace(spec, system_dir=str(tmp_path / "no-system"))
        )
    sleeps: list[float] = []
    monkeypatch.setattr(data_loading, "time", SimpleNamespace(sleep=sleeps.append))
    return SimpleNamespace(home=tmp_path / "home", sleeps=sleeps)


def cache_dir(isolated, dataset: str = "fashion-mnist") -> Path:
    return isolated.home / "datasets" / dataset


def leftovers(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included (empty when the folder does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def cached_as_official(monkeypatch, folder) -> None:
    """Take the files of ``folder`` (an IdxFolder written into the cache) as the official ones: their MD5s go into
    the Fashion-MNIST spec, as if they had been downloaded (the cache serves only files matching it)."""
    spec = data_datasets.DATASETS["fashion-mnist"]
    files = {
        role: dataclasses.replace(official, md5=md5((folder.path / official.name).read_bytes()))
        if (folder.path / official.name).exists()
        else official
        for role, official in spec.files.items()
    }
    monkeypatch.setitem(data_datasets.DATASETS, "fashion-mnist", dataclasses.replace(spec, files=files))


# --------------------------------------------------------------------------------------------- good files


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_split_reads_shapes_and_values(make_idx_folder, gz):
    folder = make_idx_folder(sizes={"train": 12, "test": 7}, gz=gz)
    for split in ("train", "test"):
        loaded = data_loading.load_split(split, data_dir=folder.path)
        images, labels = folder.arrays[split]
        assert loaded.images.shape == images.shape and loaded.images.dtype == np.uint8
        assert loaded.labels.shape == labels.shape and loaded.labels.dtype == np.uint8
        np.testing.assert_array_equal(loaded.images, images)
        np.testing.assert_array_equal(loaded.labels, labels)
        assert len(loaded) == len(labels)


def test_read_idx_gz_and_raw_agree(tmp_path, idx_bytes):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = tmp_path / "x-idx3-ubyte"
    raw.write_bytes(idx_bytes(array))
    packed = tmp_path / "x-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(idx_bytes(array)))
    for path in (raw, packed, str(packed)):
        np.testing.assert_array_equal(data_loading.read_idx(path, data_loading.IMAGES_MAGIC), array)


def test_test_split_needs_only_the_t10k_files(make_idx_folder):
    folder = make_idx_folder(sizes={"test": 5})
    assert sorted(p.name for p in folder.path.iterdir()) == sorted(TEST_NAMES)
    loaded = data_loading.load_split("test", data_dir=folder.path)
    assert loaded.images.shape == (5, 28, 28)
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("train", data_dir=folder.path)
    assert_one_line(excinfo, folder.path / TRAIN_NAMES[0], "missing")


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_split_files_hold_sha256_of_the_content_read(make_idx_folder, gz):
    folder = make_idx_folder(sizes={"test": 4}, gz=gz)
    loaded = data_loading.load_split("test", data_dir=folder.path)
    raw = {
        name: gzip.decompress((folder.path / name).read_bytes())
        if gz
        else (folder.path / name.removesuffix(".gz")).read_bytes()
        for name in TEST_NAMES
    }
    assert loaded.files == {name: hashlib.sha256(content).hexdigest() for name, content in raw.items()}


def test_gz_file_is_preferred_over_raw_file(make_idx_folder):
    folder = make_idx_folder(sizes={"test": 6}, gz=True, seed=1)
    make_idx_folder(folder.path, sizes={"test": 3}, gz=False, seed=2)  # raw files beside them, other content
    assert len(data_loading.load_split("test", data_dir=folder.path)) == 6


def test_empty_split_loads(tmp_path, idx_bytes):
    (tmp_path / TEST_NAMES[0]).write_bytes(gzip.compress(idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    (tmp_path / TEST_NAMES[1]).write_bytes(gzip.compress(idx_bytes(np.zeros(0, np.uint8))))
    loaded = data_loading.load_split("test", data_dir=tmp_path)
    assert loaded.images.shape == (0, 28, 28) and len(loaded) == 0


def test_head_keeps_the_first_examples(make_idx_folder):
    folder = make_idx_folder(sizes={"test": 9})
    loaded = data_loading.load_split("test", data_dir=folder.path)
    head = loaded.head(4)
    assert len(head) == 4 and head.files == loaded.files
    np.testing.assert_array_equal(head.images, folder.arrays["test"][0][:4])


# ---------------------------------------------------------------------------------------------- bad files


def corrupt_folder(
    tmp_path, idx_bytes, images_raw: bytes | None = None, labels_raw: bytes | None = None, gz: bool = True
) -> tuple[Path, Path, Path]:
    """A test split of 5 images whose images or labels file is replaced by ``*_raw`` bytes."""
    images = np.full((5, 28, 28), 7, np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    paths = []
    contents = (images_raw or idx_bytes(images), labels_raw or idx_bytes(labels))
    for name, content in zip(TEST_NAMES, contents, strict=True):
        path = folder / (name if gz else name.removesuffix(".gz"))
        path.write_bytes(gzip.compress(content) if gz else content)
        paths.append(path)
    return folder, paths[0], paths[1]


GOOD_IMAGES = np.full((5, 28, 28), 7, np.uint8)
GOOD_IDX = bytes.fromhex("00000803 00000005 0000001c 0000001c") + GOOD_IMAGES.tobytes()


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (GOOD_IDX[:-100], "truncated"),
        (GOOD_IDX[: 16 + 28 * 28 * 2], "truncated"),
        (GOOD_IDX[:16], "truncated"),  # header only
        (GOOD_IDX + b"\0" * 10, "padded"),
        (GOOD_IDX + b"\0", "padded"),
        (b"", "truncated"),
        (GOOD_IDX[:3], "truncated"),
        (GOOD_IDX[:7], "truncated"),
    ],
    ids=["short-100", "two-images", "header-only", "padded-10", "padded-1", "empty", "3-bytes", "7-bytes"],
)
def test_truncated_padded_or_empty_images_file(tmp_path, idx_bytes, raw, fragment, gz):
    folder, images_path, _ = corrupt_folder(tmp_path, idx_bytes, images_raw=raw or None, gz=gz)
    if not raw:  # empty file: write it directly (an empty .gz decompresses to nothing, an empty raw file is empty)
        images_path.write_bytes(gzip.compress(b"") if gz else b"")
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path, fragment)


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b"], ids=["empty-file", "gzip-magic-only"])
def test_empty_or_tiny_gz_file(tmp_path, idx_bytes, content):
    folder, images_path, _ = corrupt_folder(tmp_path, idx_bytes)
    images_path.write_bytes(content)
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path)


def test_truncated_labels_file(tmp_path, idx_bytes):
    short_labels = idx_bytes(np.arange(5, dtype=np.uint8))[:-2]
    folder, _, labels_path = corrupt_folder(tmp_path, idx_bytes, labels_raw=short_labels)
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, labels_path, "truncated")


def test_images_file_passed_as_labels(tmp_path, idx_bytes):
    folder, images_path, labels_path = corrupt_folder(tmp_path, idx_bytes)
    labels_path.write_bytes(images_path.read_bytes())
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, labels_path, "not an IDX labels file", "2051", "2049")


def test_labels_file_passed_as_images(tmp_path, idx_bytes):
    folder, images_path, labels_path = corrupt_folder(tmp_path, idx_bytes)
    images_path.write_bytes(labels_path.read_bytes())
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path, "not an IDX images file")


@pytest.mark.parametrize(
    "magic", [0, 0x0308_0000, 0x0903, 0x0801, 0x1F8B_0800], ids=["zero", "little-endian", "other-type", "1-dim", "gzip"]
)
def test_read_idx_rejects_wrong_magic(tmp_path, magic):
    path = tmp_path / "weird-idx3-ubyte"
    path.write_bytes(magic.to_bytes(4, "big") + GOOD_IDX[4:])
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.read_idx(path, data_loading.IMAGES_MAGIC)
    assert_one_line(excinfo, path, "magic")


def test_raw_file_named_gz_is_rejected(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(GOOD_IDX)  # not gzipped although the name says so
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.read_idx(path, data_loading.IMAGES_MAGIC)
    assert_one_line(excinfo, path)


@pytest.mark.parametrize(("n_images", "n_labels"), [(5, 4), (4, 5), (5, 0)])
def test_count_mismatch_between_images_and_labels(tmp_path, idx_bytes, n_images, n_labels):
    folder, images_path, labels_path = corrupt_folder(
        tmp_path,
        idx_bytes,
        images_raw=idx_bytes(np.zeros((n_images, 28, 28), np.uint8)),
        labels_raw=idx_bytes(np.zeros(n_labels, np.uint8)),
    )
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path, labels_path.name, f"{n_images} images", f"{n_labels} labels")


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_corrupt_gzip(tmp_path, idx_bytes, where):
    rng = np.random.default_rng(3)
    noisy = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)  # incompressible: the middle is deflate data
    folder, images_path, _ = corrupt_folder(tmp_path, idx_bytes, images_raw=idx_bytes(noisy))
    blob = bytearray(images_path.read_bytes())
    middle = int(len(blob) * where)
    for i in range(middle, middle + 16):
        blob[i] ^= 0xFF
    images_path.write_bytes(bytes(blob))
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path, "corrupt")


def test_cut_gzip_stream(tmp_path, idx_bytes):
    folder, images_path, _ = corrupt_folder(tmp_path, idx_bytes)
    blob = images_path.read_bytes()
    images_path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, images_path)


@pytest.mark.parametrize("bad_label", [10, 255])
def test_label_out_of_range(tmp_path, idx_bytes, bad_label):
    labels = np.array([0, 1, bad_label, 3, 9], np.uint8)
    folder, _, labels_path = corrupt_folder(tmp_path, idx_bytes, labels_raw=idx_bytes(labels))
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, labels_path, str(bad_label), "out of range")


def test_unreadable_path_is_a_clean_error(tmp_path):
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.read_idx(tmp_path / "nope-idx1-ubyte.gz", data_loading.LABELS_MAGIC)
    assert_one_line(excinfo, tmp_path / "nope-idx1-ubyte.gz")


# ------------------------------------------------------------------------------------ data folder order


def test_data_folder_order(make_idx_folder, isolated, monkeypatch, tmp_path):
    explicit = make_idx_folder(tmp_path / "explicit", sizes={"test": 3}).path
    from_env = make_idx_folder(tmp_path / "env", sizes={"test": 4}).path
    cached_as_official(monkeypatch, make_idx_folder(cache_dir(isolated), sizes={"test": 5}))

    assert data_loading.data_folder() == (cache_dir(isolated), True)
    assert len(data_loading.load_split("test")) == 5

    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(from_env))
    assert data_loading.data_folder() == (from_env, False)
    assert len(data_loading.load_split("test")) == 4

    assert data_loading.data_folder(data_dir=explicit) == (explicit, False)
    assert data_loading.data_folder(data_dir=str(explicit)) == (explicit, False)
    assert len(data_loading.load_split("test", data_dir=explicit)) == 3


def test_empty_env_var_means_unset(isolated, monkeypatch):
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", "")
    assert data_loading.data_folder() == (cache_dir(isolated), True)


def test_cache_folder_is_per_dataset(isolated):
    assert data_loading.data_folder("mnist") == (cache_dir(isolated, "mnist"), True)


def test_missing_explicit_folder(tmp_path, monkeypatch, make_idx_folder):
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(make_idx_folder(sizes={"test": 2}).path))  # must not be a fallback
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=tmp_path / "absent")
    assert_one_line(excinfo, tmp_path / "absent", "--data-dir", "does not exist")


def test_missing_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, tmp_path / "absent", "FASHIONZOO_DATA_DIR")


def test_explicit_folder_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.data_folder(data_dir=tmp_path / "file")
    assert_one_line(excinfo, tmp_path / "file")


def notices(caplog) -> list[str]:
    """The library's warnings so far (the CLI prints them on stderr as ``fashionzoo: ...``)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("fashionzoo") and r.levelname == "WARNING"]


def test_local_folder_notice_once(make_idx_folder, caplog):
    folder = make_idx_folder(sizes={"test": 2}).path
    data_loading.load_split("test", data_dir=folder)
    data_loading.load_split("test", data_dir=folder)  # announced once per folder
    assert len(notices(caplog)) == 1
    assert_one_line(notices(caplog)[0], folder, "checksums are not enforced")


def test_local_folder_notice_reaches_the_cli_stderr(make_idx_folder):
    from click.testing import CliRunner

    from fashionzoo.cli import main

    folder = make_idx_folder(sizes={"test": 10}).path
    result = CliRunner().invoke(main, ["eval", "lenet5", "--data-dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    notice = [line for line in result.stderr.splitlines() if "not enforced" in line]
    assert len(notice) == 1 and notice[0].startswith(f"fashionzoo: reading fashion-mnist from local folder {folder}")
    assert result.stderr.splitlines()[-1] == "fashionzoo: lenet5: predicting the 10 test images"  # the progress


def test_cache_folder_prints_no_notice(make_idx_folder, isolated, caplog, monkeypatch):
    cached_as_official(monkeypatch, make_idx_folder(cache_dir(isolated), sizes={"test": 2}))
    data_loading.load_split("test")
    assert notices(caplog) == []


def test_missing_file_in_local_folder_never_downloads(make_idx_folder, monkeypatch):
    folder = make_idx_folder(sizes={"test": 2}).path
    (folder / TEST_NAMES[1]).unlink()

    def no_download(*args, **kwargs):
        raise AssertionError("a local data folder must never trigger a download")

    monkeypatch.setattr(data_loading, "download", no_download)
    monkeypatch.setattr(data_loading.urllib.request, "urlopen", no_download)
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", data_dir=folder)
    assert_one_line(excinfo, folder / TEST_NAMES[1], "missing")
    assert sorted(p.name for p in folder.iterdir()) == [TEST_NAMES[0]]


# ------------------------------------------------------------------------------------------ the mirror


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves ``server.mirror.files`` by base name; ``server.mirror.modes[name]`` makes it misbehave."""

    def do_GET(self):  # http.server's naming
        mirror = self.server.mirror
        mirror.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        body = mirror.files.get(name)
        mode = mirror.modes.get(name, "ok")
        if body is None or mode == "404" or not self.path.startswith(mirror.prefix):
            self.send_error(404)
        elif mode == "500":
            self.send_error(500)
        elif mode == "short":  # promise the whole file, send half of it, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif mode == "chunked-drop":  # chunked transfer cut in the middle of a chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = body[: len(body) // 2]
            self.wfile.write(f"{len(body):x}\r\n".encode() + half)
            self.wfile.flush()
            self.close_connection = True
        elif mode == "endless":  # a wrong file without a length: zeros, chunked, until the client hangs up
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(1024):  # at most 64 MiB
                    self.wfile.write(b"10000\r\n" + bytes(1 << 16) + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format, *args):  # quiet test output
        pass


@pytest.fixture
def mirror(monkeypatch, make_idx_folder, tmp_path):
    """A local HTTP mirror of a tiny Fashion-MNIST, with FASHIONZOO_DATA_MIRROR pointing at it."""
    source = make_idx_folder(tmp_path / "served", sizes={"train": 11, "test": 6})
    state = SimpleNamespace(
        files={p.name: p.read_bytes() for p in source.path.iterdir()},
        arrays=source.arrays,
        modes={},
        requests=[],
        prefix="/files/",
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    server.daemon_threads = True
    server.mirror = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.root = f"http://127.0.0.1:{server.server_address[1]}"
    state.url = state.root + state.prefix
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", state.url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def use_spec(
    monkeypatch,
    mirror,
    name: str = "fashion-mnist",
    wrong_md5: tuple[str, ...] = (),
    mirrors: tuple[str, ...] = ("http://mirror.invalid/",),
) -> data_datasets.DatasetSpec:
    """Replace ``DATASETS[name]`` by a spec whose MD5s are those of the served files (except ``wrong_md5``)."""
    files = {}
    for role, official in data_datasets.DATASETS[name].files.items():
        served = mirror.files[official.name]
        files[role] = data_datasets.DataFile(
            official.name,
            "0" * 32 if official.name in wrong_md5 else md5(served),
            hashlib.sha256(served).hexdigest(),
            hashlib.sha256(gzip.decompress(served)).hexdigest(),
            len(served),
        )
    spec = dataclasses.replace(data_datasets.DATASETS[name], files=files, mirrors=mirrors, system_dir=None)
    monkeypatch.setitem(data_datasets.DATASETS, name, spec)
    return spec


def test_a_mirror_serving_a_longer_file_is_cut_off_at_the_official_size(mirror, isolated, monkeypatch):
    """A wrong mirror (a captive portal, a bigger file) could fill the disk before the checksum: the download stops
    once more bytes than the official file's have arrived, or at once when it announces another length."""
    use_spec(monkeypatch, mirror)
    for mode, message in (("endless", "sent more than the official"), ("ok", "offers")):
        mirror.modes = {name: mode for name in TEST_NAMES}
        if mode == "ok":
            mirror.files = {**mirror.files, TEST_NAMES[0]: mirror.files[TEST_NAMES[0]] + b"more"}
        with pytest.raises(FashionZooError, match=message):
            data_loading.load_split("test")
        assert leftovers(cache_dir(isolated)) == []  # nothing half-written, no temporary file


def test_a_cached_file_rewritten_in_place_with_its_old_mtime_is_checked_again(mirror, isolated, monkeypatch):
    """``rsync -t --inplace`` or a backup restore keep the inode, size and mtime of a rewritten file: the change
    time, which nothing can set back, tells."""
    use_spec(monkeypatch, mirror)
    data_loading.load_split("test")
    labels = cache_dir(isolated) / "t10k-labels-idx1-ubyte.gz"
    before = labels.stat()
    time.sleep(0.05)  # past a coarse clock tick (kernels before 6.13 stamp ctime per tick): the ctime must move
    labels.write_bytes(bytes(before.st_size))  # same inode, same size
    os.utime(labels, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = labels.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns  # the precondition the check relies on
    with pytest.raises(FashionZooError, match="the cached file is not the official t10k-labels"):
        data_loading.load_split("test")


def test_download_into_cache_then_reuse(mirror, isolated, monkeypatch, caplog):
    use_spec(monkeypatch, mirror)
    loaded = data_loading.load_split("test")
    np.testing.assert_array_equal(loaded.images, mirror.arrays["test"][0])
    np.testing.assert_array_equal(loaded.labels, mirror.arrays["test"][1])
    folder = cache_dir(isolated)
    assert leftovers(folder) == sorted(TEST_NAMES)  # only the test split was fetched, no temp files
    for name in TEST_NAMES:
        assert (folder / name).read_bytes() == mirror.files[name]
    assert sorted(mirror.requests) == sorted(mirror.prefix + n for n in TEST_NAMES)
    assert loaded.files == {n: hashlib.sha256(gzip.decompress(mirror.files[n])).hexdigest() for n in TEST_NAMES}

    again = data_loading.load_split("test")
    np.testing.assert_array_equal(again.images, loaded.images)
    assert len(mirror.requests) == 2, "a second load must read the cache, not the network"
    assert notices(caplog) == []  # the verified cache needs no notice
    assert isolated.sleeps == []

    train = data_loading.load_split("train")
    assert len(train) == 11 and len(mirror.requests) == 4
    assert leftovers(folder) == sorted(TEST_NAMES + TRAIN_NAMES)


def test_mirror_url_without_trailing_slash(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror)
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", mirror.url.rstrip("/"))
    assert len(data_loading.load_split("test")) == 6


def test_official_mirrors_are_tried_in_order(mirror, isolated, monkeypatch):
    monkeypatch.delenv("FASHIONZOO_DATA_MIRROR")
    use_spec(monkeypatch, mirror, mirrors=(mirror.root + "/gone/", mirror.url))
    assert len(data_loading.load_split("test")) == 6
    assert [r.split("/")[1] for r in mirror.requests] == ["gone", "files", "gone", "files"]
    assert leftovers(cache_dir(isolated)) == sorted(TEST_NAMES)


def test_mnist_downloads_into_its_own_cache(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror, name="mnist")
    assert len(data_loading.load_split("test", dataset="mnist")) == 6
    assert leftovers(cache_dir(isolated, "mnist")) == sorted(TEST_NAMES)
    assert not cache_dir(isolated).exists()


def test_wrong_md5_saves_nothing(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror, wrong_md5=(TEST_NAMES[0],))
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    message = assert_one_line(excinfo, TEST_NAMES[0], "checksum")
    assert md5(mirror.files[TEST_NAMES[0]]) in message
    assert leftovers(cache_dir(isolated)) == []


def test_wrong_md5_of_second_file_keeps_only_the_verified_one(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror, wrong_md5=(TEST_NAMES[1],))
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, TEST_NAMES[1], "checksum")
    assert leftovers(cache_dir(isolated)) == [TEST_NAMES[0]]  # the good file is verified and kept


def test_http_404(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror)
    mirror.modes[TEST_NAMES[0]] = "404"
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, mirror.url + TEST_NAMES[0], "HTTP 404", "--data-dir")
    assert leftovers(cache_dir(isolated)) == []
    assert len(mirror.requests) == 1, "a 404 is not worth retrying"


def test_http_500_is_retried_a_bounded_number_of_times(mirror, isolated, monkeypatch):
    use_spec(monkeypatch, mirror)
    mirror.modes[TEST_NAMES[0]] = "500"
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, mirror.url + TEST_NAMES[0], "HTTP 500")
    assert 2 <= len(mirror.requests) <= 5
    assert len(isolated.sleeps) <= len(mirror.requests) and sum(isolated.sleeps) < 30
    assert leftovers(cache_dir(isolated)) == []


def test_server_down(isolated, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", url)
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, url + TEST_NAMES[0], "download failed")
    assert 1 <= len(isolated.sleeps) <= 5, "retries must be bounded"
    assert all(0 <= s <= 10 for s in isolated.sleeps)
    assert leftovers(cache_dir(isolated)) == []


@pytest.mark.parametrize("mode", ["short", "chunked-drop"])
def test_connection_dropped_mid_file(mirror, isolated, monkeypatch, mode):
    """Content-Length longer than the body, or a chunked body cut off: a clear error and nothing cached."""
    use_spec(monkeypatch, mirror)
    mirror.modes[TEST_NAMES[0]] = mode
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test")
    assert_one_line(excinfo, TEST_NAMES[0])
    assert leftovers(cache_dir(isolated)) == []


def test_existing_cache_files_need_no_server(make_idx_folder, isolated, monkeypatch):
    cached_as_official(monkeypatch, make_idx_folder(cache_dir(isolated), sizes={"test": 3}))
    monkeypatch.setenv("FASHIONZOO_DATA_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(data_loading.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    assert len(data_loading.load_split("test")) == 3


# ------------------------------------------------------------------------------------- datasets, splits


def test_mnist_from_a_local_folder(make_idx_folder, isolated, caplog):
    folder = make_idx_folder(sizes={"test": 4}, seed=5)
    loaded = data_loading.load_split("test", dataset="mnist", data_dir=folder.path)
    np.testing.assert_array_equal(loaded.images, folder.arrays["test"][0])
    assert "reading mnist" in notices(caplog)[0]


def test_unknown_dataset(make_idx_folder):
    folder = make_idx_folder(sizes={"test": 2})
    with pytest.raises(FashionZooError) as excinfo:
        data_loading.load_split("test", dataset="cifar10", data_dir=folder.path)
    assert_one_line(excinfo, "cifar10", "fashion-mnist", "mnist")


def test_unknown_split(make_idx_folder):
    folder = make_idx_folder(sizes={"test": 2})
    with pytest.raises((ValueError, FashionZooError)):
        data_loading.load_split("validation", data_dir=folder.path)


def numbered_split(n: int) -> data_loading.Split:
    """A split whose image ``i`` is filled with ``i`` and whose label is ``i % 10``: rows can be traced."""
    images = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
    return data_loading.Split(images, (np.arange(n) % 10).astype(np.uint8), {"train-images-idx3-ubyte.gz": "abc"})


@pytest.mark.parametrize(("n", "fraction"), [(200, 0.1), (200, 0.25), (101, 0.5), (50, 0.0), (7, 1 / 3)])
def test_train_val_split(n, fraction):
    full = numbered_split(n)
    train, val = data_loading.train_val_split(full, fraction)
    np.random.seed(123)  # the global RNG must not matter
    train2, val2 = data_loading.train_val_split(full, fraction)
    for a, b in ((train, train2), (val, val2)):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)

    train_ids, val_ids = train.images[:, 0, 0].astype(int), val.images[:, 0, 0].astype(int)
    assert len(train) + len(val) == n
    assert len(val) == round(n * fraction)
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(set(train_ids) | set(val_ids)) == list(range(n))
    assert list(train_ids) == sorted(train_ids) and list(val_ids) == sorted(val_ids)  # original order kept
    np.testing.assert_array_equal(train.labels, train_ids % 10)  # labels travel with their images
    np.testing.assert_array_equal(val.labels, val_ids % 10)
    assert (train.images == train_ids[:, None, None]).all()
    assert train.files == val.files == full.files


def test_train_val_split_is_shuffled_not_a_tail():
    _, val = data_loading.train_val_split(numbered_split(200), 0.2)
    ids = val.images[:, 0, 0].astype(int)
    assert ids.min() < 100 < ids.max()


# ------------------------------------------------------------------------------------------ real data

needs_real_data = pytest.mark.skipif(
    not (SHARED_DATA_DIR / TEST_NAMES[0]).is_file(),
    reason=f"real Fashion-MNIST not found at {SHARED_DATA_DIR} (set FASHIONZOO_DATA_DIR to a folder of the IDX files)",
)


@needs_real_data
def test_real_test_split_is_the_official_file(caplog):
    test = data_loading.load_split("test", data_dir=SHARED_DATA_DIR)
    assert test.images.shape == (10_000, 28, 28) and test.images.dtype == np.uint8
    assert test.labels.shape == (10_000,)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert set(test.files) == set(TEST_NAMES)
    assert notices(caplog) == []  # the official files are verified: no "not enforced" notice


@needs_real_data
def test_real_train_split_is_the_official_file():
    train = data_loading.load_split("train", data_dir=SHARED_DATA_DIR)
    assert train.images.shape == (60_000, 28, 28) and train.labels.shape == (60_000,)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    fit, val = data_loading.train_val_split(train, 0.1)
    assert len(fit) == 54_000 and len(val) == 6_000
    test = data_loading.load_split("test", data_dir=SHARED_DATA_DIR)
    assert data_datasets.DATASETS["fashion-mnist"].is_official({**train.files, **test.files})
    assert not data_datasets.DATASETS["mnist"].is_official({**train.files, **test.files})


def test_mnist_official_files(shared_mnist, caplog):
    test = data_loading.load_split("test", dataset="mnist", data_dir=shared_mnist)
    train = data_loading.load_split("train", dataset="mnist", data_dir=shared_mnist)
    assert len(test) == 10_000 and len(train) == 60_000
    assert data_datasets.DATASETS["mnist"].is_official({**train.files, **test.files})
    assert notices(caplog) == []


def test_local_folder_with_other_files_is_flagged_not_official(make_idx_folder, isolated, caplog):
    folder = make_idx_folder()
    train, test = (
        data_loading.load_split("train", data_dir=folder.path),
        data_loading.load_split("test", data_dir=folder.path),
    )
    assert not data_datasets.DATASETS["fashion-mnist"].is_official({**train.files, **test.files})
    assert "not enforced" in notices(caplog)[0]


@needs_real_data
def test_distribution_package_copy_is_a_verified_source(isolated, monkeypatch, tmp_path):
    """Debian's dataset-fashion-mnist: same decompressed bytes, other gzip headers; used after the cache, before any
    download, and only if its content SHA-256 is the official one."""
    system = tmp_path / "usr-share-datasets"
    system.mkdir()
    for name in TEST_NAMES:  # repackaged: a different gzip header (a file name and mtime in it)
        with (
            gzip.open(SHARED_DATA_DIR / name, "rb") as source,
            open(system / name, "wb") as raw,
            gzip.GzipFile(filename="repacked", mode="wb", fileobj=raw, mtime=1_591_315_200) as target,
        ):
            shutil.copyfileobj(source, target)
        assert (system / name).read_bytes() != (SHARED_DATA_DIR / name).read_bytes()
    monkeypatch.setitem(
        data_datasets.DATASETS,
        "fashion-mnist",
        dataclasses.replace(data_datasets.DATASETS["fashion-mnist"], system_dir=str(system)),
    )
    monkeypatch.setattr(data_loading.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    test = data_loading.load_split("test")
    assert len(test) == 10_000 and test.files == data_loading.load_split("test", data_dir=SHARED_DATA_DIR).files

    with gzip.open(system / TEST_NAMES[1], "wb") as tampered:  # all-zero labels: not the official content
        tampered.write(gzip.decompress((SHARED_DATA_DIR / TEST_NAMES[1]).read_bytes())[:8] + bytes(10_000))
    downloads = []

    def offline(url: str, target: Path, md5: str, **options: object) -> Path:
        downloads.append(url)
        raise FashionZooError(f"{url}: offline")

    monkeypatch.setattr(data_loading, "download", offline)
    with pytest.raises(FashionZooError, match="offline"):
        data_loading.load_split("test")
    assert downloads and downloads[0].endswith(TEST_NAMES[1])  # the tampered copy was passed over
