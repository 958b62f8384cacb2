"""Figures and model cards written into a run folder (matplotlib, huggingface_hub)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
from huggingface_hub import EvalResult, ModelCard, ModelCardData  # noqa: E402

from fashionzoo.core.files import atomic_open, atomic_path
from fashionzoo.data.datasets import DATASETS
from fashionzoo.registry.catalogue import DEFAULT_MODEL, DEFAULT_MODEL_REASON
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.training import runs
from fashionzoo.training.runs import RunRecord

matplotlib.use("Agg")


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
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > peak / 2 else "black"
            )
    ax.set_title(title)
    _save_figure(fig, path)


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def write_model_card(record: RunRecord, entry: ModelEntry, path: Path) -> None:
    """A Hugging Face style README.md with YAML metadata (model-index with the test accuracy); the same record
    always gives the same bytes."""
    name, test, val = entry.full_name, record.test, record.val
    data = ModelCardData(
        library_name="keras",
        license="mit",
        tags=["image-classification", record.dataset, "fashionzoo"],
        datasets=[{"fashion-mnist": "fashion_mnist"}.get(record.dataset, record.dataset)],
        model_name=name,
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=record.dataset,
                dataset_name=record.dataset,
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(test["accuracy"], 4),
            )
        ],
    )
    latency = record.onnx_latency
    speed = (
        f"\nONNX Runtime latency at batch 1 (CPU, p50): {latency['p50_ms']:.3f} ms "
        f"({latency['images_per_s']:,.0f} images/s).\n"
        if latency
        else ""
    )
    if record.test_time_flip:
        plain = val["without_test_time_flip"]["accuracy"]
        speed += (
            f"\nTest-time augmentation, inside the Keras and ONNX graphs: every image is classified together "
            f"with its mirror image and the probabilities averaged (validation accuracy without it: "
            f"{plain:.4f}; it doubles the work per image, the latency above includes it).\n"
        )
    test_error, val_error = standard_error(test["accuracy"], test["n"]), standard_error(val["accuracy"], val["n"])
    official = "official data files" if record.uses_official_data() else "NOT the official data files"
    pool = DATASETS[record.dataset].photo_pool if record.dataset in DATASETS else None
    photos = (
        f"""
Also trained on real phone photos: the {pool.name} pool, {pool.source}, licence {pool.licence}, each photo converted
as `predict` converts it. On the photos of senders held out of training ({record.photos["n"]} photos,
{record.photos["senders"]} senders): balanced accuracy {record.photos["phone_balanced_accuracy"]:.3f} over the phone
classes (dress, longsleeve, outwear, pants, shirt, shoes, t-shirt), AUROC of the top probability
{record.photos.get("auroc_in_vs_out_of_class", float("nan")):.3f} for photos of the ten classes against photos of none
(hats, shorts, skirts...) and {record.photos["auroc_right_vs_wrong"]:.3f} for right against wrong predictions; uncertain
below {record.photos.get("uncertain_below", float("nan")):.2f}.
"""
        if pool and record.photos
        else ""
    )
    default = (
        f"\n**The default model** of `fashionzoo predict` and `Classifier.from_pretrained()`: {DEFAULT_MODEL_REASON}\n"
        if name == DEFAULT_MODEL
        else ""
    )
    body = f"""
# fashionzoo `{name}`

{entry.description}
{default}
Trained on {record.dataset} ({official}, SHA-256 below) with `fashionzoo train {name}` ({record.epochs} epochs,
{record.wall_time_s:.0f} s wall time on {record.machine["cpu"]}, {record.machine["device"]}).

| split | images | accuracy | standard error | loss |
| --- | --- | --- | --- | --- |
| test (the official test file) | {test["n"]} | {test["accuracy"]:.4f} | {test_error:.4f} | {test["loss"]:.4f} |
| validation (held out of the training file, seed {record.split_seed}) | {val["n"]} | {val["accuracy"]:.4f} | \
{val_error:.4f} | {val["loss"]:.4f} |
{photos}{speed}
## Use

```python
import fashionzoo
model = fashionzoo.load("{name}")
```

Classes: {", ".join(entry.classes)}. Input: {entry.input_spec.to_json()}.

## Recipe

```json
{json.dumps(record.recipe, indent=2)}
```

Data files (SHA-256): {", ".join(f"`{k}` {v[:12]}…" for k, v in record.data_files.items())}.
Package version {record.versions["fashionzoo"]}, Keras {record.versions["keras"]},
TensorFlow {record.versions["tensorflow"]}.
"""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    with atomic_open(path) as handle:
        handle.write(str(card))


def write_run_figures(run_dir: Path, entry: ModelEntry, record: RunRecord) -> None:
    """The run folder's pictures and card: training curves, test confusion matrix, model card."""
    plot_curves(read_history(run_dir / runs.HISTORY), run_dir / runs.CURVES, f"{entry.full_name}: training curves")
    plot_confusion(
        record.test["confusion_matrix"],
        entry.classes,
        run_dir / runs.CONFUSION,
        f"{entry.full_name}: test confusion matrix (accuracy {record.test['accuracy']:.4f})",
    )
    write_model_card(record, entry, run_dir / runs.CARD)
