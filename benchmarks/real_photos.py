"""Balanced accuracy of a model on the shared real photos, per domain and class, through ``predict``'s own path.

Usage: python benchmarks/real_photos.py [--model NAME] [--photos DIR] [--domain D]   (prints one JSON object)

Every photo goes file -> ``expand_inputs`` -> ``Classifier.classify`` (preprocessing, ONNX Runtime), exactly
as ``fashionzoo predict`` runs it. Also reported: how well the top probability separates the in-class phone
photos from the out-of-class ones (hats, shorts, skirts) as an AUROC.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionzoo.real_photos import DOMAINS, auroc, balanced_accuracy, load_manifest
from fashionzoo.registry import DEFAULT_MODEL
from fashionzoo.runtime import Classifier, Failure, expand_inputs

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"


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
    phone_in = [c for p, c in zip(photos, confidence, strict=True) if p.domain == "phone" and p.accepted]
    phone_out = [c for p, c in zip(photos, confidence, strict=True) if p.domain == "phone" and not p.accepted]
    if phone_in and phone_out:
        report["phone_in_vs_out_auroc"] = auroc(phone_in, phone_out)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
