"""Embed a fashionzoo ONNX model in any Python app with onnxruntime, numpy and Pillow alone (no fashionzoo).

Usage: python embed_onnx.py MODEL.onnx IMAGE [IMAGE ...]
Images must look like Fashion-MNIST (28x28, bright garment on a dark background); for ordinary product
photos, use `fashionzoo predict` or `fashionzoo.Classifier.from_pretrained(...).classify(files)`: they also convert
the photo and apply the released weights' photo calibration, which this file does not know (docs/photos.md).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def main(model_path: str, image_paths: list[str]) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    classes = json.loads(metadata["fashionzoo.classes"])  # class names travel inside the model
    spec = json.loads(metadata["fashionzoo.input"])  # layout, size and scaling the model expects
    images = [Image.open(path).convert("L").resize((spec["width"], spec["height"])) for path in image_paths]
    batch = np.stack([np.asarray(image, dtype=np.float32) * spec["scale"] for image in images])[..., None]
    (probabilities,) = session.run(["probabilities"], {"image": batch})
    for path, probs in zip(image_paths, probabilities, strict=True):
        best = int(probs.argmax())
        print(json.dumps({"file": path, "label": classes[best], "class_id": best, "probability": float(probs[best])}))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
