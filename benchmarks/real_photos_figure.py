"""The picture in docs/photos.md: what the default model saw for a few development photos per domain.

Usage: python benchmarks/real_photos_figure.py [--photos DIR] [--out docs/img/real-photos-inputs.png]

Only the 28x28 model inputs are drawn, with the predicted and the true label: the photos' licences forbid
redistributing them, so they never appear in the picture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fashionzoo.core.files import atomic_path
from fashionzoo.photos.scoring import DOMAINS, load_manifest
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.results import Failure

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"
OUT = Path(__file__).resolve().parents[1] / "docs/img/real-photos-inputs.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-domain", type=int, default=10)
    args = parser.parse_args()
    classifier = Classifier.from_pretrained(DEFAULT_MODEL)
    photos = load_manifest(args.photos, classifier.classes)
    rng = np.random.default_rng(0)
    figure, axes = plt.subplots(len(DOMAINS), args.per_domain, figsize=(1.3 * args.per_domain, 1.75 * len(DOMAINS)))
    for row, domain in zip(axes, DOMAINS, strict=True):
        pool = [p for p in photos if p.domain == domain and p.accepted]
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), args.per_domain, replace=False))]
        for ax, photo, result in zip(row, chosen, classifier.classify(str(p.file) for p in chosen), strict=True):
            if isinstance(result, Failure):  # a development photo that cannot be read: say which, in one line
                sys.exit(f"fashionzoo: error: {result.error}")
            ax.imshow(result.model_input, cmap="gray", vmin=0, vmax=255)
            right = result.class_id in photo.accepted
            ax.set_title(f"{result.label}\n({photo.category})", fontsize=7, color="darkgreen" if right else "firebrick")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(domain, fontsize=9)
    figure.suptitle(f"What {DEFAULT_MODEL} saw: predicted label (true class); green right, red wrong", fontsize=9)
    figure.tight_layout()
    with atomic_path(args.out, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
