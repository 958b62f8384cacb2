"""Side-by-side inference benchmark: Keras ``model.predict``, a direct Keras call in a ``tf.function``, and ONNX
Runtime with the fp32 and int8 files, per model and batch size. Imports TensorFlow: import lazily.

Every backend gets the same float32 NHWC batch (seeded random pixels: the models' cost does not depend on the
values). Each cell is warmed up, then timed call by call until ``repeats`` calls or ``max_seconds`` have passed
(at least three calls); p50 and p99 are per-batch latencies and images/s is ``batch_size / p50``.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf

from fashionzoo import __version__, hub, models
from fashionzoo._files import FashionZooError, home_dir, sha256_file
from fashionzoo.devices import choose
from fashionzoo.export import describe, export_onnx, quantize_int8
from fashionzoo.machine import cpu_facts, machine_info, peak_fp32
from fashionzoo.preprocessing import to_model_input
from fashionzoo.registry import ModelEntry, get_entry, resolve
from fashionzoo.runtime import Classifier

BACKENDS = ("keras_predict", "keras_call", "onnx_fp32", "onnx_int8")
DEFAULT_BATCH_SIZES = (1, 8, 64, 256, 1024)
MIN_REPEATS = 3
Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: called before each timed cell (and once more with ``done == total``)."""


def flops_per_image(model: keras.Model) -> int:
    """FLOPs of one image: 2 x multiply-accumulates of every Conv2D and Dense layer (nested models included);
    bias, activations, pooling and softmax are left out (under 1% for the zoo's models)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += flops_per_image(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * math.prod(layer.output.shape[1:]) * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * math.prod(layer.input.shape[1:-1]) * math.prod(layer.kernel.shape)
    return total


def onnx_files(
    model: str | ModelEntry, weights: str | Path | None = None, data_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """The fp32 and int8 ONNX files of a trained model: the released ones (unless ``weights`` are given), else
    exported and quantised once into ``$FASHIONZOO_HOME/bench``, keyed by the weights' SHA-256."""
    entry = resolve(model)
    weights_path = hub.resolve(entry, "weights", weights)  # fails clearly when the model has no released weights
    released = entry.weights.files if entry.weights and weights is None else {}
    sha = released["weights"].sha256 if "weights" in released else sha256_file(weights_path)
    stem = f"{entry.full_name}-{__version__}-{sha[:16]}"
    fp32 = hub.resolve(entry, "onnx") if "onnx" in released else home_dir() / "bench" / f"{stem}.onnx"
    if not fp32.is_file():
        export_onnx(entry, fp32, weights=weights, data_dir=data_dir)
    int8 = hub.resolve(entry, "onnx_int8") if "onnx_int8" in released else home_dir() / "bench" / f"{stem}.int8.onnx"
    if not int8.is_file():
        quantize_int8(entry, fp32, int8, data_dir=data_dir)
    return {"fp32": fp32, "int8": int8}


