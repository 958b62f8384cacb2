"""Fuzzing the readers of untrusted bytes: ``data_loading.read_idx`` and ``preprocessing.preprocess_file``.

Valid small files (``scripts/fuzz.py``: IDX images/labels, PNG/JPEG/GIF/WebP in several modes) are mutated by
hypothesis: bytes flipped, cut, appended, inserted, overwritten, header dimensions rewritten (huge ones
included). Every input must end in a valid result or in a one-line :class:`FashionZooError`: never another
exception, a hang (hypothesis deadline) or a memory blow-up. ``python scripts/fuzz.py --examples 20000`` runs the
same properties much longer and prints a summary. No TensorFlow here.
"""

from __future__ import annotations

import gzip
import importlib.util
import resource
import struct
import subprocess
import sys
import tracemalloc
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data import loading as data_loading

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fuzz.py"


def _load_fuzz_module():
    spec = importlib.util.spec_from_file_location("fashionzoo_fuzz_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_module()
IDX_SEEDS = fuzz.idx_seeds()
IMAGE_SEEDS = fuzz.image_seeds()

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=timedelta(seconds=20),  # generous: the CPUs are shared; a hang would still be caught
    database=None,  # no .hypothesis folder written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

positions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
blobs = st.binary(min_size=1, max_size=64) | st.sampled_from([bytes(1000), b"\xff" * 4096])
dims = st.sampled_from(fuzz.HUGE_DIMS) | st.integers(min_value=0, max_value=2**32 - 1)
mutation = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("extend"), blobs),
    st.tuples(st.just("insert"), positions, blobs),
    st.tuples(st.just("overwrite"), positions, blobs),
    st.tuples(st.just("dims"), st.integers(min_value=0, max_value=3), dims),
)
mutations = st.lists(mutation, min_size=1, max_size=4)

MEMORY_BLOW_UP_MB = 1500
"""Growth of the peak RSS that counts as a blow-up: above what the largest legal image (40 MP) needs."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- the fuzzer's own machinery --------------------------------------------------------------------------------------


def test_every_seed_is_valid(workdir: Path) -> None:
    for name, (raw, magic) in IDX_SEEDS.items():
        for gz in (False, True):
            outcome = fuzz.check_idx(gzip.compress(raw) if gz else raw, magic, gz, workdir)
            assert outcome.kind == "ok", (name, gz, outcome)
    for name, (raw, suffix) in IMAGE_SEEDS.items():
        assert fuzz.check_image(raw, suffix, workdir).kind == "ok", name


@pytest.mark.parametrize("name", sorted(IMAGE_SEEDS))
def test_dims_mutation_reaches_every_image_header(name: str) -> None:
    raw, _ = IMAGE_SEEDS[name]
    assert fuzz._dim_slots(bytearray(raw), "image"), f"{name}: no header dimension found to mutate"
    assert fuzz.apply(raw, [("dims", 0, 50_000)], "image") != raw


def test_dims_mutation_of_a_png_keeps_its_checksum_valid(workdir: Path) -> None:
    raw, _ = IMAGE_SEEDS["png-rgb"]
    outcome = fuzz.check_image(fuzz.apply(raw, [("dims", 0, 50_000), ("dims", 1, 50_000)], "image"), ".png", workdir)
    assert outcome.kind == "error: too many pixels", outcome  # the size reached Pillow: no CRC error first


# -- properties --------------------------------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(seed=st.sampled_from(sorted(IDX_SEEDS)), ops=mutations, gz=st.booleans(), gz_ops=st.lists(mutation, max_size=2))
def test_read_idx_survives_mutated_files(workdir: Path, seed: str, ops: list, gz: bool, gz_ops: list) -> None:
    raw, magic = IDX_SEEDS[seed]
    tracemalloc.start()
    try:
        outcome = fuzz.idx_case(raw, magic, ops, gz, gz_ops, workdir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not outcome.is_bug, f"{outcome.kind}\n{outcome.detail}"
    assert peak < 16 << 20, f"read_idx allocated {peak >> 20} MiB for a file of a few kB"


@FUZZ_SETTINGS
@given(seed=st.sampled_from(sorted(IMAGE_SEEDS)), ops=mutations)
def test_preprocess_file_survives_mutated_images(workdir: Path, seed: str, ops: list) -> None:
    raw, suffix = IMAGE_SEEDS[seed]
    before = _peak_rss_mb()
    outcome = fuzz.check_image(fuzz.apply(raw, ops, "image"), suffix, workdir)
    assert not outcome.is_bug, f"{outcome.kind}\n{outcome.detail}"
    assert _peak_rss_mb() - before < MEMORY_BLOW_UP_MB


@FUZZ_SETTINGS
@given(content=st.binary(max_size=512), suffix=st.sampled_from([".png", ".jpg", ".gif", ".webp", ".bmp", ".tif"]))
def test_preprocess_file_survives_random_bytes(workdir: Path, content: bytes, suffix: str) -> None:
    outcome = fuzz.check_image(content, suffix, workdir)
    assert not outcome.is_bug, f"{outcome.kind}\n{outcome.detail}"


# -- huge declared sizes are refused before anything is allocated ------------------------------------------------------


def _traced_peak(call) -> tuple[object, int]:
    """``call()``'s result (or exception) and the peak of Python allocations during it."""
    tracemalloc.start()
    try:
        try:
            result: object = call()
        except FashionZooError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "shape",
    [
        (2**32 - 1, 2**32 - 1, 2**32 - 1),
        (60_000, 28_000, 28),
        (2**31, 1, 1),
        (0, 2**32 - 1, 2**32 - 1),  # found by scripts/fuzz.py: no byte of data, but numpy cannot shape it
        (5, 0, 2**32 - 1),
    ],
)
def test_idx_header_declaring_huge_dims_is_refused_before_reading(tmp_path: Path, gz: bool, shape: tuple) -> None:
    raw = struct.pack(">I3I", data_loading.IMAGES_MAGIC, *shape) + bytes(5000)
    path = tmp_path / ("huge-idx3-ubyte.gz" if gz else "huge-idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if gz else raw)

    error, peak = _traced_peak(lambda: data_loading.read_idx(path, data_loading.IMAGES_MAGIC))

    assert isinstance(error, FashionZooError)
    assert_one_line(error, "limit", shape[0])
    assert peak < 1 << 20


def test_idx_header_declaring_more_than_the_file_holds_reads_only_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">I3I", data_loading.IMAGES_MAGIC, 60_000, 28, 28) + bytes(1000)))

    error, peak = _traced_peak(lambda: data_loading.read_idx(path, data_loading.IMAGES_MAGIC))

    assert isinstance(error, FashionZooError) and "truncated" in str(error)
    assert peak < 4 << 20  # not the 47 MB the header announces


