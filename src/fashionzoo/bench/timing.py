"""Timing for benchmarks on a shared machine: interleaved rounds, latency statistics, and the CPU share other
processes took meanwhile. Standard library and numpy only.

A load change on a shared machine (another job starting, a training epoch ending) moves latencies by 2x within
seconds. Timing one backend after another lets such a change fall on one of them only; :func:`interleave` makes
every backend take a short turn in every round instead, so that each sees the same mix of quiet and busy moments.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_CALLS = 3
"""Fewest timed calls of a backend in a timing, whatever the time budget."""


@dataclass
class Timings:
    """Seconds per call of each backend, and which backends ran (in order) in each round."""

    seconds: dict[str, list[float]]
    rounds: list[tuple[str, ...]] = field(default_factory=list)


def interleave(
    calls: Mapping[str, Callable[[], Any]],
    max_seconds: float,
    *,
    turn_seconds: float = 0.02,
    min_rounds: int = MIN_CALLS,
    max_calls: int | None = None,
    warmup: int = 3,
) -> Timings:
    """Time ``calls`` in rounds until ``max_seconds`` have passed and every call ran at least ``min_rounds`` times
    (or every call reached ``max_calls``). In each round every call takes one turn of about ``turn_seconds`` (at
    least one call, and with ``max_calls`` at most its share of ``min_rounds`` rounds, so that a fast call's
    samples are spread over the rounds rather than taken in its first turn), starting one place later than in the
    round before so that no backend always follows the same one. Each call is warmed up ``warmup`` times first;
    garbage collection is paused while timing."""
    names = list(calls)
    per_turn = None if max_calls is None else -(-max_calls // max(min_rounds, 1))
    timings = Timings({name: [] for name in names})
    for name in names:
        for _ in range(warmup):
            calls[name]()
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + max_seconds
        while True:
            start = len(timings.rounds) % len(names)
            order = tuple(names[start:] + names[:start])
            for name in order:
                _turn(calls[name], timings.seconds[name], turn_seconds, max_calls, per_turn)
            timings.rounds.append(order)
            counts = [len(found) for found in timings.seconds.values()]
            if max_calls is not None and min(counts) >= max_calls:
                break
            if len(timings.rounds) >= min_rounds and time.perf_counter() >= deadline:
                break
    finally:
        if gc_enabled:
            gc.enable()
    return timings


def _turn(
    call: Callable[[], Any], found: list[float], turn_seconds: float, max_calls: int | None, per_turn: int | None
) -> None:
    """One turn: call until ``turn_seconds`` have passed (at least once, at most ``per_turn`` times and up to
    ``max_calls`` in all)."""
    end = time.perf_counter() + turn_seconds
    limit = None if max_calls is None else min(max_calls, len(found) + (per_turn or max_calls))
    while limit is None or len(found) < limit:
        start = time.perf_counter()
        call()
        stop = time.perf_counter()
        found.append(stop - start)
        if stop >= end:
            return


def latency_stats(seconds: list[float], batch_size: int) -> dict[str, Any]:
    """p50 and p99 latency (ms) of one batch, images/s = ``batch_size`` / p50, and the number of timed calls."""
    p50 = float(np.percentile(seconds, 50))
    return {
        "batch_size": batch_size,
        "p50_ms": p50 * 1e3,
        "p99_ms": float(np.percentile(seconds, 99)) * 1e3,
        "images_per_s": batch_size / p50,
        "runs": len(seconds),
    }


CpuClock = tuple[float, float | None, float]
"""(wall clock, CPU seconds used by every process so far or None, CPU seconds of this process)."""


def cpu_clock() -> CpuClock:
    """Where the clocks stand now; pass it to :func:`others_share` later."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        idle = int(fields[3]) + int(fields[4])  # idle + iowait
        busy: float | None = (sum(int(v) for v in fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = None
    return time.perf_counter(), busy, time.process_time()


def others_share(start: CpuClock) -> float | None:
    """The fraction of all CPUs that other processes kept busy since ``start`` (None where /proc/stat is missing)."""
    end = cpu_clock()
    if start[1] is None or end[1] is None:
        return None
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / ((end[0] - start[0]) * (os.cpu_count() or 1)))
