"""Time per image of zoo models in the web example (onnxruntime-web, WebAssembly) in headless Chromium, and the sizes
of what the page downloads; native ONNX Runtime in Python on the same images in the same run, for comparison.

Usage: python benchmarks/web_example.py [--model NAME|NAME.int8 ...] [--threads N ...] [--rounds N]   (one JSON object)

The page (``examples/web``, after ``npm ci``) is served by its own server (``serve.py``, cross-origin isolated, so
onnxruntime-web may use threads) and driven through ``tests/browser.py``'s Chromium. Each figure is the median and
the best of ``--rounds`` passes (the best: the one least disturbed by other work on a shared machine) of
``ZooModel.probabilities`` (scaling the pixels, the tensor, ``session.run``) at batch 1 over the first 256 official
test images and at batch 64 over the first 1,024, after one warm-up batch; Python's is ``Classifier.run`` on the same
float input. The figures in examples/web/README.md come from this script.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fashionzoo.core.machine import this_cpu
from fashionzoo.data.loading import load_split
from fashionzoo.photos.convert import to_model_input
from fashionzoo.publish import hub
from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.lookup import resolve
from fashionzoo.runtime.classifier import Classifier

ROOT = Path(__file__).resolve().parents[1]
BATCHES = {1: 256, 64: 1024}
"""Batch size -> images timed per pass."""
DOWNLOADS = (
    "index.html",
    "app.js",
    "zoo.js",
    "convert.js",
    "node_modules/onnxruntime-web/dist/ort.wasm.min.mjs",
    "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "node_modules/protobufjs/dist/light/protobuf.min.js",
)
"""What the page loads besides the model (checked against the requests it makes)."""


def sizes(paths: list[Path]) -> dict[str, dict[str, int]]:
    """Bytes of each file as stored and gzip-compressed (what a server compressing its answers sends)."""
    return {
        path.name: {"bytes": path.stat().st_size, "gzip": len(gzip.compress(path.read_bytes(), 9))} for path in paths
    }


def python_times(path: Path, images: np.ndarray, rounds: int) -> dict[str, float]:
    classifier = Classifier(path)
    x = to_model_input(images, classifier.input_spec)
    out = {}
    for batch, count in BATCHES.items():
        classifier.run(x[:batch])
        passes = []
        for _ in range(rounds):
            started = time.perf_counter()
            for i in range(0, count, batch):
                classifier.run(x[i : i + batch])
            passes.append((time.perf_counter() - started) * 1000 / count)
        out[f"batch_{batch}_ms"] = {"median": statistics.median(passes), "best": min(passes)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = [DEFAULT_MODEL, f"{DEFAULT_MODEL}.int8", "zoo-resnet", "cnn", "cnn-small", "lenet5"]
    parser.add_argument("--model", nargs="+", default=models)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import WEB_EXAMPLE, chromium_page, web_example_served

    images = load_split("test").images[: max(BATCHES.values())]
    results: list[dict[str, Any]] = []
    requested: set[str] = set()
    load_before = os.getloadavg()
    with web_example_served() as url, chromium_page() as page:
        page.on("request", lambda request: requested.add(request.url.removeprefix(url).split("?")[0]))
        version = page.context.browser.version if page.context.browser else None
        for name in args.model:
            int8 = name.endswith(".int8")  # NAME.int8: the released int8 file
            path = hub.released_file(resolve(name.removesuffix(".int8")), "onnx_int8" if int8 else "onnx")
            row: dict[str, Any] = {"model": name, "onnx_bytes": path.stat().st_size}
            for threads in args.threads:
                page.goto(f"{url}?model=models/{name}.onnx&threads={threads}")
                page.evaluate("window.fashionzoo.ready")
                for batch, count in BATCHES.items():
                    timing = page.evaluate(
                        "([data, batch, rounds]) => window.fashionzoo.timePerImage(data, batch, rounds)",
                        [base64.b64encode(images[:count].tobytes()).decode(), batch, args.rounds],
                    )
                    row[f"web_threads_{threads}_batch_{batch}_ms"] = {
                        "median": timing["median"],
                        "best": timing["min"],
                    }
                    row[f"web_threads_{threads}_isolated"] = timing["isolated"]
                    row[f"web_threads_{threads}_actual"] = timing["threads"]
            row["python_onnxruntime"] = python_times(path, images, args.rounds)
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    fetched = {p for p in requested if p.startswith("node_modules/") or p.endswith((".html", ".js"))}
    missing = sorted(fetched - set(DOWNLOADS) - {""})
    print(
        json.dumps(
            {
                "results": results,
                "page_files": sizes([WEB_EXAMPLE / p for p in DOWNLOADS]),
                "page_files_not_listed": missing,
                "chromium": version,
                "cpu": this_cpu(),
                "cores": os.cpu_count(),
                "load_average_before_after": [load_before, os.getloadavg()],
                "rounds": args.rounds,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
