"""ONNX Runtime inference without TensorFlow: load an exported model once, classify arrays or image files.

Only the standard library, numpy, onnxruntime, Pillow and the TensorFlow-free fashionzoo modules are imported
here, so ``import fashionzoo.runtime`` stays light enough to embed.

>>> from fashionzoo.runtime import Classifier
>>> clf = Classifier.from_pretrained("cnn")  # the released ONNX file, SHA-256 verified
>>> for result in clf.classify(["shirt.jpg"], top_k=3):
...     print(result)
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import glob
import itertools
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from fashionzoo import hub
from fashionzoo._files import FashionZooError, atomic_path
from fashionzoo.devices import choose
from fashionzoo.globbing import expand_glob
from fashionzoo.preprocessing import convert_file, to_model_input
from fashionzoo.registry import (
    DEFAULT_MODEL,
    DEFAULT_TAG,
    FASHION_CLASSES,
    SCENES,
    TAGS,
    ModelEntry,
    PhotoCalibration,
    Preprocessing,
    resolve,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
"""File endings picked up when a folder is expanded (case-insensitive)."""
UNCERTAIN_BELOW = 0.5
"""Predictions whose top probability is below this are marked ``uncertain``, for weights without a
:class:`~fashionzoo.registry.PhotoCalibration` of their own (which chooses its threshold on the development photos;
docs/photos.md has how well it separates photos of none of the ten classes)."""
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"

log = logging.getLogger(__name__)
_sessions: dict[tuple[Any, ...], ort.InferenceSession] = {}
_sessions_lock = threading.Lock()


def providers_for(device: str) -> list[str]:
    """ONNX Runtime providers for ``cpu``, ``cuda`` or ``auto`` (CUDA when onnxruntime-gpu offers it; ``cuda``
    without it falls back to the CPU with a one-line warning)."""
    cuda = _CUDA in ort.get_available_providers()
    return [_CUDA, _CPU] if choose(device, cuda, "onnxruntime", "pip install onnxruntime-gpu") == "cuda" else [_CPU]


def _ort_reason(error: Exception) -> str:
    """The useful part of an onnxruntime load error: no status prefix, file name or C++ source location."""
    text = " ".join(str(error).split()).split(" failed:", 1)[-1]
    return re.sub(r"^\S+:\d+ \S+\(.*?\) ", "", text)[:200]


OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
"""Names accepted for ``graph_optimization_level``, mapped to ONNX Runtime's levels."""
EXECUTION_MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
"""Names accepted for ``execution_mode``: run nodes one at a time, or independent branches concurrently."""


@dataclass(frozen=True)
class SessionSettings:
    """ONNX Runtime session knobs. The defaults are ONNX Runtime's own, checked by the session-tuning sweep of
    docs/benchmarks.md: lower graph optimisation levels are slower (int8 needs ``all`` to fuse its QDQ nodes),
    parallel execution is slower for these chain-shaped graphs, arena and memory pattern off gain nothing, and one
    intra-op thread per physical core (``None``) beats a single thread on an idle machine."""

    graph_optimization_level: str = "all"
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    execution_mode: str = "sequential"
    memory_arena: bool = True
    memory_pattern: bool = True
    spinning: bool = True
    """Intra-op threads spin while they wait for work (ONNX Runtime's default). ``predict`` turns it off: its
    files are decoded on the same cores meanwhile, and spinning took CPU time from them (development photos, end
    to end, interleaved: 584-614 photos/s with spinning, 639-662 without)."""

    def __post_init__(self) -> None:
        if self.graph_optimization_level not in OPTIMIZATION_LEVELS:
            raise FashionZooError(f"unknown graph optimization level {self.graph_optimization_level!r}; choose one "
                                  f"of {', '.join(OPTIMIZATION_LEVELS)}")  # fmt: skip
        if self.execution_mode not in EXECUTION_MODES:
            raise FashionZooError(f"unknown execution mode {self.execution_mode!r}; choose one of "
                                  f"{', '.join(EXECUTION_MODES)}")  # fmt: skip
        for field_name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, field_name)
            if value is not None and value < 0:
                raise FashionZooError(f"{field_name} must be 0 or more (0 or None: ONNX Runtime decides), not {value}")

    def options(self) -> ort.SessionOptions:
        """The ``onnxruntime.SessionOptions`` for these settings."""
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by fashionzoo itself
        options.graph_optimization_level = OPTIMIZATION_LEVELS[self.graph_optimization_level]
        options.execution_mode = EXECUTION_MODES[self.execution_mode]
        options.enable_cpu_mem_arena = self.memory_arena
        options.enable_mem_pattern = self.memory_pattern
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads:
            options.inter_op_num_threads = self.inter_op_threads
        return options


