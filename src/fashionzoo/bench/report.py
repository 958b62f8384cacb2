"""What the benchmark's rows add up to: the winner of each (model, batch size) cell, the zoo's path against the
fastest peer and against itself before tuning, and each model's best throughput as a fraction of the measured
peak. Pure functions of the result rows (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LABELS = {
    "keras_predict": "Keras predict",
    "keras_call": "Keras call",
    "ort_session": "ORT session.run (before)",
    "zoo": "zoo Classifier.run (after)",
    "zoo_int8": "zoo int8",
    "litert": "LiteRT",
    "openvino": "OpenVINO",
}
"""Every backend's name and label, in the order of the tables."""
PEERS = ("litert", "openvino")
"""The runtimes the zoo's own path (``zoo``) has to keep up with."""
WITHIN = 0.05
"""The zoo's path counts as keeping up with a peer when its p50 is at most this fraction slower."""


def measured(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that hold timings (not a missing backend's reason)."""
    return [row for row in rows if "missing" not in row]


def cells(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, batch size), in the rows' order: the winner (lowest p50), the fastest peer, ``zoo_vs_peer`` =
    that peer's p50 / the zoo path's p50 (1.2: the zoo is 1.2x faster), whether the zoo keeps up (within
    :data:`WITHIN`, None without a peer), and ``after_vs_before`` = plain ``session.run`` p50 / the zoo path's."""
    found: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in measured(results):
        found.setdefault((row["model"], row["batch_size"]), {})[row["backend"]] = row
    summary = []
    for (model, size), rows in found.items():
        zoo, before = rows.get("zoo"), rows.get("ort_session")
        peers = [rows[name] for name in PEERS if name in rows]
        peer = min(peers, key=lambda r: r["p50_ms"]) if peers else None
        ratio = peer["p50_ms"] / zoo["p50_ms"] if peer and zoo else None
        summary.append(
            {
                "model": model,
                "batch_size": size,
                "winner": min(rows.values(), key=lambda r: r["p50_ms"])["backend"],
                "fastest_peer": peer["backend"] if peer else None,
                "zoo_vs_peer": ratio,
                "zoo_keeps_up": ratio >= 1 / (1 + WITHIN) if ratio is not None else None,  # at most 5% slower
                "after_vs_before": before["p50_ms"] / zoo["p50_ms"] if before and zoo else None,
            }
        )
    return summary


def best(
    rows: list[dict[str, Any]], flops: int, peak_gflops: float | None, backends: Iterable[str]
) -> dict[str, Any] | None:
    """The fastest (backend, batch size) among ``backends`` (None if none was measured): images/s, the model
    GFLOP/s that makes, and its fraction of ``peak_gflops``."""
    wanted = set(backends)
    candidates = [row for row in measured(rows) if row["backend"] in wanted]
    if not candidates:
        return None
    top = max(candidates, key=lambda r: r["images_per_s"])
    gflops = top["images_per_s"] * flops / 1e9
    return {
        "backend": top["backend"],
        "batch_size": top["batch_size"],
        "images_per_s": top["images_per_s"],
        "gflops": gflops,
        "fraction_of_peak": gflops / peak_gflops if peak_gflops else None,
    }
