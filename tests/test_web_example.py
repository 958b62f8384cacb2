"""The web example (``examples/web``) in a real headless Chromium: the page runs a zoo ONNX file with onnxruntime-web
and answers what Python's ``Classifier`` answers on the same file and the same 28x28 pixels.

The page is served by the example's own server (``examples/web/serve.py``, in a thread on 127.0.0.1, cross-origin
isolated), which serves the zoo's released files as the other embedding examples find them (``released_onnx``).
Skips with the reason when there is no browser (``tests/browser.py``) or no ``examples/web/node_modules``
(``npm ci``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import WEB_EXAMPLE, chromium_page, web_example_served
from helpers import IMAGES, expected_label, released_onnx

from fashionzoo.data.loading import load_split
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.runtime.classifier import Classifier

TEST_IMAGES = 500
"""The first official test images the page classifies."""
TOLERANCE = 1e-4
"""Largest absolute difference of probabilities allowed between the page and Python."""
DIGITS = "cnn-small.mnist"

pytestmark = pytest.mark.skipif(
    not (WEB_EXAMPLE / "node_modules" / "onnxruntime-web").is_dir()
    or not (WEB_EXAMPLE / "node_modules" / "protobufjs").is_dir(),
    reason="the web example is not installed (cd examples/web && npm ci --ignore-scripts)",
)


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """The page in Chromium, served on 127.0.0.1 and loaded with the zoo's default model."""
    with web_example_served() as url, chromium_page() as browser_page:
        errors: list[str] = []
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.goto(f"{url}?model={DEFAULT_MODEL}")
        browser_page.evaluate("window.fashionzoo.ready")
        assert browser_page.evaluate("crossOriginIsolated")  # serve.py's headers: onnxruntime-web may use threads
        yield browser_page
        assert not errors, errors


def page_probs(page: Any, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """The page's probabilities for uint8 28x28 images."""
    data = base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode()
    rows = page.evaluate("([data, batch]) => window.fashionzoo.classifyPixels(data, batch)", [data, batch_size])
    return np.asarray(rows, dtype=np.float32)


def last_answer(page: Any, count_before: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 28x28 pixels and probabilities of the page's next classification after ``count_before``, and the labels
    its answer shows, best first."""
    page.wait_for_function(f"window.fashionzoo.last.count > {count_before}")
    pixels, probs = page.evaluate(
        "[Array.from(window.fashionzoo.last.pixels), Array.from(window.fashionzoo.last.probabilities)]"
    )
    shown = page.locator("#answer li span:first-child").all_text_contents()
    return np.asarray(pixels, dtype=np.uint8).reshape(28, 28), np.asarray(probs, dtype=np.float32), shown


def assert_agrees(python: np.ndarray, web: np.ndarray) -> None:
    assert web.shape == python.shape
    assert (web.argmax(axis=-1) == python.argmax(axis=-1)).all(), np.flatnonzero(web.argmax(-1) != python.argmax(-1))
    assert float(np.abs(web - python).max()) <= TOLERANCE, float(np.abs(web - python).max())


def test_page_matches_python_on_official_test_images(page: Any, shared_data: Path) -> None:
    images = load_split("test", data_dir=shared_data).images[:TEST_IMAGES]
    classifier = Classifier(released_onnx(DEFAULT_MODEL))
    facts = page.evaluate("window.fashionzoo.ready")  # the facts the page shows for the model it started with
    assert facts["classes"] == ", ".join(classifier.classes)  # read from the file's metadata, as Python reads it
    assert facts["model"] == DEFAULT_MODEL
    python = classifier.predict_probs(images)
    assert_agrees(python, page_probs(page, images))
    assert_agrees(python[:5], page_probs(page, images[:5], batch_size=1))  # one image at a time too


def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the pad, in fractions of its size."""
    box = page.locator("#pad").bounding_box()
    page.click("#clear")
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
        page.mouse.up()


def test_a_drawn_digit_is_read_as_python_reads_the_page_s_28x28(page: Any) -> None:
    page.evaluate(f"window.fashionzoo.load('{DIGITS}')")
    count = page.evaluate("window.fashionzoo.last.count")
    draw(page, [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]])  # a 7
    pixels, web, shown = last_answer(page, count)
    assert pixels.max() == 255 and pixels[0].max() == 0 and pixels[:, 0].max() == 0  # bright digit on black, framed
    python = Classifier(released_onnx(DIGITS)).predict_probs(pixels)[0]
    assert_agrees(python, web)
    assert shown[0] == "7" == str(int(python.argmax()))


def test_a_garment_sketch_is_read_as_python_reads_the_page_s_28x28(page: Any) -> None:
    page.evaluate(f"window.fashionzoo.load('{DEFAULT_MODEL}')")
    count = page.evaluate("window.fashionzoo.last.count")
    draw(page, [[(0.4, 0.15), (0.4, 0.85)], [(0.6, 0.15), (0.6, 0.85)], [(0.4, 0.15), (0.6, 0.15)]])  # trousers
    pixels, web, shown = last_answer(page, count)
    classifier = Classifier(released_onnx(DEFAULT_MODEL))
    python = classifier.predict_probs(pixels)[0]
    assert_agrees(python, web)
    assert shown[0] == classifier.classes[int(python.argmax())] == "Trouser"


def test_picked_photos_are_converted_in_the_page_and_read_as_python_reads_them(page: Any) -> None:
    """Each example photo through the page's file input: its conversion makes the 28x28, and Python's reading of
    those pixels is the page's (the model's own reading: the page applies no photo calibration). The conversion is
    the page's own, simpler than ``predict``'s, and still reads the photos as their names say (all ten here; one
    miss allowed)."""
    page.evaluate(f"window.fashionzoo.load('{DEFAULT_MODEL}')")
    classifier = Classifier(released_onnx(DEFAULT_MODEL))
    photos = sorted(IMAGES.glob("*-photo.png"))
    right = 0
    for photo in photos:
        count = page.evaluate("window.fashionzoo.last.count")
        page.set_input_files("#image-file", str(photo))
        pixels, web, shown = last_answer(page, count)
        ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert pixels.max() == 255 and np.median(ring) == 0, photo.name  # a bright garment on black
        python = classifier.predict_probs(pixels)[0]
        assert_agrees(python, web)
        assert shown[0] == classifier.classes[int(python.argmax())]
        right += shown[0] == expected_label(photo)
    assert right >= len(photos) - 1 and len(photos) == 10


def test_a_file_without_the_zoo_s_metadata_is_refused_in_one_line(page: Any, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(released_onnx(DIGITS)))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    page.set_input_files("#model-file", str(bare))
    page.wait_for_selector("#status.error")
    assert "no fashionzoo.classes metadata" in page.text_content("#status")