def gzip_bomb(header: bytes, zeros_mib: int) -> bytes:
    """A valid gzip file of ``header`` followed by ``zeros_mib`` MiB of zeros, built without compressing them all:
    after a full flush the compressor's output for an identical block repeats."""
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(header + block) + compressor.flush(zlib.Z_FULL_FLUSH)
    middle = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(block) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(header)
    for _ in range(zeros_mib):
        crc = zlib.crc32(block, crc)
    size = (len(header) + zeros_mib * len(block)) & 0xFFFFFFFF
    return first + middle * (zeros_mib - 2) + last[:-8] + struct.pack("<II", crc, size)


def test_gzip_bomb_helper_is_a_valid_gzip_file() -> None:
    bomb = gzip_bomb(b"head", 4)
    assert gzip.decompress(bomb) == b"head" + bytes(4 << 20)


def test_idx_gzip_bomb_is_not_decompressed(tmp_path: Path) -> None:
    """256 MiB of zeros behind a 10-label header, about 256 kB on disk: refused as padded, not decompressed."""
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip_bomb(struct.pack(">II", data_loading.LABELS_MAGIC, 10) + bytes(10), 256))
    assert path.stat().st_size < 1 << 20

    error, peak = _traced_peak(lambda: data_loading.read_idx(path, data_loading.LABELS_MAGIC))

    assert isinstance(error, FashionZooError) and "padded" in str(error)
    assert peak < 4 << 20  # read_idx used to decompress all of it: 2 x 256 MiB


def test_legal_idx_files_still_load(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (1200, 28, 28), dtype=np.uint8)  # > one 1 MiB read chunk
    raw = struct.pack(">I3I", data_loading.IMAGES_MAGIC, *images.shape) + images.tobytes()
    for name, content in (("a-idx3-ubyte", raw), ("a-idx3-ubyte.gz", gzip.compress(raw))):
        (tmp_path / name).write_bytes(content)
        np.testing.assert_array_equal(data_loading.read_idx(tmp_path / name, data_loading.IMAGES_MAGIC), images)


# -- the long-run script ---------------------------------------------------------------------------------------------


def test_fuzz_script_runs_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--examples", "150", "--seed", "7", "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fuzz: 150 cases" in result.stdout and "idx: 75 cases" in result.stdout
    assert "no bugs" in result.stdout
