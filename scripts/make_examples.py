"""Write the example images under examples/images/ from the shared test file.

For each class, the first test image of that class: as a 28x28 Fashion-MNIST style PNG, and as a synthetic
product photo (white background, tint, upscaled, uneven margins) in PNG. Usage: python scripts/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.data.loading import load_split
from fashionzoo.photos.synthetic import random_photo

OUT = Path(__file__).resolve().parents[1] / "examples" / "images"


def slug(label: str) -> str:
    return label.lower().replace("/", "-").replace(" ", "-")


def main() -> None:
    test = load_split("test")
    rng = np.random.default_rng(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for class_id, label in enumerate(FASHION_CLASSES):
        index = int(np.flatnonzero(test.labels == class_id)[0])
        Image.fromarray(test.images[index]).save(OUT / f"{slug(label)}-28x28.png")
        random_photo(test.images[index], rng).save(OUT / f"{slug(label)}-photo.png", optimize=True)
        print(f"{label}: test image {index}")


if __name__ == "__main__":
    main()
