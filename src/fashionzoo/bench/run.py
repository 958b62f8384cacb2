"""Side-by-side inference benchmark of one or more trained models: Keras, ONNX Runtime (a plain ``session.run``
and the zoo's own ``Classifier.run``, fp32 and int8), LiteRT and OpenVINO (:mod:`fashionzoo.bench.backends`), per batch
size, in interleaved rounds (:mod:`fashionzoo.bench.timing`), with FLOPs and a measured fp32 peak
(:mod:`fashionzoo.bench.flops`) and each cell's winner (:mod:`fashionzoo.bench.report`). Imports TensorFlow: import
lazily.

Every backend gets the same float32 NHWC batch (seeded random pixels: the models' cost does not depend on the
values). Within a (model, batch size) cell the backends take turns of about 20 ms until the cell's time budget has
passed (at least three rounds), so that a change of machine load hits all of them alike; p50 and p99 are per-batch
latencies and images/s is ``batch_size / p50``.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf

from fashionzoo.bench import report as benchreport
from fashionzoo.bench.backends import backends
from fashionzoo.bench.cache import cached_conversion
from fashionzoo.bench.flops import flops_per_image, measured_peak
from fashionzoo.bench.litert import tflite_file
from fashionzoo.bench.report import LABELS
from fashionzoo.bench.timing import cpu_clock, interleave, latency_stats, others_share
from fashionzoo.core.devices import keras_device
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.machine import machine_info, peak_fp32, this_cpu
from fashionzoo.core.version import __version__
from fashionzoo.models.loading import load as load_trained
from fashionzoo.photos.convert import to_model_input
from fashionzoo.publish import hub
from fashionzoo.publish.export import describe, export_onnx, quantize_int8
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import get_entry, resolve
from fashionzoo.runtime import metadata
from fashionzoo.runtime.classifier import Classifier

BACKENDS = tuple(LABELS)
DEFAULT_BATCH_SIZES = (1, 64, 1024)
Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: called before each timed cell (and once more with ``done == total``)."""


