"""Accuracy of a model on the shared test images and on product-photo versions of them (PNG, JPEG, transparent PNG).

Usage: python benchmarks/photo_accuracy.py [--model NAME] [--n N]   (prints one JSON object)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fashionzoo.data import load_split
from fashionzoo.photos import photo_accuracy
from fashionzoo.registry import DEFAULT_MODEL
from fashionzoo.runtime import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=10_000, help="how many test images (from the start of the file)")
    args = parser.parse_args()
    test = load_split("test").head(args.n)
    with tempfile.TemporaryDirectory() as folder:
        result = photo_accuracy(Classifier.from_pretrained(args.model), test.images, test.labels, Path(folder))
    print(json.dumps({"model": args.model, **result}))


if __name__ == "__main__":
    main()
