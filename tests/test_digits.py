"""MNIST's own normalisation for photos of handwritten digits (the ``mnist`` preprocessing pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionzoo.photos.convert import preprocess_file
from fashionzoo.photos.digits import BOX, CENTRE, mnist_style


def digit_photo(digit: np.ndarray, scale: int = 12, margin: int = 90, seed: int = 0) -> Image.Image:
    """A digit as a phone photo of paper: dark ink on light, slightly uneven paper, off-centre, enlarged."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), np.float32)
    height, width = ink.shape[0] + 2 * margin, ink.shape[1] + 3 * margin
    paper = 225 + rng.normal(0, 4, (height, width)) + np.linspace(0, 15, width)[None, :]  # grain and a gradient
    paper[margin : margin + ink.shape[0], 2 * margin : 2 * margin + ink.shape[1]] -= ink * (190 / 255)
    return Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    mass = image.astype(np.float64)
    rows, cols = np.indices(image.shape)
    return float((rows * mass).sum() / mass.sum()), float((cols * mass).sum() / mass.sum())


def test_an_mnist_image_passes_through_unchanged(shared_mnist: Path) -> None:
    from fashionzoo.data.loading import load_split

    digits = load_split("test", "mnist", shared_mnist).images[:20]
    for digit in digits:
        assert np.array_equal(mnist_style(Image.fromarray(digit)), digit)


def test_a_digit_photo_is_fitted_into_20x20_and_centred_by_mass(shared_mnist: Path, tmp_path: Path) -> None:
    from fashionzoo.data.loading import load_split

    digits = load_split("test", "mnist", shared_mnist).images[:10]
    for i, digit in enumerate(digits):
        path = tmp_path / f"digit-{i}.jpg"
        digit_photo(digit, seed=i).save(path, quality=90)
        seen = preprocess_file(path, "mnist")
        assert seen.shape == (28, 28) and seen.dtype == np.uint8 and seen.max() == 255
        rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (BOX, BOX + 1)  # LANCZOS may ring one pixel
        assert np.allclose(centre_of_mass(seen), (CENTRE, CENTRE), atol=0.5)
        assert seen[0].max() == seen[-1].max() == seen[:, 0].max() == seen[:, -1].max() == 0  # paper is black
        correlation = np.corrcoef(seen.ravel().astype(float), digit.ravel().astype(float))[0, 1]
        assert correlation > 0.85, f"digit {i}: what the model sees does not look like the MNIST image"


def test_blank_paper_gives_a_black_frame() -> None:
    assert not mnist_style(Image.new("L", (200, 300), 230)).any()


def test_unknown_pipeline_is_a_one_line_error(tmp_path: Path) -> None:
    from fashionzoo import FashionZooError

    path = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(path)
    with pytest.raises(FashionZooError, match="unknown preprocessing pipeline 'cifar'"):
        preprocess_file(path, "cifar")


def test_predict_with_mnist_weights_uses_the_digit_pipeline(shared_mnist: Path, tmp_path: Path) -> None:
    """The tagged weights carry their classes and pipeline in the ONNX file: ``predict --model NAME.mnist`` of digit
    photos needs nothing else, and gets them right."""
    import json

    from click.testing import CliRunner

    from fashionzoo.cli import main
    from fashionzoo.data.loading import load_split
    from fashionzoo.runtime.classifier import Classifier

    clf = Classifier.from_pretrained("mlp-small.mnist")
    assert clf.classes == tuple("0123456789") and clf.input_spec.pipeline == "mnist"
    test = load_split("test", "mnist", shared_mnist)
    for i in range(20):
        digit_photo(test.images[i], seed=i).save(tmp_path / f"{i:02d}.jpg", quality=90)
    result = CliRunner().invoke(main, ["predict", "--model", "mlp-small.mnist", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    right = sum(label == str(truth) for label, truth in zip(labels, test.labels[:20], strict=True))
    assert right >= 18, f"{right}/20 digit photos right"
    clothing = CliRunner().invoke(main, ["predict", "--model", "mlp-small", str(tmp_path / "00.jpg")])
    assert clothing.exit_code == 0 and not clothing.stdout.split(": ")[1][0].isdigit()  # the clothing weights
