"""Release trained runs: export ONNX (parity-checked), copy files into the package and docs, write weights.json.

Usage: python scripts/release.py [NAME ...] [--runs runs] [--published NAME=COMMIT ...]

For each model with a finished run folder (``runs/NAME/metrics.json``): exports ``NAME.onnx`` next to the
weights (kept as is when weights and ONNX file are the ones already released), measures its batch-1 latency
with ONNX Runtime (into metrics.json and the model card), and quantises it
to ``NAME.int8.onnx`` (skipped, with the reason, if int8 loses more than 0.5 points),
copies weights and ONNX files into ``src/fashionzoo/checkpoints/`` (shipped in the wheel), copies the run's
metrics, curves, confusion matrix, history and model card into ``docs/models/NAME/``, and records the files'
SHA-256 and sizes, the measured metrics and the builder arguments in ``src/fashionzoo/weights.json``.
``--published NAME=COMMIT`` pins the Hub commit returned by ``fashionzoo push`` for that model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from fashionzoo._files import FashionZooError, atomic_open, sha256_file
from fashionzoo.benchmark import onnx_latency
from fashionzoo.export import export_onnx, quantize_int8
from fashionzoo.registry import REGISTRY, is_random_backbone_run
from fashionzoo.reports import write_model_card
from fashionzoo.training import strip_optimizer_state

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "fashionzoo"
RUN_FILES = ("metrics.json", "README.md", "curves.png", "confusion.png", "history.csv")


def _file_record(path: Path) -> dict:
    return {"filename": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


def release(name: str, run: Path, previous: dict | None, published: str | None) -> dict:
    """Export, copy and describe one run; returns its weights.json record."""
    metrics = json.loads((run / "metrics.json").read_text())
    if is_random_backbone_run(REGISTRY[name], metrics):
        raise SystemExit(f"{name}: {run} was trained with a random backbone (a pipeline check): never released")
    weights = run / metrics["weights_file"]
    strip_optimizer_state(weights)  # runs written before training did this itself
    released = previous["files"] if previous else {}

    def unchanged(key: str, path: Path) -> bool:  # already released from these very weights: keep the file
        return key in released and path.is_file() and sha256_file(path) == released[key]["sha256"]

    onnx_path = run / f"{name}.onnx"
    if not (unchanged("weights", weights) and unchanged("onnx", onnx_path)):
        export_onnx(name, onnx_path, weights=weights)
    metrics["onnx_latency"] = onnx_latency(onnx_path, name, batch_size=1)  # measured here, on a quiet machine
    with atomic_open(run / "metrics.json") as handle:
        json.dump(metrics, handle, indent=2)
    write_model_card(metrics, REGISTRY[name].description, run / "README.md")
    files = {"weights": weights, "onnx": onnx_path, "card": run / "README.md", "metrics": run / "metrics.json"}
    int8_path = run / f"{name}.int8.onnx"
    try:
        if unchanged("onnx", onnx_path) and unchanged("onnx_int8", int8_path):
            files["onnx_int8"] = int8_path
        else:
            files["onnx_int8"] = quantize_int8(name, onnx_path, int8_path)
    except FashionZooError as error:
        print(f"{name}: no int8 file released: {error}")
    for key in ("weights", "onnx", "onnx_int8"):
        if key in files:
            shutil.copyfile(files[key], PACKAGE / "checkpoints" / files[key].name)
    docs = ROOT / "docs" / "models" / name
    docs.mkdir(parents=True, exist_ok=True)
    for filename in RUN_FILES:
        shutil.copyfile(run / filename, docs / filename)
    records = {key: _file_record(path) for key, path in files.items()}
    same_files = previous and previous["files"] == records
    revision = published or (previous["revision"] if same_files else None)
    test = metrics["test"]
    return {
        "repo_id": f"fashionzoo/{name}",
        "revision": revision,
        "files": records,
        "metrics": {"accuracy": test["accuracy"], "loss": test["loss"], "n": test["n"], "params": metrics["params"],
                    "epochs": metrics["epochs"], "wall_time_s": metrics["wall_time_s"], "dataset": metrics["dataset"],
                    "onnx_batch1_p50_ms": metrics["onnx_latency"]["p50_ms"],
                    "test_images_sha256": metrics["data_files"]["t10k-images-idx3-ubyte.gz"]},
        "build_kwargs": metrics["build_kwargs"],
        "shipped": [key for key in ("weights", "onnx", "onnx_int8") if key in records],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to release (default: every finished run)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--published", action="append", default=[], metavar="NAME=COMMIT")
    args = parser.parse_args()
    published = dict(item.split("=", 1) for item in args.published)
    manifest_path = PACKAGE / "weights.json"
    manifest = json.loads(manifest_path.read_text())
    names = args.names or [n for n in REGISTRY if (args.runs / n / "metrics.json").is_file()]
    for name in names:
        manifest[name] = release(name, args.runs / name, manifest.get(name), published.get(name))
        print(f"{name}: released ({manifest[name]['metrics']['accuracy']:.4f} test accuracy)")
    ordered = {n: manifest[n] for n in REGISTRY if n in manifest}
    with atomic_open(manifest_path) as handle:
        json.dump(ordered, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
