"""Figures and model cards written next to a trained checkpoint (matplotlib, huggingface_hub)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from huggingface_hub import EvalResult, ModelCard, ModelCardData  # noqa: E402

from fashionzoo._files import atomic_open, atomic_path  # noqa: E402


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as columns (one row per epoch)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Training/validation loss and accuracy against epoch, one PNG."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [int(e) + 1 for e in history["epoch"]]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[metric], label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save_figure(fig, path)


def plot_confusion(matrix: list[list[int]], classes: tuple[str, ...], path: Path, title: str) -> None:
    """Confusion matrix heat map with counts."""
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, count, ha="center", va="center", fontsize=7, color="white" if count > peak / 2 else "black")
    ax.set_title(title)
    _save_figure(fig, path)


def write_model_card(metrics: dict[str, Any], description: str, path: Path) -> None:
    """A Hugging Face style README.md with YAML metadata (model-index with the test accuracy)."""
    name = metrics["model"]
    data = ModelCardData(
        library_name="keras",
        license="mit",
        tags=["image-classification", "fashion-mnist", "fashionzoo"],
        datasets=["fashion_mnist"] if metrics["dataset"] == "fashion-mnist" else [metrics["dataset"]],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="image-classification", dataset_type=metrics["dataset"], dataset_name=metrics["dataset"],
                dataset_split="test", metric_type="accuracy", metric_value=round(metrics["test"]["accuracy"], 4),
            )
        ],
    )  # fmt: skip
    recipe = json.dumps(metrics["recipe"], indent=2)
    latency = metrics.get("onnx_latency")  # added by scripts/release.py
    speed = (f"\nONNX Runtime latency at batch 1 (CPU, p50): {latency['p50_ms']:.3f} ms "
             f"({latency['images_per_s']:,.0f} images/s).\n" if latency else "")  # fmt: skip
    if metrics.get("test_time_flip"):
        plain = metrics["val"]["without_test_time_flip"]["accuracy"]
        speed += (f"\nTest-time augmentation, inside the Keras and ONNX graphs: every image is classified together "
                  f"with its mirror image and the probabilities averaged (validation accuracy without it: "
                  f"{plain:.4f}; it doubles the work per image, the latency above includes it).\n")  # fmt: skip
    body = f"""
# fashionzoo `{name}`

{description}

Trained with `fashionzoo train {name}` ({metrics["epochs"]} epochs, {metrics["wall_time_s"]:.0f} s wall time on
{metrics["machine"]["cpu"]}, {metrics["machine"]["device"]}).

| split | images | accuracy | loss |
| --- | --- | --- | --- |
| test (shared file) | {metrics["test"]["n"]} | {metrics["test"]["accuracy"]:.4f} | {metrics["test"]["loss"]:.4f} |
| validation (seed {metrics["split_seed"]}) | {metrics["n_val"]} | {metrics["val"]["accuracy"]:.4f} | \
{metrics["val"]["loss"]:.4f} |
{speed}
## Use

```python
import fashionzoo
model = fashionzoo.load("{name}")
```

## Recipe

```json
{recipe}
```

Data files (SHA-256): {", ".join(f"`{k}` {v[:12]}…" for k, v in metrics["data_files"].items())}.
Package version {metrics["versions"]["fashionzoo"]}, Keras {metrics["versions"]["keras"]},
TensorFlow {metrics["versions"]["tensorflow"]}.
"""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    with atomic_open(path) as handle:
        handle.write(str(card))
