"""Fuzz the two readers of untrusted bytes: ``data_loading.read_idx`` (IDX files, raw or gzip) and
``photos_convert.preprocess_file`` (PNG, JPEG, GIF, WebP photos).

Usage: python scripts/fuzz.py [--examples 20000] [--seed 0] [--target idx|image|both] [--timeout 10]
                              [--memory-limit-mb 4096] [--progress N]

Every case starts from a small valid file and applies 1-4 random mutations (flip bytes, truncate, extend,
insert, overwrite a window, rewrite a header dimension, including huge ones). The property checked is the
one the package promises: each input ends in a valid result (IDX: a uint8 array with the dimensions of the
magic number; image: a uint8 28x28 array) or in a :class:`FashionZooError` with a one-line message.
Anything else is a bug: another exception, a multi-line message, a wrong result, a case slower than
``--timeout`` seconds (a hang) or a failed allocation under the ``--memory-limit-mb`` address-space cap
(a memory blow-up). A summary (cases run, outcomes by kind, time, peak and final memory, the slowest case)
is printed at the end; the exit status is 1 if any bug was seen. ``tests/test_fuzz.py`` runs the same
properties with hypothesis.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data import loading as data_loading
from fashionzoo.photos import convert as photos_convert

# -- seeds ----------------------------------------------------------------------------------------------------------

HUGE_DIMS = (0, 1, 2, 27, 28, 29, 255, 256, 6_000, 50_000, 65_535, 65_536, 2**24, 2**31 - 1, 2**31, 2**32 - 1)
"""Values a header dimension is set to: edge cases, legal-but-big sizes and sizes no allocation could hold."""


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def idx_seeds() -> dict[str, tuple[bytes, int]]:
    """Valid IDX files (raw bytes) and the magic they are read with."""
    rng = np.random.default_rng(0)
    return {
        "images-3": (_idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)), data_loading.IMAGES_MAGIC),
        "images-0": (_idx(np.zeros((0, 28, 28), np.uint8)), data_loading.IMAGES_MAGIC),
        "images-small": (_idx(rng.integers(0, 256, (2, 4, 5), dtype=np.uint8)), data_loading.IMAGES_MAGIC),
        "labels-10": (_idx(np.arange(10, dtype=np.uint8)), data_loading.LABELS_MAGIC),
        "labels-0": (_idx(np.zeros(0, np.uint8)), data_loading.LABELS_MAGIC),
    }


def _garment(width: int, height: int) -> Image.Image:
    """A small photo-like RGB image: a dark-red shape with a gradient on white."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    pixels = np.asarray(img).copy()
    pixels[height // 5 : height - height // 6, width // 4 : width - width // 4] = (150, 40, 30)
    pixels[height // 3 : height // 2, width // 3 : width // 2] = (60, 200, 90)
    return Image.fromarray(pixels)


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def image_seeds() -> dict[str, tuple[bytes, str]]:
    """Valid small image files (bytes) and the file suffix they are saved under."""
    photo = _garment(40, 30)
    other = _garment(30, 40)
    gray16 = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)
    return {
        "png-rgb": (_save(photo, "PNG"), ".png"),
        "png-rgba": (_save(photo.convert("RGBA"), "PNG"), ".png"),
        "png-palette": (_save(photo.convert("P"), "PNG", transparency=0), ".png"),
        "png-16bit": (_save(gray16, "PNG"), ".png"),
        "png-1bit": (_save(photo.convert("1"), "PNG"), ".png"),
        "jpeg-rgb": (_save(photo, "JPEG", quality=80), ".jpg"),
        "jpeg-progressive": (_save(photo, "JPEG", quality=70, progressive=True), ".jpg"),
        "jpeg-cmyk": (_save(photo.convert("CMYK"), "JPEG"), ".jpg"),
        "gif-animated": (
            _save(photo, "GIF", save_all=True, append_images=[other.resize((40, 30))], duration=50),
            ".gif",
        ),
        "webp-lossy": (_save(photo, "WEBP", quality=60), ".webp"),
        "webp-lossless": (_save(photo, "WEBP", lossless=True), ".webp"),
        "webp-animated": (
            _save(photo, "WEBP", save_all=True, append_images=[other.resize((40, 30))], duration=50),
            ".webp",
        ),
    }


# -- mutations --------------------------------------------------------------------------------------------------------

Op = tuple
"""A mutation: ``("flip", pos, xor)``, ``("truncate", pos)``, ``("extend", bytes)``, ``("insert", pos, bytes)``,
``("overwrite", pos, bytes)`` or ``("dims", index, value)``. ``pos`` is a fraction of the current length in [0, 1]."""


def _at(data: bytes | bytearray, pos: float) -> int:
    return min(int(pos * len(data)), max(len(data) - 1, 0))


def _dim_slots(buf: bytearray, kind: str) -> list[tuple[int, int, str]]:
    """``(offset, size, byte order)`` of each header dimension of an IDX or image file."""
    if kind == "idx":
        ndim = buf[3] if len(buf) >= 4 else 0
        return [(4 + 4 * i, 4, "big") for i in range(ndim) if 8 + 4 * i <= len(buf)]
    slots: list[tuple[int, int, str]] = []
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        slots = [(16, 4, "big"), (20, 4, "big")]
    elif buf[:3] == b"GIF":
        slots = [(6, 2, "little"), (8, 2, "little")]
        descriptor = buf.find(b"\x2c", 13)
        if descriptor > 0:
            slots += [(descriptor + 5, 2, "little"), (descriptor + 7, 2, "little")]
    elif buf[:2] == b"\xff\xd8":
        for marker in (b"\xff\xc0", b"\xff\xc2"):
            sof = buf.find(marker)
            if sof > 0:
                slots += [(sof + 5, 2, "big"), (sof + 7, 2, "big")]
    elif buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        if buf[12:16] == b"VP8X":
            slots = [(24, 3, "little"), (27, 3, "little")]
        elif buf[12:16] == b"VP8 ":
            slots = [(26, 2, "little"), (28, 2, "little")]
        elif buf[12:16] == b"VP8L":
            slots = [(21, 4, "little")]  # 14-bit width-1, 14-bit height-1, alpha, version: scrambled together
    return [slot for slot in slots if slot[0] + slot[1] <= len(buf)]


def _fix_png_crc(buf: bytearray) -> None:
    """Recompute the IHDR checksum so that a rewritten size reaches the decoder instead of a CRC error."""
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 33 and buf[12:16] == b"IHDR":
        buf[29:33] = struct.pack(">I", zlib.crc32(bytes(buf[12:29])))


def apply(data: bytes, ops: Sequence[Op], kind: str) -> bytes:
    """Apply mutations in order; ``kind`` ("idx" or "image") says where header dimensions live."""
    buf = bytearray(data)
    for op in ops:
        name = op[0]
        if name == "flip" and buf:
            buf[_at(buf, op[1])] ^= op[2] or 0xFF
        elif name == "truncate":
            del buf[int(op[1] * len(buf)) :]
        elif name == "extend":
            buf += op[1]
        elif name == "insert":
            buf[_at(buf, op[1]) : _at(buf, op[1])] = op[2]
        elif name == "overwrite" and buf:
            start = _at(buf, op[1])
            buf[start : start + len(op[2])] = op[2]
        elif name == "dims":
            slots = _dim_slots(buf, kind)
            if slots:
                offset, size, order = slots[op[1] % len(slots)]
                buf[offset : offset + size] = (op[2] % (1 << (8 * size))).to_bytes(size, order)
                _fix_png_crc(buf)
    return bytes(buf)


def random_ops(rng: random.Random) -> list[Op]:
    """1-4 random mutations (the script's generator; the tests draw the same shapes with hypothesis)."""
    ops: list[Op] = []
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(("flip", "flip", "truncate", "extend", "insert", "overwrite", "dims", "dims"))
        blob = rng.randbytes(rng.choice((1, 2, 4, 16, 256)))
        if name == "flip":
            ops.append(("flip", rng.random(), rng.randint(1, 255)))
        elif name == "truncate":
            ops.append(("truncate", rng.random()))
        elif name == "extend":
            ops.append(("extend", blob if rng.random() < 0.7 else bytes(rng.choice((1, 100, 10_000)))))
        elif name in ("insert", "overwrite"):
            ops.append((name, rng.random(), blob))
        else:
            value = rng.choice(HUGE_DIMS) if rng.random() < 0.7 else rng.getrandbits(32)
            ops.append(("dims", rng.randint(0, 3), value))
    return ops


# -- targets and outcomes ---------------------------------------------------------------------------------------------


class Hang(Exception):
    """Raised by the per-case alarm of the script."""


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok", "error: <category>" or "BUG: <what>"
    detail: str = ""

    @property
    def is_bug(self) -> bool:
        return self.kind.startswith("BUG")


_CATEGORIES = (
    ("megapixel limit", "too many pixels"),
    ("not enough memory", "BUG: out of memory"),  # a refused allocation under the cap: a blow-up
    ("MiB limit", "declared size over the limit"),
    ("not an IDX", "wrong magic"),
    ("padded", "truncated or padded"),
    ("truncated IDX", "truncated or padded"),
    ("truncated or corrupt", "truncated or corrupt image"),
    ("unreadable or corrupt", "corrupt gzip"),
    ("not an image", "not an image"),
    ("empty", "empty file"),
)


def _categorise(message: str) -> str:
    for fragment, category in _CATEGORIES:
        if fragment in message:
            return category if category.startswith("BUG") else f"error: {category}"
    return "error: other"


def check(call, validate) -> Outcome:
    """Run ``call()``; classify its result (``validate(result)`` returns a problem or ``""``) or its exception."""
    try:
        result = call()
    except FashionZooError as error:
        message = str(error)
        if not message.strip() or "\n" in message or "\r" in message:
            return Outcome("BUG: message not one line", repr(message))
        return Outcome(_categorise(message), message)
    except Hang:
        return Outcome("BUG: hang", "")
    except MemoryError:
        return Outcome("BUG: MemoryError", traceback.format_exc(limit=-3))
    except Exception as error:  # noqa: BLE001 - anything else is what the fuzzer looks for
        return Outcome(f"BUG: {type(error).__name__}", traceback.format_exc(limit=-4))
    problem = validate(result)
    return Outcome(f"BUG: {problem}", repr(result)[:200]) if problem else Outcome("ok")


def check_idx(raw: bytes, magic: int, gz: bool, folder: Path) -> Outcome:
    """Write ``raw`` (gzipped if ``gz``) as an IDX file and read it with ``read_idx``."""
    path = folder / ("fuzz-idx-ubyte.gz" if gz else "fuzz-idx-ubyte")
    path.write_bytes(raw)

    def validate(array: object) -> str:
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
            return "not a uint8 array"
        if array.ndim != magic & 0xFF:
            return f"{array.ndim} dimensions for magic {magic}"
        return ""

    return check(lambda: data_loading.read_idx(path, magic), validate)


def check_image(raw: bytes, suffix: str, folder: Path) -> Outcome:
    """Write ``raw`` as an image file and run ``preprocess_file`` on it."""
    path = folder / f"fuzz{suffix}"
    path.write_bytes(raw)

    def validate(array: object) -> str:
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != (28, 28):
            return "not a uint8 28x28 array"
        return ""

    return check(lambda: photos_convert.preprocess_file(path), validate)


def idx_case(seed: bytes, magic: int, ops: Sequence[Op], gz: bool, gz_ops: Sequence[Op], folder: Path) -> Outcome:
    """The IDX case: mutate the raw bytes, optionally gzip them and mutate the compressed bytes too."""
    raw = apply(seed, ops, "idx")
    if gz:
        raw = apply(gzip.compress(raw, mtime=0), gz_ops, "gzip")
    return check_idx(raw, magic, gz, folder)


# -- the script -------------------------------------------------------------------------------------------------------


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory() -> str:
    """Current resident and virtual size (Linux), to tell a leak from a one-off peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return f"RSS {int(fields['VmRSS'].split()[0]) >> 10} MB, VM {int(fields['VmSize'].split()[0]) >> 10} MB"
    except (OSError, KeyError, ValueError):
        return f"peak RSS {_peak_rss_mb():.0f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="cases to run in all (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=("idx", "image", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds after which a case counts as a hang")
    parser.add_argument("--memory-limit-mb", type=int, default=4096, help="address-space cap (0: none)")
    parser.add_argument("--show", type=int, default=3, help="bug details to print per kind")
    parser.add_argument("--progress", type=int, default=0, help="print a progress line every N cases")
    args = parser.parse_args(argv)

    if args.memory_limit_mb:
        cap = args.memory_limit_mb << 20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    signal.signal(signal.SIGALRM, _on_alarm)
    rng = random.Random(args.seed)
    idx = list(idx_seeds().items())
    images = list(image_seeds().items())
    targets = {"idx": ["idx"], "image": ["image"], "both": ["idx", "image"]}[args.target]
    counts: dict[str, collections.Counter] = {t: collections.Counter() for t in targets}
    bugs: dict[str, list[str]] = collections.defaultdict(list)
    slowest = (0.0, "")
    memory_at_start = _memory()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fashionzoo-fuzz-") as tmp:
        folder = Path(tmp)
        for case in range(args.examples):
            target = targets[case % len(targets)]
            ops = random_ops(rng)
            if target == "idx":
                name, (seed, magic) = rng.choice(idx)
                gz = rng.random() < 0.5
                gz_ops = random_ops(rng) if gz and rng.random() < 0.5 else []
                label = f"idx {name} gz={gz} ops={ops} gz_ops={gz_ops}"
                run = lambda: idx_case(seed, magic, ops, gz, gz_ops, folder)  # noqa: E731,B023
            else:
                name, (seed, suffix) = rng.choice(images)
                label = f"image {name} ops={ops}"
                run = lambda: check_image(apply(seed, ops, "image"), suffix, folder)  # noqa: E731,B023
            began = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            try:
                outcome = run()
            except Hang:
                outcome = Outcome("BUG: hang")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.perf_counter() - began
            slowest = max(slowest, (took, label))
            counts[target][outcome.kind] += 1
            if outcome.is_bug and len(bugs[outcome.kind]) < args.show:
                bugs[outcome.kind].append(f"{label}\n{outcome.detail}\n(case {case}, {_memory()})")
            if args.progress and (case + 1) % args.progress == 0:
                print(f"  ... {case + 1} cases, {time.perf_counter() - start:.0f} s, {_memory()}", flush=True)
    elapsed = time.perf_counter() - start

    total = sum(sum(c.values()) for c in counts.values())
    print(
        f"fuzz: {total} cases in {elapsed:.1f} s ({total / elapsed:.0f}/s), seed {args.seed}, "
        f"peak RSS {_peak_rss_mb():.0f} MB, memory cap {args.memory_limit_mb or 'none'} MB, "
        f"slowest case {slowest[0]:.2f} s"
    )
    print(f"  memory: at start {memory_at_start}; at the end {_memory()}")
    for target, counter in counts.items():
        print(f"  {target}: {sum(counter.values())} cases")
        for kind, n in counter.most_common():
            print(f"    {n:7d}  {kind}")
    n_bugs = sum(n for c in counts.values() for kind, n in c.items() if kind.startswith("BUG"))
    for kind, examples in bugs.items():
        print(f"\n{kind}:")
        for example in examples:
            print("  " + example.replace("\n", "\n  "))
    print(f"\n{'no bugs' if not n_bugs else f'{n_bugs} BUG cases'}; slowest: {slowest[1][:300]}")
    return 1 if n_bugs else 0


if __name__ == "__main__":
    sys.exit(main())
