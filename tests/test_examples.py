"""The shipped default model on real-looking inputs: example images, photo-style accuracy, embedding examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import IMAGES, expected_label, released_onnx

from fashionzoo.cli import main
from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.registry.catalogue import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(IMAGES.glob("*.png"))


def test_predict_example_photo_offline_in_a_fresh_process(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASHIONZOO_HOME": str(tmp_path)}
    image = IMAGES / "ankle-boot-photo.png"
    result = subprocess.run(
        [sys.executable, "-m", "fashionzoo", "predict", str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Ankle boot" in result.stdout.splitlines()[0]


def test_predict_json_on_every_example() -> None:
    result = CliRunner().invoke(main, ["predict", str(IMAGES), "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == [p.name for p in EXAMPLES]
    correct = sum(r["label"] == expected_label(Path(r["file"])) for r in rows)
    assert correct >= len(rows) - 2, rows  # 20 images; a model at ~92% may miss one or two
    for row in rows:
        assert len(row["top_k"]) == 3 and row["top_k"][0]["label"] == row["label"]
        assert FASHION_CLASSES[row["class_id"]] == row["label"] and 0 < row["probability"] <= 1


@pytest.mark.slow  # 2,000 test images through every photo format
def test_photo_style_accuracy_stays_within_two_points(tmp_path: Path, shared_data: Path) -> None:
    """The issue's bar (within 2 points of the raw images) on every fifth test image (2,000, spread over the file:
    with the 29-epoch flagship the first 1,000 alone dropped 2.1 points for JPEG where the whole file dropped 1.16;
    the shipped one drops 1.39 on the whole file); the full-file figures are in docs/photos.md
    (benchmarks/photo_accuracy.py). The bar is the preprocessing's: without the photo calibration, which is chosen
    for real photos and costs on these Fashion-MNIST images in disguise (docs/photos.md)."""
    from fashionzoo.data.loading import load_split
    from fashionzoo.photos.synthetic import FORMATS, photo_accuracy
    from fashionzoo.runtime.classifier import Classifier

    test = load_split("test", data_dir=shared_data)
    images, labels = test.images[::5], test.labels[::5]
    result = photo_accuracy(Classifier.from_pretrained(DEFAULT_MODEL, calibrated=False), images, labels, tmp_path)
    for fmt in FORMATS:
        assert result[fmt] >= result["raw"] - 0.02, result


def test_python_embedding_example_reads_labels_from_metadata() -> None:
    images = [str(IMAGES / "trouser-28x28.png"), str(IMAGES / "bag-28x28.png")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embed_onnx.py"), str(released_onnx()), *images],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["Trouser", "Bag"]


@pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "examples/node/node_modules").is_dir(),
    reason="Node.js example not installed (cd examples/node && npm ci --ignore-scripts)",
)
def test_node_embedding_example() -> None:
    images = [str(IMAGES / "sneaker-28x28.png"), str(IMAGES / "dress-28x28.png")]
    result = subprocess.run(
        ["node", str(ROOT / "examples/node/classify.mjs"), str(released_onnx()), *images],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["Sneaker", "Dress"]
