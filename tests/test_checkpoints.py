"""Released checkpoints: records are well formed, shipped files verify, and accuracy holds on the official test file."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import fashionzoo
from fashionzoo.data.datasets import DATASETS
from fashionzoo.publish import hub
from fashionzoo.registry.lookup import all_entries, get_entry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models"
RELEASED = [entry.full_name for entry in all_entries() if entry.weights is not None]
EVALUATED = [pytest.param(name, marks=pytest.mark.xdist_group(f"test-file-of-{name}")) for name in RELEASED]
""":data:`RELEASED`, each model's two tests on its whole test file in one pytest-xdist worker: evaluated once
(:func:`keras_test_probs`)."""


def test_default_model_ships_inside_the_package() -> None:
    entry = get_entry(fashionzoo.DEFAULT_MODEL)
    assert entry.weights is not None and {"weights", "onnx"} <= set(entry.weights.shipped)


@pytest.mark.parametrize("name", RELEASED)
def test_weights_record_is_pinned_and_verifiable(name: str) -> None:
    """Every recorded file verifies where the repository keeps it: the shipped ones in the package, the model card
    and the run record in ``docs/models/NAME/``. (A revision that is not a commit hash, a malformed SHA-256 and a
    file name that is not plain cannot be in a record at all: ``WeightsRecord`` and ``FileRecord`` refuse them,
    tested in test_hub.py and reliability/test_records.py.)"""
    record = get_entry(name).weights
    assert record.repo_id == f"fashionzoo/{name}"
    assert DATASETS[get_entry(name).tag].is_official(record.data_files)  # the official files of its data set
    assert record.metrics["n"] == 10_000  # measured on its whole official test file
    assert {"weights", "onnx", "card", "metrics"} <= set(record.files) and set(record.shipped) <= set(record.files)
    for key, file in record.files.items():
        kept = hub.shipped_dir() if key in record.shipped else DOCS / name
        assert hub.verify(kept / file.filename, file), (key, kept / file.filename)


@functools.cache
def keras_test_probs(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The shipped Keras model's probabilities on the whole official test file of its data set, and the labels, as
    :func:`~fashionzoo.models.evaluation.evaluate` computes them (``load``, then ``predict_probs``): once per model
    for both its accuracy and its ONNX file's parity below."""
    from fashionzoo.data.loading import load_split
    from fashionzoo.models.loading import predict_probs

    entry = get_entry(name)
    test = load_split("test", entry.tag, data_dir)
    return predict_probs(fashionzoo.load(entry), test.images, input_spec=entry.input_spec), test.labels


@pytest.fixture(scope="module", autouse=True)
def _forget_test_probs() -> Iterator[None]:
    yield
    keras_test_probs.cache_clear()


@pytest.mark.slow  # evaluates every released checkpoint on its test file
@pytest.mark.parametrize("name", EVALUATED)
def test_shipped_checkpoint_keeps_its_recorded_accuracy(name: str, data_of: Callable[[str], Path]) -> None:
    from fashionzoo.models.evaluation import metrics_from_probs

    entry = get_entry(name)
    probs, labels = keras_test_probs(name, data_of(entry.tag))
    result = metrics_from_probs(probs, labels, entry.classes)
    assert result["n"] == entry.weights.metrics["n"]
    n = result["n"]
    right, recorded = round(result["accuracy"] * n), round(entry.weights.metrics["accuracy"] * n)
    assert abs(right - recorded) <= 5  # images, both ways: another CPU's kernels may flip a near tie or two; an
    # overstated record fails


@pytest.mark.parametrize("name", [name for name in RELEASED if get_entry(name).target_accuracy is not None])
def test_shipped_checkpoint_reaches_its_target(name: str) -> None:
    """The recorded accuracy (checked against a fresh evaluation above) reaches the model's target."""
    entry = get_entry(name)
    assert entry.weights.metrics["accuracy"] >= entry.target_accuracy, f"{name} is below its target"


@pytest.mark.slow  # evaluates every released checkpoint on its test file
@pytest.mark.parametrize("name", EVALUATED)
def test_shipped_onnx_matches_keras(name: str, data_of: Callable[[str], Path]) -> None:
    from fashionzoo.data.loading import load_split
    from fashionzoo.runtime.classifier import Classifier

    entry = get_entry(name)
    images = load_split("test", entry.tag, data_of(entry.tag)).images
    keras_probs, _ = keras_test_probs(name, data_of(entry.tag))
    onnx_probs = Classifier.from_pretrained(name).predict_probs(images)
    assert np.abs(keras_probs - onnx_probs).max() <= 1e-5
    assert (keras_probs.argmax(1) == onnx_probs.argmax(1)).all()


@pytest.mark.slow  # TensorFlow in a fresh process, cnn on the whole test file
def test_load_default_offline_in_a_fresh_process(tmp_path: Path, shared_data: Path) -> None:
    code = (
        "import fashionzoo, numpy as np\n"
        "from fashionzoo.data import load_split\n"
        "from fashionzoo.models.loading import predict_probs\n"
        "m = fashionzoo.load('cnn')\n"
        "t = load_split('test')\n"
        "print((predict_probs(m, t.images).argmax(1) == t.labels).mean())\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "FASHIONZOO_HOME": str(tmp_path),
        "FASHIONZOO_DATA_DIR": str(shared_data),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(result.stdout.strip().splitlines()[-1])
    assert abs(accuracy - get_entry("cnn").weights.metrics["accuracy"]) < 1e-9
    assert not any((tmp_path / "hub").glob("**/*.h5"))  # served from the package, not downloaded