def _session(path: Path, device: str, settings: SessionSettings, batch: tuple[str, int] | None = None
             ) -> ort.InferenceSession:  # fmt: skip
    """One session per file version, device, settings and ``batch`` (the batch axis's name and the size to fix it
    to, or None to keep it dynamic), created on first use and then shared."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, device, settings, batch)
    with _sessions_lock:
        if key in _sessions:
            return _sessions[key]
        providers = providers_for(device)
        options = settings.options()
        if batch is not None:
            options.add_free_dimension_override_by_name(*batch)
        try:
            session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail...)
            raise FashionZooError(f"{path}: not a usable ONNX model ({_ort_reason(error)})") from None
        if device == "cuda" and _CUDA in providers and _CUDA not in session.get_providers():
            log.warning("CUDA requested but the CUDA execution provider failed to start (check the CUDA and cuDNN "
                        "libraries); using CPU")
        _sessions[key] = session
        return session


class _SingleImage:
    """Runs a batch of one image faster than ``session.run`` on the dynamic-batch session (profile and figures in
    docs/inference-profile.md), with two changes that keep the output the same:

    - its own session with the batch axis fixed to 1, so that ONNX Runtime folds the shape arithmetic the Keras
      Flatten layer exports (Shape, Gather, Cast, Slice, Concat, Cast) into a constant and plans memory once;
    - I/O binding to an output buffer allocated once per thread, which skips the per-call feed-dict conversion
      and output allocation of ``session.run`` (without ``RunOptions``: passing one to ``run_with_iobinding``
      made a call 2.7x slower in onnxruntime 1.32).
    """

    def __init__(self, session: ort.InferenceSession, classes: int) -> None:
        self._session = session
        self._input_name, self._output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
        self._shape = (1, classes)
        self._local = threading.local()  # an I/O binding and its output buffer per calling thread

    def __call__(self, x: np.ndarray) -> np.ndarray:
        local = self._local
        binding = getattr(local, "binding", None)
        if binding is None:
            local.output = np.empty(self._shape, dtype=np.float32)
            binding = local.binding = self._session.io_binding()
            binding.bind_output(self._output_name, "cpu", 0, np.float32, self._shape, local.output.ctypes.data)
        binding.bind_cpu_input(self._input_name, np.ascontiguousarray(x))
        self._session.run_with_iobinding(binding)
        return local.output.copy()


@dataclass(frozen=True)
class Prediction:
    """The classification of one image file: best class and the ``top_k`` best (label, probability) pairs."""

    file: str
    class_id: int
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]
    uncertain: bool = False
    model_input: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The uint8 (28, 28) image the model saw."""

    def result_fields(self) -> dict[str, Any]:
        """The classification as JSON-ready fields (label, class_id, probability, uncertain, top_k), without the
        file: the ``predict --json`` line and the prediction files' rows name it each in their own way."""
        return {"label": self.label, "class_id": self.class_id, "probability": self.probability,
                "uncertain": self.uncertain, "top_k": [{"label": label, "probability": p} for label, p in self.top_k]}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``predict --json`` line), the file named as :func:`_file_fields` does."""
        return {**_file_fields(self.file), **self.result_fields()}

    def save_model_input(self, folder: str | os.PathLike) -> Path:
        """Write the image the model saw as a PNG under ``folder``, named after the input: its path (relative, or
        absolute without the leading ``/``) with ``.png`` added, so ``a/shirt.jpg`` gives ``folder/a/shirt.jpg.png``.
        The file appears whole or not at all."""
        if self.model_input is None:
            raise FashionZooError(f"{self.file}: no model input kept for this prediction")
        source = Path(self.file)
        relative = source.relative_to(source.anchor) if source.is_absolute() else source
        parts = [part for part in relative.parts if part != ".."]
        target = Path(folder, *parts[:-1], parts[-1] + ".png")
        try:
            with atomic_path(target, suffix=".png") as tmp:
                Image.fromarray(self.model_input).save(tmp)
        except OSError as error:
            raise FashionZooError(f"{target}: cannot write the model input ({error.strerror or error})") from None
        return target


@dataclass(frozen=True)
class Failure:
    """A file (or command-line input) that could not be classified, with a one-line reason naming it."""

    file: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``predict --json`` line of a file that failed): ``file`` and ``error``."""
        return {**_file_fields(self.file), "error": self.error}


