"""Accuracy of a model on the shared test images and on product-photo versions of them (PNG, JPEG, transparent PNG).

Usage: python benchmarks/photo_accuracy.py [--model NAME] [--n N] [--uncalibrated]   (prints one JSON object)

Synthetic photos are Fashion-MNIST images in disguise: ``--uncalibrated`` measures the preprocessing alone, without
the weights' photo calibration (which is chosen for real photos and costs on these; docs/photos.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fashionzoo.data.loading import load_split
from fashionzoo.photos.synthetic import photo_accuracy
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.runtime.classifier import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=10_000, help="how many test images (from the start of the file)")
    parser.add_argument("--uncalibrated", action="store_true", help="without the weights' photo calibration")
    args = parser.parse_args()
    test = load_split("test").head(args.n)
    classifier = Classifier.from_pretrained(args.model, calibrated=not args.uncalibrated)
    with tempfile.TemporaryDirectory() as folder:
        result = photo_accuracy(classifier, test.images, test.labels, Path(folder))
    print(json.dumps({"model": args.model, "calibrated": not args.uncalibrated, **result}))


if __name__ == "__main__":
    main()