def _cpu_seconds() -> tuple[float, float | None, float]:
    """(wall clock, CPU seconds used by every process so far from /proc/stat or None, CPU seconds of this one)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        idle = int(fields[3]) + int(fields[4])  # idle + iowait
        busy: float | None = (sum(int(v) for v in fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = None
    return time.perf_counter(), busy, time.process_time()


def _others_share(start: tuple[float, float | None, float]) -> float | None:
    """The fraction of all CPUs that other processes kept busy since ``start`` (None where /proc/stat is missing)."""
    end = _cpu_seconds()
    if start[1] is None or end[1] is None:
        return None
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / ((end[0] - start[0]) * (os.cpu_count() or 1)))


def _time(call: Callable[[np.ndarray], Any], x: np.ndarray, warmup: int, repeats: int, max_seconds: float
          ) -> list[float]:  # fmt: skip
    """Seconds per call after ``warmup`` calls, garbage collection paused while timing."""
    for _ in range(warmup):
        call(x)
    times: list[float] = []
    minimum = min(MIN_REPEATS, repeats)
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + max_seconds
        while len(times) < repeats and (len(times) < minimum or time.perf_counter() < deadline):
            start = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - start)
    finally:
        if gc_enabled:
            gc.enable()
    return times


def _stats(times: list[float], batch_size: int) -> dict[str, Any]:
    p50 = float(np.percentile(times, 50))
    return {"batch_size": batch_size, "p50_ms": p50 * 1e3, "p99_ms": float(np.percentile(times, 99)) * 1e3,
            "images_per_s": batch_size / p50, "runs": len(times)}  # fmt: skip


def _set_tf_threads(threads: int | None) -> None:
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started: its thread pools are fixed
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise FashionZooError(f"TensorFlow already runs with other thread settings; benchmark with {threads} "
                                  "threads in a fresh process") from None  # fmt: skip


def _keras_device(device: str) -> str:
    gpus = bool(tf.config.list_physical_devices("GPU"))
    return "/GPU:0" if choose(device, gpus, "TensorFlow", "pip install 'fashionzoo[cuda]'") == "cuda" else "/CPU:0"


def _keras_calls(model: keras.Model, entry: ModelEntry, device: str) -> dict[str, Callable[[np.ndarray], Any]]:
    spec = tf.TensorSpec([None, *entry.input_shape], tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    where = _keras_device(device)

    def predict(x: np.ndarray) -> np.ndarray:
        with tf.device(where):
            return model.predict(x, batch_size=len(x), verbose=0)

    def direct(x: np.ndarray) -> np.ndarray:
        with tf.device(where):
            return call(x).numpy()

    return {"keras_predict": predict, "keras_call": direct}


def _onnx_call(clf: Classifier) -> Callable[[np.ndarray], Any]:
    session, feed, fetch = clf.session, clf.session.get_inputs()[0].name, [clf.session.get_outputs()[0].name]
    return lambda x: session.run(fetch, {feed: x})


def _inputs(entry: ModelEntry, n: int) -> np.ndarray:
    p = entry.preprocessing
    return to_model_input(np.random.default_rng(0).integers(0, 256, (n, p.height, p.width), dtype=np.uint8))


def onnx_latency(onnx_path: str | os.PathLike, model: str | ModelEntry, batch_size: int = 1,
                 max_seconds: float = 3.0) -> dict[str, Any]:  # fmt: skip
    """ONNX Runtime latency of one file on the CPU with the default session settings: p50/p99 ms, images/s, and
    the share of the CPU other processes used meanwhile (a figure taken on a busy machine says so)."""
    entry = resolve(model)
    clf = Classifier(onnx_path, name=entry.full_name)
    start = _cpu_seconds()
    times = _time(_onnx_call(clf), _inputs(entry, batch_size), 20, 100_000, max_seconds)
    return {**_stats(times, batch_size), "others_cpu_share": _others_share(start)}


def _model_summary(entry: ModelEntry, model: keras.Model, files: dict[str, Path]) -> dict[str, Any]:
    meta = describe(files["int8"])
    fp32_bytes, int8_bytes = files["fp32"].stat().st_size, files["int8"].stat().st_size
    return {
        "params": model.count_params(),
        "flops_per_image": flops_per_image(model) * entry.views_per_image,
        "fp32": {"file": str(files["fp32"]), "bytes": fp32_bytes,
                 "test_accuracy": float(meta.get("fashionzoo.fp32_test_accuracy", "nan"))},
        "int8": {"file": str(files["int8"]), "bytes": int8_bytes, "size_ratio": fp32_bytes / int8_bytes,
                 "test_accuracy": float(meta.get("fashionzoo.test_accuracy", "nan")),
                 "top1_agreement": float(meta.get("fashionzoo.fp32_top1_agreement", "nan")),
                 "quantization": meta.get("fashionzoo.quantization", "")},
        "input": list(entry.input_shape),
    }  # fmt: skip


def _best(rows: list[dict[str, Any]], flops: int, peak: float | None, backends: Iterable[str]) -> dict[str, Any]:
    """The fastest (backend, batch size) among ``backends``: achieved GFLOP/s and fraction of the fp32 peak."""
    best = max((r for r in rows if r["backend"] in set(backends)), key=lambda r: r["images_per_s"])
    gflops = best["images_per_s"] * flops / 1e9
    return {"backend": best["backend"], "batch_size": best["batch_size"], "images_per_s": best["images_per_s"],
            "gflops": gflops, "fraction_of_peak": gflops / peak if peak else None}  # fmt: skip


def machine(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Where the figures were measured: CPU, clock, flags, peak fp32 FLOP/s, library versions, threads, load.

    :func:`run` adds the ONNX Runtime providers used and ``others_cpu_share``: the fraction of all CPUs that other
    processes kept busy during the run (0 on a quiet machine)."""
    cpu = cpu_facts()
    return {
        **machine_info(device),
        "cpu_physical_cores": cpu["physical_cores"],
        "cpu_mhz": cpu["mhz"],
        "cpu_flags": cpu["flags"],
        "peak_fp32": peak_fp32(cpu, threads),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "fashionzoo": __version__,
        "threads": threads,
        "tensorflow_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TF decides
        "keras_device": _keras_device(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run(
    names: Iterable[str],
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 1000,
    max_seconds: float = 1.5,
    progress: Progress | None = None,
    *,
    weights: dict[str, str | Path] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Time every backend of :data:`BACKENDS` for each model and batch size; returns ``{"machine", "settings",
    "models", "results"}`` where ``results`` has one row per (model, backend, batch size) with p50/p99 latency (ms),
    images/s, and speedups over Keras predict and over the direct call. ``weights`` maps model names to local
    ``.weights.h5`` files (default: released weights)."""
    entries = [get_entry(name) for name in names]
    sizes = sorted(set(batch_sizes))
    if not entries or not sizes or min(sizes) < 1:
        raise FashionZooError("name at least one model and batch sizes of at least 1")
    weights = {get_entry(name).name: path for name, path in (weights or {}).items()}
    for entry in entries:
        hub.resolve(entry, "weights", weights.get(entry.name))  # fail before any timing if weights are missing
    _set_tf_threads(threads)
    peak = peak_fp32(cpu_facts(), threads)["gflops"]
    start = _cpu_seconds()
    report = progress or (lambda done, total, label: None)
    total, done = len(entries) * len(sizes) * len(BACKENDS), 0
    summaries: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    providers: set[str] = set()
    for entry in entries:
        report(done, total, f"{entry.name}: loading, exporting and quantising")
        model = models.load(entry, weights.get(entry.name))
        files = onnx_files(entry, weights.get(entry.name), data_dir)
        calls = _keras_calls(model, entry, device)
        for precision in ("fp32", "int8"):
            clf = Classifier(files[precision], name=entry.full_name, device=device, intra_op_threads=threads)
            providers.update(clf.session.get_providers()[:1])
            calls[f"onnx_{precision}"] = _onnx_call(clf)
        summaries[entry.name] = _model_summary(entry, model, files)
        x_all = _inputs(entry, max(sizes))
        rows = []
        for size in sizes:
            cell: dict[str, dict[str, Any]] = {}
            for backend in BACKENDS:
                report(done, total, f"{entry.name} {backend} batch {size}")
                times = _time(calls[backend], x_all[:size], warmup, repeats, max_seconds)
                cell[backend] = {"model": entry.name, "backend": backend, **_stats(times, size)}
                done += 1
            for row in cell.values():
                row["speedup_vs_predict"] = cell["keras_predict"]["p50_ms"] / row["p50_ms"]
                row["speedup_vs_call"] = cell["keras_call"]["p50_ms"] / row["p50_ms"]
            rows.extend(cell.values())
        results.extend(rows)
        flops = summaries[entry.name]["flops_per_image"]
        summaries[entry.name]["best_fp32"] = _best(rows, flops, peak, ("keras_predict", "keras_call", "onnx_fp32"))
        summaries[entry.name]["best"] = _best(rows, flops, peak, BACKENDS)
    report(total, total, "done")
    info = machine(device, threads)
    info["onnxruntime_providers"] = sorted(providers)
    info["others_cpu_share"] = _others_share(start)
    settings = {"warmup": warmup, "repeats": repeats, "max_seconds": max_seconds, "device": device,
                "threads": threads, "batch_sizes": sizes}  # fmt: skip
    return {"machine": info, "settings": settings, "models": summaries, "results": results}


def sweep_settings() -> list[tuple[str, dict[str, Any]]]:
    """The session settings compared by :func:`sweep`: the defaults, then one knob changed at a time."""
    cores = cpu_facts()["physical_cores"] or 1
    threads = sorted({1, cores, os.cpu_count() or cores})
    return [
        ("defaults", {}),
        *((f"graph_optimization_level={level}", {"graph_optimization_level": level})
          for level in ("disable", "basic", "extended")),
        *((f"intra_op_threads={n}", {"intra_op_threads": n}) for n in threads),
        ("execution_mode=parallel", {"execution_mode": "parallel"}),
        ("memory_arena=False", {"memory_arena": False}),
        ("memory_pattern=False", {"memory_pattern": False}),
    ]  # fmt: skip


def sweep(
    name: str = "cnn",
    batch_sizes: Iterable[int] = (1, 256),
    device: str = "cpu",
    warmup: int = 3,
    repeats: int = 1000,
    max_seconds: float = 1.5,
    progress: Progress | None = None,
    *,
    rounds: int = 3,
    weights: str | Path | None = None,
    data_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Time ONNX Runtime fp32 and int8 under each of :func:`sweep_settings` (defaults: :class:`SessionSettings`);
    one row per (precision, setting, batch size), with ``vs_defaults`` = defaults' p50 / this p50. The settings
    take turns in ``rounds`` rounds (each a share of ``repeats`` and ``max_seconds``) so that a change of machine
    load affects them alike."""
    entry = get_entry(name)
    files = onnx_files(entry, weights, data_dir)
    sizes = sorted(set(batch_sizes))
    cells = [(precision, label, size,
              _onnx_call(Classifier(files[precision], name=entry.full_name, device=device, **knobs)))
             for precision in ("fp32", "int8") for label, knobs in sweep_settings() for size in sizes]  # fmt: skip
    x_all = _inputs(entry, max(sizes))
    report = progress or (lambda done, total, label: None)
    times: dict[tuple[str, str, int], list[float]] = {cell[:3]: [] for cell in cells}
    share = -(-repeats // rounds)
    for round_number in range(rounds):
        for i, (precision, label, size, call) in enumerate(cells):
            report(round_number * len(cells) + i, rounds * len(cells),
                   f"{entry.name} {precision} {label} batch {size} (round {round_number + 1}/{rounds})")  # fmt: skip
            times[precision, label, size] += _time(call, x_all[:size], warmup, share, max_seconds / rounds)
    report(rounds * len(cells), rounds * len(cells), "done")
    rows = [{"model": entry.name, "precision": key[0], "setting": key[1], **_stats(found, key[2])}
            for key, found in times.items()]  # fmt: skip
    defaults = {(r["precision"], r["batch_size"]): r["p50_ms"] for r in rows if r["setting"] == "defaults"}
    for row in rows:
        row["vs_defaults"] = defaults[row["precision"], row["batch_size"]] / row["p50_ms"]
    return rows
