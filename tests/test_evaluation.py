"""Metrics from probabilities, and the reports written from a run record (card, curves, confusion matrix)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_run_record

from fashionzoo.models.evaluation import confusion_matrix, metrics_from_probs
from fashionzoo.publish.reports import standard_error, write_model_card, write_run_figures
from fashionzoo.registry.lookup import get_entry
from fashionzoo.training import runs

CLASSES = ("a", "b", "c")


def test_metrics_from_probs_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 2, 0])
    m = metrics_from_probs(probs, labels, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 5) and m["n"] == 5
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.6, 0.5])))
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["most_confused"] == [{"true": "b", "predicted": "a", "count": 1}]


def test_metrics_with_a_class_absent_and_a_zero_probability() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    m = metrics_from_probs(probs, np.array([1, 1]), CLASSES)
    assert m["per_class_accuracy"] == {"a": None, "b": 0.5, "c": None}
    assert math.isfinite(m["loss"]) and m["loss"] == pytest.approx(-np.log(1e-12) / 2)  # clipped, never inf


def test_confusion_matrix_rows_are_true_classes() -> None:
    assert confusion_matrix(np.array([0, 0, 2]), np.array([1, 0, 2]), 3).tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_standard_error() -> None:
    assert standard_error(0.9, 10_000) == pytest.approx(0.003)
    assert math.isnan(standard_error(0.9, 0))


def test_model_card_is_a_function_of_the_record(tmp_path: Path) -> None:
    entry = get_entry("lenet5")
    record = fake_run_record("lenet5", "lenet5.weights.h5", accuracy=0.8949).replace(
        test={"accuracy": 0.8949, "loss": 0.2987, "n": 10_000, "confusion_matrix": np.eye(10, dtype=int).tolist()},
        val={"accuracy": 0.9, "loss": 0.3, "n": 6_000},
        machine={"cpu": "a CPU", "device": "cpu"},
        versions={"fashionzoo": "1", "keras": "3", "tensorflow": "2"},
        epochs=8,
        wall_time_s=49.0,
        onnx_latency={"p50_ms": 0.04, "images_per_s": 25_000.0},
    )
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    write_model_card(record, entry, first)
    write_model_card(record, entry, second)
    card = first.read_text()
    assert first.read_bytes() == second.read_bytes()  # releasing again rewrites the same bytes
    assert "| test (the official test file) | 10000 | 0.8949 | 0.0031 | 0.2987 |" in card
    assert "NOT the official data files" in card  # the fake record names no data files
    assert "0.040 ms" in card and "model-index" in card and "T-shirt/top" in card

    run = tmp_path / "run"
    run.mkdir()
    (run / runs.HISTORY).write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.8,0.5,0.8,0.5\n1,0.9,0.3,0.9,0.3\n")
    write_run_figures(run, entry, record)
    for name in (runs.CURVES, runs.CONFUSION, runs.CARD):
        assert (run / name).stat().st_size > 0
    assert (run / runs.CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
