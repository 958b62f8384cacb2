"""Balanced accuracy of a model on the shared real photos, per domain and class, through ``predict``'s own path.

Usage: python benchmarks/real_photos.py [--model NAME] [--photos DIR] [--domain D]   (prints one JSON object)

Every photo goes file -> ``expand_inputs`` -> ``Classifier.classify`` (preprocessing, ONNX Runtime), exactly
as ``fashionzoo predict`` runs it. Also reported: how well the top probability separates the in-class phone
photos from the out-of-class ones (hats, shorts, skirts) and right from wrong predictions (AUROC), and the
share of each group that thresholds on it would mark uncertain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fashionzoo.photos.scoring import DOMAINS, Photo, auroc, balanced_accuracy, load_manifest, phone_confidence
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.inputs import expand_inputs
from fashionzoo.runtime.results import Failure

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"
THRESHOLDS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="the real-photos folder (with manifest.csv)")
    parser.add_argument("--domain", choices=DOMAINS, action="append", help="only these domains (repeatable)")
    args = parser.parse_args()
    classifier = Classifier.from_pretrained(args.model)
    photos = [p for p in load_manifest(args.photos, classifier.classes) if p.domain in (args.domain or DOMAINS)]
    results = list(classifier.classify(expand_inputs(str(p.file) for p in photos)))
    predicted = [-1 if isinstance(r, Failure) else r.class_id for r in results]
    confidence = [0.0 if isinstance(r, Failure) else r.probability for r in results]
    report = {"model": args.model, "domains": balanced_accuracy(photos, predicted)}
    report.update(uncertainty(photos, predicted, confidence))
    print(json.dumps(report))


def uncertainty(photos: list[Photo], predicted: list[int], confidence: list[float]) -> dict:
    """How well the top probability flags what the model cannot know, and what each threshold costs.

    AUROC of phone photos of the ten classes against the phone set's hats, shorts and skirts, and of right
    against wrong predictions on all in-class photos; per threshold, the share of each group marked uncertain.
    """
    conf = np.asarray(confidence)
    inside = np.array([bool(p.accepted) for p in photos])
    right = np.array([c in p.accepted for p, c in zip(photos, predicted, strict=True)])
    in_class, out_of_class = phone_confidence(photos, confidence)
    report = {
        "auroc_in_vs_out_of_class": auroc(in_class, out_of_class) if len(out_of_class) else None,
        "auroc_right_vs_wrong": auroc(conf[inside & right], conf[inside & ~right]),
    }
    groups = {"out_of_class": ~inside, "in_class": inside, "right": inside & right, "wrong": inside & ~right}
    report["thresholds"] = [
        {
            "below": t,
            **{
                f"{name}_flagged": float((conf[group] < t).mean()) if group.any() else None
                for name, group in groups.items()
            },
        }
        for t in THRESHOLDS
    ]
    return report


if __name__ == "__main__":
    main()