def _file_fields(file: str) -> dict[str, str]:
    """``file`` for a JSON line. A name that is not UTF-8 comes with U+FFFD for the undecodable bytes, plus
    ``file_base64``: the name's exact bytes, to find the file again."""
    name = os.fsencode(file)
    readable = name.decode("utf-8", "replace")
    if readable == file:
        return {"file": file}
    # the name's undecodable bytes arrived as lone surrogates (surrogateescape)
    return {"file": readable, "file_base64": base64.b64encode(name).decode("ascii")}


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink looping on itself: reported by the file's own failure, not the folder's
        return False


def _image_files(folder: Path, recursive: bool = False) -> list[str] | Failure:
    try:
        names = _walk(folder, recursive)
    except PermissionError as error:
        return Failure(str(folder), f"{error.filename or folder}: permission denied (cannot list the folder)")
    except OSError as error:
        return Failure(str(folder), f"{error.filename or folder}: cannot list the folder ({error.strerror or error})")
    if not names:
        where = "this folder or its subfolders" if recursive else "this folder"
        hint = "" if recursive or not _has_subfolders(folder) else "; it has subfolders (--recursive looks in them)"
        return Failure(str(folder), f"{folder}: no image files in {where} ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    return names


def _has_subfolders(folder: Path) -> bool:
    """Whether ``folder`` holds a real subfolder (one that a recursive walk would enter)."""
    with os.scandir(folder) as entries:
        return any(entry.is_dir(follow_symlinks=False) for entry in entries)


def _walk(folder: Path, recursive: bool) -> list[str]:
    """Image files in name order; with ``recursive``, a subfolder's files take its name's place (symlinked folders
    are not followed, so a link loop cannot recurse forever; a stack of folders, not recursion, so any depth)."""
    found: list[str] = []
    stack = [iter(_sorted_entries(folder))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.is_dir(follow_symlinks=False):
            if recursive:
                stack.append(iter(_sorted_entries(entry.path)))
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and not _is_dir(entry):
            found.append(entry.path)
    return found


def _sorted_entries(folder: str | os.PathLike) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def expand_inputs(inputs: Iterable[str | os.PathLike], recursive: bool = False) -> Iterator[str | Failure]:
    """Image files named by command-line inputs, in order: files as given, folders as their image files (sorted;
    with ``recursive``, subfolders' too), glob patterns as their sorted matches (:func:`~fashionzoo.globbing.
    expand_glob`: each real folder once); what cannot be expanded, an empty input or a symlink loop yields a
    Failure."""
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        try:
            is_folder = path.is_dir()
        except OSError as error:  # e.g. a name too long for the system: that input fails, the others go on
            yield Failure(text, f"{text}: cannot read it ({os.strerror(error.errno)}); check the path")
            continue
        if not text:
            yield Failure(text, "'': an empty path (an unset variable?); name image files, folders or patterns")
        elif is_folder:
            found = _image_files(path, recursive)
            yield from ([found] if isinstance(found, Failure) else found)
        elif not path.exists() and glob.has_magic(text):
            matches, loops = expand_glob(text)
            for link in loops:
                yield Failure(link, f"{link}: symbolic link loop (it leads back to a folder above it); not followed")
            if matches:
                yield from expand_inputs(matches, recursive)
            elif not loops:
                yield Failure(text, f"{text}: no file matches this pattern")
        else:
            yield text


Loaded = tuple[str, np.ndarray, str | None]
"""A loaded file: its name, its 28x28 pixels and the photo's scene (None for an image in the data set's format;
see :func:`convert_file`)."""


def _load(item: str | os.PathLike | Failure, pipeline: str) -> Loaded | Failure:
    """A file after ``pipeline`` (see :func:`convert_file`), or the one-line reason it cannot be used (a Failure
    passes through)."""
    if isinstance(item, Failure):
        return item
    name = _file_name(item)
    if name is None:
        return Failure(repr(item), f"{item!r}: not a file name")
    try:
        pixels, scene = convert_file(name, pipeline)
        if pixels.min() == pixels.max():
            return Failure(name, f"{name}: a blank image (one flat colour once converted): nothing to classify")
        return name, pixels, scene
    except FashionZooError as error:
        return Failure(name, str(error))
    except (OSError, ValueError, MemoryError) as error:
        return Failure(name, f"{name}: could not convert the image ({type(error).__name__}: {error})")


def default_workers() -> int:
    """Workers that decode and preprocess files: one per CPU core available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_PROCESSES_FROM = 256
"""From this many files on, they are loaded in worker processes rather than threads. Preprocessing holds the GIL
for much of each photo (many small numpy steps): on 2 cores, two threads loaded the development photos at 701 a
second against 611 for one, two processes at 1,256. Forking two takes about 10 ms, but a few files gain little,
so up to one batch of files stays on threads."""
_CHUNK = 16
"""Files handed to a worker process at a time (one pickled round trip each)."""
_FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
"""Worker processes are forked (where the system can): a spawned process imports the caller's main module again,
which runs a script without an ``if __name__ == "__main__"`` guard a second time. The workers only decode and
preprocess (Pillow, numpy, OpenCV), never touching the parent's onnxruntime session."""


def _load_chunk(items: list[str | os.PathLike | Failure], pipeline: str) -> list[Loaded | Failure]:
    return [_load(item, pipeline) for item in items]


def _start_loader(parent: int) -> None:
    """A loading process yields to the model: it runs at a lower priority (``nice`` 10), so that ONNX Runtime's
    threads, which wait for one another at every operator, are not descheduled mid-operator (development photos,
    end to end, 6 interleaved pairs: 667 photos/s on average against 630, faster in 5). Ctrl-C is the parent's to
    handle: the process ignores it rather than print a traceback. On Linux it ends with its ``parent``: a parent
    killed by SIGTERM or SIGKILL left its loading processes blocked on their pipes forever.

    OpenCV keeps its own threads: ``cv2.setNumThreads`` hangs in a child forked after the parent used them, and one
    thread per process measured no faster (1,220 against 1,256 photos a second)."""
    os.nice(10)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no prctl
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)


_PR_SET_PDEATHSIG = 1
"""Linux's prctl option: the signal a process gets when its parent dies."""


def _lost(item: str | os.PathLike | Failure) -> Failure:
    """The failure of a file that was queued for a loading process that died."""
    if isinstance(item, Failure):
        return item
    name = _file_name(item)
    name = repr(item) if name is None else name
    return Failure(name, f"{name}: the process loading it died (out of memory?); classify it again, alone")


def _file_name(item: Any) -> str | None:
    """``item`` as a file name (``str``, ``bytes`` or path-like), or None for anything else."""
    try:
        return os.fsdecode(item)
    except TypeError:
        return None


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _load_all(items: Iterable[str | os.PathLike | Failure], workers: int, ahead: int, pipeline: str
              ) -> Iterator[Loaded | Failure]:  # fmt: skip
    """:func:`_load` over ``items`` in input order, on ``workers`` threads or processes (from
    :data:`_PROCESSES_FROM` files on), at most about ``ahead`` files in flight (so that the workers keep loading
    the next batch while the model runs on this one)."""
    if workers <= 1:
        yield from map(functools.partial(_load, pipeline=pipeline), items)
        return
    items = iter(items)
    first = list(itertools.islice(items, _PROCESSES_FROM))
    threads = len(first) < _PROCESSES_FROM or _FORK is None
    chunk = 1 if threads else _CHUNK

    def start() -> Executor:
        if threads:
            return ThreadPoolExecutor(workers, thread_name_prefix="fashionzoo-load")
        return ProcessPoolExecutor(workers, mp_context=_FORK, initializer=_start_loader, initargs=(os.getpid(),))

    pool = start()
    pending: deque[tuple[list[Any], Future]] = deque()

    def next_results() -> list[Loaded | Failure]:
        nonlocal pool
        group, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:  # a loading process died (out of memory?): its files and those queued fail
            lost = [group, *(queued for queued, _ in pending)]
            pending.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            pool = start()
            return [_lost(item) for queued in lost for item in queued]

    try:
        for group in _chunks(itertools.chain(first, items), chunk):
            pending.append((group, pool.submit(_load_chunk, group, pipeline)))
            if len(pending) * chunk >= ahead:
                yield from next_results()
        while pending:
            yield from next_results()
    finally:  # also when the caller stops early or Ctrl-C: files not started are dropped, not loaded first
        pool.shutdown(wait=True, cancel_futures=True)


def classify_files(
    items: Iterable[str | os.PathLike | Failure] | str | os.PathLike,
    predict: Callable[[np.ndarray], np.ndarray],
    classes: tuple[str, ...],
    top_k: int = 1,
    batch_size: int = 256,
    workers: int | None = None,
    uncertain_below: float | None = None,
    pipeline: str = "fashion-mnist",
    calibration: PhotoCalibration | None = None,
) -> Iterator[Prediction | Failure]:
    """Classify image files with ``predict`` (uint8 (N, 28, 28) -> probabilities), ``batch_size`` files at a time,
    each file turned into a 28x28 image by ``pipeline`` (the weights' ``Preprocessing.pipeline``).

    Results come in input order; a file that cannot be read or converted yields a :class:`Failure`, and
    Failure items in ``items`` (from :func:`expand_inputs`) pass through. Files are decoded and preprocessed by
    ``workers`` threads, or processes for many files (default: :func:`default_workers`). The weights'
    ``calibration`` shifts the probabilities of photos (not of images already in the data set's format). A
    prediction whose top probability is below ``uncertain_below`` (default: the calibration's, else
    :data:`UNCERTAIN_BELOW`) is marked ``uncertain``. Memory stays bounded by the batch.
    """
    if batch_size < 1:
        raise FashionZooError(f"batch size must be at least 1, not {batch_size}")
    if isinstance(items, (str, bytes, os.PathLike)):  # one file, not the characters of its name
        items = [items]
    if uncertain_below is None:
        uncertain_below = calibration.uncertain_below if calibration else UNCERTAIN_BELOW
    k = max(1, min(top_k, len(classes)))
    pending: list[Loaded | Failure] = []

    def flush() -> Iterator[Prediction | Failure]:
        loaded = [entry for entry in pending if not isinstance(entry, Failure)]
        probs = iter(_probabilities(predict, loaded, calibration))
        for entry in pending:
            if isinstance(entry, Failure):
                yield entry
                continue
            row = next(probs)
            if not np.isfinite(row).all():
                yield Failure(entry[0], f"{entry[0]}: the model gave non-finite probabilities (NaN or infinity); the "
                                        "model file is broken")  # fmt: skip
                continue
            best = np.argsort(-row, kind="stable")[:k]
            ranked = tuple((classes[i], round(float(row[i]), 6)) for i in best)
            yield Prediction(entry[0], int(best[0]), ranked[0][0], ranked[0][1], ranked,
                             uncertain=bool(row[best[0]] < uncertain_below), model_input=entry[1])  # fmt: skip
        pending.clear()

    count = 0
    for entry in _load_all(items, default_workers() if workers is None else workers, batch_size, pipeline):
        if isinstance(entry, Failure) and not count:
            yield entry  # nothing waits before it: report at once
            continue
        pending.append(entry)
        count += not isinstance(entry, Failure)
        if count == batch_size:
            yield from flush()
            count = 0
    yield from flush()


def released_calibration(entry: ModelEntry, other_weights: bool = False, calibrated: bool = True
                         ) -> PhotoCalibration | None:  # fmt: skip
    """The released weights' photo calibration, which holds for their own files only: None for ``other_weights``
    (a local ONNX or Keras file) or when ``calibrated`` is off."""
    return entry.weights.photos if entry.weights and calibrated and not other_weights else None


def _probabilities(predict: Callable[[np.ndarray], np.ndarray], loaded: list[Loaded],
                   calibration: PhotoCalibration | None) -> np.ndarray:  # fmt: skip
    """``predict``'s probabilities for the loaded files, the photos' shifted by ``calibration``."""
    if not loaded:
        return np.zeros((0, 0), dtype=np.float32)
    probs = predict(np.stack([pixels for _, pixels, _ in loaded]))
    return calibrated(probs, [scene for _, _, scene in loaded], calibration)


def calibrated(probs: np.ndarray, scenes: str | Sequence[str | None] | None,
               calibration: PhotoCalibration | None) -> np.ndarray:  # fmt: skip
    """``probs`` (N, classes) with the rows of photos shifted by ``calibration``'s offsets for their scene
    (``scenes``: one for all rows, or one per row, as :func:`convert_file` gives them); the data set's own images
    (scene None), and everything when ``calibration`` is None, are left as they are."""
    rows = [scenes] * len(probs) if scenes is None or isinstance(scenes, (str, bool)) else list(scenes)
    if len(rows) != len(probs):
        raise FashionZooError(f"{len(rows)} scenes for {len(probs)} images: give one scene per image, or one for all")
    unknown = [scene for scene in rows if scene is not None and scene not in SCENES]
    if unknown:
        raise FashionZooError(f"unknown scene {unknown[0]!r} (use one of {', '.join(SCENES)}, as convert_image "
                              "returns it, or None for an image in the data set's format)")  # fmt: skip
    if calibration is None or all(scene is None for scene in rows):
        return probs
    probs = np.array(probs, dtype=np.float32)
    for scene in set(rows) - {None}:
        chosen = np.array([row == scene for row in rows])
        probs[chosen] = shifted(probs[chosen], calibration.offsets_for(scene))
    return probs


def shifted(probs: np.ndarray, offsets: Sequence[float]) -> np.ndarray:
    """Probabilities (N, classes) with ``offsets`` added to their logarithms, normalised again (float32)."""
    logits = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-12)) + np.asarray(offsets, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class Classifier:
    """A classifier backed by an exported ONNX file, fp32 or int8 (no TensorFlow).

    What it needs to use the file, class names and input spec (size, scale, the image pipeline), is read from the
    file's ``fashionzoo.*`` metadata: an ONNX file alone is enough. A file without that metadata is taken as a
    Fashion-MNIST model, unless ``name`` names the registry model whose classes and spec to use. The released
    weights' :class:`~fashionzoo.registry.PhotoCalibration` comes with :meth:`from_pretrained` (or pass
    ``photo_calibration``)."""

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        name: str | ModelEntry | None = None,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization_level: str = "all",
        execution_mode: str = "sequential",
        memory_arena: bool = True,
        memory_pattern: bool = True,
        spinning: bool = True,
        photo_calibration: PhotoCalibration | None = None,
    ) -> None:
        """Open ``onnx_path`` (sessions are shared across instances with the same settings); the session knobs are
        those of :class:`SessionSettings`; ``photo_calibration`` is used by :meth:`classify`."""
        self.path = Path(onnx_path).expanduser()
        if not self.path.is_file():
            raise FashionZooError(f"{self.path}: no such ONNX file")
        fallback = resolve(name) if name else None
        self.settings = SessionSettings(graph_optimization_level, intra_op_threads, inter_op_threads, execution_mode,
                                        memory_arena, memory_pattern, spinning)  # fmt: skip
        self.session = _session(self.path, device, self.settings)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = self.metadata.get("fashionzoo.model", fallback.full_name if fallback else self.path.stem)
        self.classes = self._read_classes(fallback.classes if fallback else FASHION_CLASSES)
        self.preprocessing = self._read_input(fallback.preprocessing if fallback else None)
        self._check_signature()
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        self._run_options = ort.RunOptions()  # reused by every call: measured about 1 µs a call faster than none
        axis = self.session.get_inputs()[0].shape[0]  # the batch axis's name fixes it to 1 for the single-image path
        self._batch_axis = axis if isinstance(axis, str) and self.session.get_providers()[0] == _CPU else None
        self._single_image: _SingleImage | None = None
        if photo_calibration is not None and len(photo_calibration.offsets) != len(self.classes):
            raise FashionZooError(f"{self.path}: the photo calibration has {len(photo_calibration.offsets)} offsets "
                                  f"for {len(self.classes)} classes")  # fmt: skip
        self.photo_calibration = photo_calibration

    @classmethod
    def from_pretrained(
        cls,
        name: str | ModelEntry = DEFAULT_MODEL,
        *,
        onnx_path: str | os.PathLike | None = None,
        int8: bool = False,
        device: str = "cpu",
        calibrated: bool = True,
        **session: Any,
    ) -> Classifier:
        """The released ONNX model of ``name`` (``cnn``, ``cnn-small.mnist``; shipped, cached or fetched; SHA-256
        verified), its int8 version with ``int8=True``, or ``onnx_path``; with the released weights' photo
        calibration unless ``calibrated=False`` or ``onnx_path`` names another file. ``session`` holds the
        constructor's session knobs."""
        entry = resolve(name)
        if int8 and onnx_path is not None:
            raise FashionZooError(f"{onnx_path}: int8=True picks the released int8 file; pass one or the other")
        path = hub.resolve(entry, "onnx_int8" if int8 else "onnx", onnx_path)
        return cls(path, name=entry.full_name, device=device,
                   photo_calibration=released_calibration(entry, onnx_path is not None, calibrated), **session)

    def _read_classes(self, fallback: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.metadata.get("fashionzoo.classes")
        if raw is None:
            return fallback
        try:
            classes = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            classes = None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise FashionZooError(f"{self.path}: metadata 'fashionzoo.classes' is not a JSON list of class names")
        return tuple(classes)

    def _read_input(self, fallback: Preprocessing | None) -> Preprocessing:
        """The input spec from ``fashionzoo.input``, else ``fallback``, else Fashion-MNIST's."""
        raw = self.metadata.get("fashionzoo.input")
        if raw is None:
            return fallback or TAGS[DEFAULT_TAG].preprocessing
        try:
            return Preprocessing.from_json(raw)
        except (ValueError, TypeError) as error:
            raise FashionZooError(f"{self.path}: metadata 'fashionzoo.input' is not a usable input spec ({error}); "
                                  "export the model again") from None  # fmt: skip

    def _check_signature(self) -> None:
        """Refuse a graph that is not one float (N, H, W, C) input with a dynamic N, as the input spec says, and one
        (N, classes) output."""
        spec = self.preprocessing
        expected_shape = (spec.height, spec.width, spec.channels)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
        if len(shape) != 4 or inputs[0].type != "tensor(float)" or isinstance(shape[0], int) or \
                shape[1:] != expected_shape:  # fmt: skip
            found = "; ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            expected = ", ".join(map(str, expected_shape))
            raise FashionZooError(f"{self.path}: not a fashionzoo image model (input {found}; expected one float "
                                  f"input [N, {expected}] with a dynamic batch axis N)")  # fmt: skip
        shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
        if len(shape) != 2 or shape[1] != len(self.classes):
            found = "; ".join(f"{o.name} {o.shape}" for o in outputs)
            raise FashionZooError(f"{self.path}: not a fashionzoo image model (output {found}; expected one output "
                                  f"[N, {len(self.classes)}] of class probabilities)")  # fmt: skip

    def predict_probs(self, images: np.ndarray, batch_size: int = 256, *,
                      scenes: str | Sequence[str | None] | None = None) -> np.ndarray:  # fmt: skip
        """Class probabilities, float32 (N, classes), for uint8 images (N, H, W) or one (H, W), batched.

        The model's own reading, unless ``scenes`` marks images converted from photos (one scene for all, or one
        per image, as :func:`fashionzoo.preprocessing.convert_image` returns it; None for an image in the data set's
        format): their probabilities are shifted by :attr:`photo_calibration`, as :meth:`classify` and ``predict``
        shift them.

        >>> pixels, scene = convert_image(Image.open(io.BytesIO(upload)), clf.preprocessing.pipeline)
        >>> clf.predict_probs(pixels, scenes=scene)  # as predict reads a photo; a file opened with
        >>> # preprocessing.load_image(path, 128) gives exactly predict's figures (it decodes JPEGs at reduced size)
        """
        if batch_size < 1:
            raise FashionZooError(f"batch size must be at least 1, not {batch_size}")
        x = to_model_input(images, self.preprocessing)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        probs = np.concatenate([self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return calibrated(probs, scenes, self.photo_calibration)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, classes), of a float32 model-input batch (N, H, W, C), as
        :func:`fashionzoo.preprocessing.to_model_input` makes it; a batch of one takes the faster single-image
        path (:class:`_SingleImage`) on the CPU when the batch axis has a name. A failure while running, or an
        output that is not one row per image, is refused."""
        try:
            if len(x) == 1 and self._batch_axis is not None:
                probs = (self._single_image or self._open_single_image(self._batch_axis))(x)
            else:
                probs = self.session.run([self._output_name], {self._input_name: x}, self._run_options)[0]
        except Exception as error:  # onnxruntime raises its own pybind exception types (Fail, RuntimeException...)
            spec = self.preprocessing
            expected = (spec.height, spec.width, spec.channels)
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != expected:
                found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
                raise FashionZooError(f"run takes a float32 batch (N, {', '.join(map(str, expected))}) as "
                                      f"to_model_input makes it, not {found}") from None  # fmt: skip
            raise FashionZooError(f"{self.path}: the model failed while running ({_ort_reason(error)})") from None
        if probs.shape != (len(x), len(self.classes)):
            raise FashionZooError(f"{self.path}: the model returned shape {probs.shape} for {len(x)} images, not "
                                  f"{(len(x), len(self.classes))}: not a per-image classifier")  # fmt: skip
        return probs

    def _open_single_image(self, axis: str) -> _SingleImage:
        """The single-image path, created on first use (a second session: tens of milliseconds), on the CPU: it
        exists only when the first session runs there (a ``cuda`` request that fell back already said so once).
        It keeps the thread settings: one thread saved about 1 µs on the smallest models but cost the flagship
        26%."""
        self._single_image = _SingleImage(_session(self.path, "cpu", self.settings, batch=(axis, 1)),
                                          len(self.classes))  # fmt: skip
        return self._single_image

    def classify(self, paths: Iterable[str | os.PathLike | Failure] | str | os.PathLike, top_k: int = 1,
                 batch_size: int = 256, workers: int | None = None, uncertain_below: float | None = None
                 ) -> Iterator[Prediction | Failure]:  # fmt: skip
        """Classify image files (or one file) in order, ``batch_size`` at a time, photos with
        :attr:`photo_calibration`; unreadable files yield a :class:`Failure` (the other arguments are
        :func:`classify_files`')."""
        return classify_files(paths, lambda images: self.predict_probs(images, batch_size), self.classes, top_k,
                              batch_size, workers, uncertain_below, self.preprocessing.pipeline,
                              self.photo_calibration)  # fmt: skip
