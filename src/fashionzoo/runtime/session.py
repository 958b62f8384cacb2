"""ONNX Runtime sessions: providers for a device, session settings, cached sessions."""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fashionzoo.core.devices import choose
from fashionzoo.core.errors import FashionZooError
from fashionzoo.runtime.graph_limits import check_graph

MAX_THREADS = 16 * (os.cpu_count() or 1)
"""Most threads a session may ask for: far past any gain, and short of what hangs or kills the process (100,000
hung ONNX Runtime, 1,000,000 killed it)."""
MEMORY_LIMIT = 1 << 30
"""Most bytes ONNX Runtime's CPU memory arena may hold, one arena shared by every session of the process (its
``max_mem``): every released model ran batches of 1,024 within it, while a foreign graph asking for more fails with
one line rather than taking the machine's memory. A session with ``memory_arena=False`` allocates outside it."""
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"
log = logging.getLogger(__name__)
_sessions: dict[tuple[Any, ...], ort.InferenceSession] = {}
_sessions_lock = threading.Lock()
_shared_arena: list[bool] = []  # made once per process, under _sessions_lock


def providers_for(device: str) -> list[str]:
    """ONNX Runtime providers for ``cpu``, ``cuda`` or ``auto`` (CUDA when onnxruntime-gpu offers it; ``cuda``
    without it falls back to the CPU with a one-line warning)."""
    cuda = CUDA_PROVIDER in ort.get_available_providers()
    return (
        [CUDA_PROVIDER, CPU_PROVIDER]
        if choose(device, cuda, "onnxruntime", "pip install onnxruntime-gpu") == "cuda"
        else [CPU_PROVIDER]
    )


def ort_reason(error: Exception) -> str:
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
    files are decoded on the same cores meanwhile, and spinning took CPU time from them (measured on the
    development photos: docs/photos.md)."""

    def __post_init__(self) -> None:
        if self.graph_optimization_level not in OPTIMIZATION_LEVELS:
            raise FashionZooError(
                f"unknown graph optimization level {self.graph_optimization_level!r}; choose one "
                f"of {', '.join(OPTIMIZATION_LEVELS)}"
            )
        if self.execution_mode not in EXECUTION_MODES:
            raise FashionZooError(
                f"unknown execution mode {self.execution_mode!r}; choose one of {', '.join(EXECUTION_MODES)}"
            )
        for field_name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, field_name)
            if value is not None and not 0 <= value <= MAX_THREADS:
                raise FashionZooError(
                    f"{field_name} must be from 0 to {MAX_THREADS} (0 or None: ONNX Runtime decides), not {value}"
                )

    def options(self) -> ort.SessionOptions:
        """The ``onnxruntime.SessionOptions`` for these settings."""
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by fashionzoo itself
        options.graph_optimization_level = OPTIMIZATION_LEVELS[self.graph_optimization_level]
        options.execution_mode = EXECUTION_MODES[self.execution_mode]
        options.enable_cpu_mem_arena = self.memory_arena
        if self.memory_arena:
            options.add_session_config_entry("session.use_env_allocators", "1")  # the arena of MEMORY_LIMIT
        options.enable_mem_pattern = self.memory_pattern
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads:
            options.inter_op_num_threads = self.inter_op_threads
        return options


def cached_session(
    path: Path, device: str, settings: SessionSettings, batch: tuple[str, int] | None = None
) -> ort.InferenceSession:
    """One session per file version, device, settings and ``batch`` (the batch axis's name and the size to fix it
    to, or None to keep it dynamic), created on first use and then shared."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, device, settings, batch)
    with _sessions_lock:
        if key in _sessions:
            return _sessions[key]
        check_graph(path)
        _make_shared_arena()
        providers = providers_for(device)
        options = settings.options()
        if batch is not None:
            options.add_free_dimension_override_by_name(*batch)
        try:
            session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail...)
            raise FashionZooError(f"{path}: not a usable ONNX model ({ort_reason(error)})") from None
        if device == "cuda" and CUDA_PROVIDER in providers and CUDA_PROVIDER not in session.get_providers():
            log.warning(
                "CUDA requested but the CUDA execution provider failed to start (check the CUDA and cuDNN "
                "libraries); using CPU"
            )
        _sessions[key] = session
        return session


def _make_shared_arena() -> None:
    """Register, once per process, ONNX Runtime's CPU memory arena bounded to :data:`MEMORY_LIMIT`."""
    if not _shared_arena:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"max_mem": MEMORY_LIMIT}))
        _shared_arena.append(True)


def memory_reason(error: Exception) -> str | None:
    """A one-line reason when ``error`` is the arena refusing more than :data:`MEMORY_LIMIT`, else None."""
    found = re.search(r"smaller than requested bytes of (\d+)", str(error))
    if found is None:
        return None
    return (
        f"the model asked for {int(found.group(1)):,} bytes at once, over the {MEMORY_LIMIT >> 20} MB fashionzoo "
        "lets ONNX Runtime hold; classify fewer images at a time (batch_size)"
    )


class SingleImage:
    """Runs a batch of one image faster than ``session.run`` on the dynamic-batch session (profile and figures in
    docs/inference-profile.md), with two changes that keep the output the same:

    - its own session with the batch axis fixed to 1, so that ONNX Runtime folds the shape arithmetic the Keras
      Flatten layer exports (Shape, Gather, Cast, Slice, Concat, Cast) into a constant and plans memory once;
    - I/O binding to an output buffer allocated once per thread, which skips the per-call feed-dict conversion
      and output allocation of ``session.run`` (without ``RunOptions``: passing one to ``run_with_iobinding``
      made a call several times slower; docs/photos.md).
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
