"""End-to-end ``predict`` throughput on the real photos beside the bare model's, and the peak memory of a big folder.

Usage: python benchmarks/predict_throughput.py [--model NAME] [--photos DIR] [--copies 10000]   (one JSON object)

In one run: (1) the bare model, ``Classifier.predict_probs`` on 28x28 inputs at batch 64; (2) the whole path of
``predict`` in this process (files -> decoding and preprocessing threads -> model, batch 256), over every
development photo, with 1 thread and with the default; (3) ``fashionzoo predict DIR --json`` in a fresh process
on a temporary folder of ``--copies`` symbolic links to the photos: wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fashionzoo.registry import DEFAULT_MODEL
from fashionzoo.runtime import Classifier, default_workers, expand_inputs

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"


def bare_model(classifier: Classifier, images: np.ndarray, batch_size: int = 64, rounds: int = 3) -> float:
    """Images per second of the model alone (best of ``rounds`` passes over ``images``)."""
    classifier.predict_probs(images[:batch_size], batch_size)  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        classifier.predict_probs(images, batch_size)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def end_to_end(classifier: Classifier, files: list[str], workers: int) -> tuple[float, np.ndarray]:
    """Photos per second through ``classify`` (the path ``predict`` takes), and the model inputs it built."""
    start = time.perf_counter()
    results = list(classifier.classify(files, workers=workers))
    elapsed = time.perf_counter() - start
    return len(files) / elapsed, np.stack([r.model_input for r in results])


def big_folder(files: list[str], copies: int) -> dict:
    """Wall time and peak memory of ``fashionzoo predict`` on a folder of ``copies`` links to ``files``."""
    with tempfile.TemporaryDirectory() as folder:
        for index, source in zip(range(copies), itertools.cycle(files)):
            os.symlink(source, Path(folder, f"{index:05d}{Path(source).suffix}"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fashionzoo", "predict", folder, "--json", "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL, env=env)  # fmt: skip
        elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"photos": copies, "seconds": elapsed, "photos_per_second": copies / elapsed,
            "peak_rss_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="the real-photos folder")
    parser.add_argument("--copies", type=int, default=10_000, help="photos in the big-folder run (0: skip it)")
    args = parser.parse_args()
    classifier = Classifier.from_pretrained(args.model)
    files = [f for f in expand_inputs([args.photos], recursive=True) if isinstance(f, str)]
    workers = default_workers()
    serial, _ = end_to_end(classifier, files, 1)
    threaded, inputs = end_to_end(classifier, files, workers)
    bare = bare_model(classifier, inputs)
    report = {"model": args.model, "photos": len(files), "cpu_cores": os.cpu_count(), "workers": workers,
              "bare_model_batch64_per_second": bare, "end_to_end_1_thread_per_second": serial,
              "end_to_end_per_second": threaded, "end_to_end_share_of_bare": threaded / bare}  # fmt: skip
    if args.copies:
        report["big_folder"] = big_folder(files, args.copies)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