def onnx_files(
    model: str | ModelEntry, weights: str | Path | None = None, data_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """The fp32 and int8 ONNX files of a trained model: the released ones (unless ``weights`` are given), else
    exported and quantised once into ``$FASHIONZOO_HOME/bench`` and verified before each use
    (:mod:`fashionzoo.bench.cache`)."""
    entry = resolve(model)
    released = entry.weights.files if entry.weights and weights is None else {}
    fp32 = (
        hub.released_file(entry, "onnx")
        if "onnx" in released
        else cached_conversion(
            entry, weights, ".onnx", lambda target: export_onnx(entry, target, weights=weights, data_dir=data_dir)
        )
    )
    int8 = (
        hub.released_file(entry, "onnx_int8")
        if "onnx_int8" in released
        else cached_conversion(
            entry, weights, ".int8.onnx", lambda target: quantize_int8(entry, fp32, target, data_dir=data_dir)
        )
    )
    return {"fp32": fp32, "int8": int8}


def _set_tf_threads(threads: int | None) -> None:
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started: its thread pools are fixed
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise FashionZooError(
                f"TensorFlow already runs with other thread settings; benchmark with {threads} "
                "threads in a fresh process"
            ) from None


def _inputs(entry: ModelEntry, n: int) -> np.ndarray:
    p = entry.input_spec
    return to_model_input(np.random.default_rng(0).integers(0, 256, (n, p.height, p.width), dtype=np.uint8))


def _timed(
    calls: Mapping[str, Callable[[np.ndarray], Any]],
    x: np.ndarray,
    max_seconds: float,
    repeats: int | None,
    warmup: int,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Interleaved timing of ``calls`` on ``x``: latency statistics per call name, and the number of rounds."""
    timings = interleave(
        {name: functools.partial(call, x) for name, call in calls.items()},
        max_seconds,
        max_calls=repeats,
        warmup=warmup,
    )
    return {name: latency_stats(found, len(x)) for name, found in timings.seconds.items()}, len(timings.rounds)


def onnx_latency(
    onnx_path: str | os.PathLike, model: str | ModelEntry, batch_size: int = 1, max_seconds: float = 3.0
) -> dict[str, Any]:
    """Latency of one ONNX file on the CPU through the zoo's own path (:meth:`Classifier.run`, default session
    settings): p50/p99 ms, images/s, and the share of the CPU other processes used meanwhile (a figure taken on a
    busy machine says so)."""
    entry = resolve(model)
    clf = Classifier(onnx_path, name=entry.full_name)
    start = cpu_clock()
    stats, _ = _timed({"onnx": clf.run}, _inputs(entry, batch_size), max_seconds, 100_000, 20)
    return {**stats["onnx"], "others_cpu_share": others_share(start)}


def _tflite(
    entry: ModelEntry, model: keras.Model, weights: str | Path | None, data_dir: str | os.PathLike | None
) -> Path | FashionZooError:
    """The checked LiteRT file, or why there is none (LiteRT missing, conversion or parity check failed)."""
    try:
        return tflite_file(entry, weights, data_dir, keras_model=model)
    except FashionZooError as error:
        return error


def _model_summary(
    entry: ModelEntry, model: keras.Model, files: dict[str, Path], tflite: Path | FashionZooError
) -> dict[str, Any]:
    meta = describe(files["int8"])
    fp32_bytes, int8_bytes = files["fp32"].stat().st_size, files["int8"].stat().st_size
    return {
        "params": model.count_params(),
        "flops_per_image": flops_per_image(model) * entry.views_per_image,
        "fp32": {
            "file": str(files["fp32"]),
            "bytes": fp32_bytes,
            "test_accuracy": float(meta.get(metadata.FP32_TEST_ACCURACY, "nan")),
        },
        "int8": {
            "file": str(files["int8"]),
            "bytes": int8_bytes,
            "size_ratio": fp32_bytes / int8_bytes,
            "test_accuracy": float(meta.get(metadata.TEST_ACCURACY, "nan")),
            "top1_agreement": float(meta.get(metadata.FP32_TOP1_AGREEMENT, "nan")),
            "quantization": meta.get(metadata.QUANTIZATION, ""),
        },
        "tflite": {"missing": str(tflite)}
        if isinstance(tflite, FashionZooError)
        else {"file": str(tflite), "bytes": tflite.stat().st_size},
        "input": list(entry.input_shape),
    }


def environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Where and with what the figures were measured (:func:`fashionzoo.core.machine.machine_info` and more): CPU,
    clock, flags, nominal peak fp32 FLOP/s, library versions, threads, load.

    :func:`run` adds the ONNX Runtime providers used, the measured peak, and ``others_cpu_share``: the fraction of
    all CPUs that other processes kept busy during the run (0 on a quiet machine)."""
    cpu = this_cpu()
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
        **{name: _version(name) for name in ("ai_edge_litert", "openvino")},
        "fashionzoo": __version__,
        "threads": threads,
        "tensorflow_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TF decides
        "keras_device": keras_device(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _version(distribution: str) -> str | None:
    """An optional peer's installed version, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def run(
    names: Iterable[str],
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    repeats: int | None = None,
    max_seconds: float = 3.0,
    progress: Progress | None = None,
    *,
    weights: dict[str, str | Path] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Time every backend of :data:`BACKENDS` for each model and batch size, interleaved within each cell for
    ``max_seconds`` (at least three rounds; at most ``repeats`` calls per backend if given). Returns ``{"machine",
    "settings", "models", "results", "cells"}``: ``results`` has one row per (model, backend, batch size), with p50
    and p99 latency (ms), images/s, the speedup over the direct Keras call, or ``missing`` (why the backend could
    not run); ``cells`` the winner of each (model, batch size) (:func:`benchreport.cells`). ``weights`` maps model
    names to local ``.weights.h5`` files (default: released weights)."""
    entries = [get_entry(name) for name in names]
    sizes = sorted(set(batch_sizes))
    if not entries or not sizes or min(sizes) < 1:
        raise FashionZooError("name at least one model and batch sizes of at least 1")
    weights = {get_entry(name).name: path for name, path in (weights or {}).items()}
    for entry in entries:
        hub.released_file(entry, "weights", weights.get(entry.name))  # fail before any timing if weights are missing
    _set_tf_threads(threads)
    peak_threads = threads or this_cpu()["physical_cores"] or 1
    start = cpu_clock()
    report = progress or (lambda done, total, label: None)
    total = len(entries) * len(sizes)
    summaries: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    peaks: list[dict[str, Any]] = []
    providers: set[str] = set()
    for number, entry in enumerate(entries):
        report(number * len(sizes), total, f"{entry.name}: loading, exporting, quantising, converting")
        model = load_trained(entry, weights.get(entry.name))
        files = onnx_files(entry, weights.get(entry.name), data_dir)
        tflite = _tflite(entry, model, weights.get(entry.name), data_dir)
        found = backends(entry, model, files, tflite, device, threads)
        providers.update(
            Classifier(
                files["fp32"], name=entry.full_name, device=device, intra_op_threads=threads
            ).session.get_providers()[:1]
        )
        peaks.append(measured_peak(peak_threads))  # once per model: the best of them is the least disturbed
        summaries[entry.name] = _model_summary(entry, model, files, tflite)
        x_all = _inputs(entry, max(sizes))
        rows = []
        for done, size in enumerate(sizes, start=number * len(sizes)):
            report(done, total, f"{entry.name} batch {size}")
            calls = {name: backend.open(size) for name, backend in found.items() if backend.open}
            stats, rounds = _timed(calls, x_all[:size], max_seconds, repeats, warmup)
            for name, backend in found.items():
                base = {"model": entry.name, "backend": name, "batch_size": size}
                rows.append(
                    {**base, "missing": backend.missing}
                    if backend.missing
                    else {
                        **base,
                        **stats[name],
                        "rounds": rounds,
                        "speedup_vs_call": stats["keras_call"]["p50_ms"] / stats[name]["p50_ms"],
                    }
                )
        results.extend(rows)
    report(total, total, "done")
    peak = max(p["gflops"] for p in peaks)
    for name, facts in summaries.items():
        rows = [row for row in results if row["model"] == name]
        facts["best_fp32"] = benchreport.best(rows, facts["flops_per_image"], peak, set(BACKENDS) - {"zoo_int8"})
        facts["best"] = benchreport.best(rows, facts["flops_per_image"], peak, BACKENDS)
    info = environment(device, threads)
    info["onnxruntime_providers"] = sorted(providers)
    info["measured_peak"] = {**max(peaks, key=lambda p: p["gflops"]), "measurements": len(peaks)}
    info["others_cpu_share"] = others_share(start)
    settings = {
        "warmup": warmup,
        "repeats": repeats,
        "max_seconds": max_seconds,
        "device": device,
        "threads": threads,
        "batch_sizes": sizes,
    }
    return {
        "machine": info,
        "settings": settings,
        "models": summaries,
        "results": results,
        "cells": benchreport.cells(results),
    }


def session_settings_variants() -> list[tuple[str, dict[str, Any]]]:
    """The session settings compared by :func:`compare_session_settings`: the defaults, then one knob changed at a
    time."""
    cores = this_cpu()["physical_cores"] or 1
    threads = sorted({1, cores, os.cpu_count() or cores})
    return [
        ("defaults", {}),
        *(
            (f"graph_optimization_level={level}", {"graph_optimization_level": level})
            for level in ("disable", "basic", "extended")
        ),
        *((f"intra_op_threads={n}", {"intra_op_threads": n}) for n in threads),
        ("execution_mode=parallel", {"execution_mode": "parallel"}),
        ("memory_arena=False", {"memory_arena": False}),
        ("memory_pattern=False", {"memory_pattern": False}),
    ]


def compare_session_settings(
    name: str = "cnn",
    batch_sizes: Iterable[int] = (1, 256),
    device: str = "cpu",
    warmup: int = 3,
    repeats: int | None = None,
    max_seconds: float = 3.0,
    progress: Progress | None = None,
    *,
    weights: str | Path | None = None,
    data_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Time the zoo's path (:meth:`Classifier.run`) on the fp32 and int8 files under each of
    :func:`session_settings_variants` (defaults: :class:`SessionSettings`); one row per (precision, setting, batch
    size), with ``vs_defaults`` = defaults' p50 / this p50. All settings of a batch size are timed interleaved for
    ``max_seconds``, so that a change of machine load affects them alike."""
    entry = get_entry(name)
    files = onnx_files(entry, weights, data_dir)
    sizes = sorted(set(batch_sizes))
    calls = {
        f"{precision}|{label}": Classifier(files[precision], name=entry.full_name, device=device, **knobs).run
        for precision in ("fp32", "int8")
        for label, knobs in session_settings_variants()
    }
    x_all = _inputs(entry, max(sizes))
    report = progress or (lambda done, total, label: None)
    rows = []
    for done, size in enumerate(sizes):
        report(done, len(sizes), f"{entry.name} session settings, batch {size}")
        stats, _ = _timed(calls, x_all[:size], max_seconds, repeats, warmup)
        rows += [
            {"model": entry.name, "precision": key.split("|")[0], "setting": key.split("|", 1)[1], **found}
            for key, found in stats.items()
        ]
    report(len(sizes), len(sizes), "done")
    defaults = {(r["precision"], r["batch_size"]): r["p50_ms"] for r in rows if r["setting"] == "defaults"}
    for row in rows:
        row["vs_defaults"] = defaults[row["precision"], row["batch_size"]] / row["p50_ms"]
    return rows
