"""End-to-end ``predict`` throughput on the real photos beside the bare model's, and the peak memory of a big folder.

Usage: python benchmarks/predict_throughput.py [--model NAME] [--photos DIR] [--rounds 3] [--copies 10000]
(one JSON object)

In one run, interleaved over ``--rounds`` rounds (medians reported, every round kept): (1) the bare model,
``Classifier.predict_probs`` on 28x28 inputs at batch 64, with ONNX Runtime's default session; (2) the whole path
of ``predict`` in this process (files -> decoding and preprocessing workers -> model, batch 256, the session
``predict`` opens), over every development photo, with 1 worker and with the default. Then (3) ``fashionzoo
predict DIR --json`` in a fresh process on a temporary folder of ``--copies`` symbolic links to the photos: wall
time, and the peak resident memory of that process and its worker processes together (read from ``/proc``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.inputs import expand_inputs
from fashionzoo.runtime.loading import default_workers

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/real-photos"


def bare_model(classifier: Classifier, images: np.ndarray, batch_size: int = 64) -> float:
    """Images per second of the model alone over ``images``."""
    classifier.predict_probs(images[:batch_size], batch_size)  # warm-up
    start = time.perf_counter()
    classifier.predict_probs(images, batch_size)
    return len(images) / (time.perf_counter() - start)


def end_to_end(classifier: Classifier, files: list[str], workers: int) -> tuple[float, np.ndarray]:
    """Photos per second through ``classify`` (the path ``predict`` takes), and the model inputs it built."""
    start = time.perf_counter()
    results = list(classifier.classify(files, workers=workers))
    elapsed = time.perf_counter() - start
    return len(files) / elapsed, np.stack([r.model_input for r in results])


def _resident_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    own = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return own + sum(_resident_kib(int(child)) for child in children)


def big_folder(model: str, files: list[str], copies: int) -> dict:
    """Wall time and peak memory (with its workers) of ``fashionzoo predict --model MODEL`` on ``copies`` links to
    ``files``."""
    with tempfile.TemporaryDirectory() as folder:
        for index, source in zip(range(copies), itertools.cycle(files)):
            os.symlink(source, Path(folder, f"{index:05d}{Path(source).suffix}"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "fashionzoo", "predict", folder, "--model", model, "--json", "--no-progress"],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        peak_kib = 0
        while process.poll() is None:
            peak_kib = max(peak_kib, _resident_kib(process.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"fashionzoo predict failed with exit code {process.returncode}")
    return {
        "photos": copies,
        "seconds": elapsed,
        "photos_per_second": copies / elapsed,
        "peak_rss_mib_with_workers": peak_kib / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="the real-photos folder")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
    parser.add_argument("--copies", type=int, default=10_000, help="photos in the big-folder run (0: skip it)")
    args = parser.parse_args()
    bare_classifier = Classifier.from_pretrained(args.model)
    predict_classifier = Classifier.from_pretrained(args.model, spinning=False)  # as `fashionzoo predict` opens it
    files = [f for f in expand_inputs([args.photos], recursive=True) if isinstance(f, str)]
    workers = default_workers()
    rounds: dict[str, list[float]] = {"bare_model_batch64": [], "end_to_end_1_worker": [], "end_to_end": []}
    for _ in range(args.rounds):
        serial, _ = end_to_end(predict_classifier, files, 1)
        parallel, inputs = end_to_end(predict_classifier, files, workers)
        rounds["end_to_end_1_worker"].append(serial)
        rounds["end_to_end"].append(parallel)
        rounds["bare_model_batch64"].append(bare_model(bare_classifier, inputs))
    medians = {f"{key}_per_second": statistics.median(values) for key, values in rounds.items()}
    report = {
        "model": args.model,
        "photos": len(files),
        "cpu_cores": os.cpu_count(),
        "workers": workers,
        **medians,
        "end_to_end_share_of_bare": medians["end_to_end_per_second"] / medians["bare_model_batch64_per_second"],
        "rounds": rounds,
    }
    if args.copies:
        report["big_folder"] = big_folder(args.model, files, args.copies)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
