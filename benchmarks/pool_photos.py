"""A model's figures on the CC0 photo pool's held-out senders, through ``predict``'s own path.

Usage: FASHIONZOO_PHOTOS_DIR=DIR python benchmarks/pool_photos.py [--model NAME ...] [--uncalibrated]   (JSON lines)

The held-out senders are those ``fashionzoo train zoo-resnet.photos`` validates on (the recipe's fraction of the
pool's senders, drawn with the split seed): no photo of theirs was trained on. Every photo is converted as
``predict`` converts it (pixels and scene) and classified by ``Classifier.predict_probs`` with the weights' released
photo calibration, as ``predict`` classifies it. Prints one JSON object per model (``photos.pool.score``).
"""

from __future__ import annotations

import argparse
import json

from fashionzoo.data.datasets import CLOTHING_PHOTOS
from fashionzoo.data.loading import SPLIT_SEED
from fashionzoo.photos.pool import read_pool, score, split_by_sender
from fashionzoo.registry import DEFAULT_MODEL, get_entry
from fashionzoo.runtime import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help=f"models to score (repeatable; default {DEFAULT_MODEL})")
    parser.add_argument("--uncalibrated", action="store_true", help="without the released photo calibration")
    args = parser.parse_args()
    photos, _ = read_pool(CLOTHING_PHOTOS, seed=SPLIT_SEED)
    fraction = get_entry("zoo-resnet.photos").recipe.photo_val_fraction
    _, held_out = split_by_sender(photos, fraction, seed=SPLIT_SEED)
    for name in args.model or [DEFAULT_MODEL]:
        classifier = Classifier.from_pretrained(name, calibrated=not args.uncalibrated)
        probs = classifier.predict_probs(held_out.pixels, scenes=list(held_out.scenes))
        print(json.dumps({"model": name, "calibrated": not args.uncalibrated, **score(held_out, probs)}))


if __name__ == "__main__":
    main()
