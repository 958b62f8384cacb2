"""Seed sweeps: the same recipe trained with several seeds, and the spread of the results.

The spread (mean, sample standard deviation, min, max of validation and test accuracy) tells whether a
difference between two models is larger than what the seed alone moves. Each seed gets a full run folder
(``OUT/seed-N``); ``OUT/seeds.json`` holds the summary. The trainings run one after another here, or as Ray Tune
trials through :func:`fashionzoo.distributed.tune.run_trials`.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open

RunAll = Callable[[Callable[[int], dict[str, Any]], list[int]], list[dict[str, Any]]]
"""Runs a function over the seeds and returns the results in order."""


def run_in_process(function: Callable[[int], dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """The trainings one after another in this process."""
    return [function(seed) for seed in seeds]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1; 0 for one value), min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def train_seed(seed: int, *, name: str, out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Train ``name`` with ``seed`` into ``out_dir/seed-N``; the accuracies that the sweep summarises."""
    from fashionzoo.training.train import train

    record = train(name, Path(out_dir) / f"seed-{seed}", seed=seed, verbose=0, **options)
    return {
        "seed": seed,
        "run": f"seed-{seed}",
        "val_accuracy": record.val["accuracy"],
        "test_accuracy": record.test["accuracy"],
        "wall_time_s": record.wall_time_s,
    }


def sweep_seeds(
    name: str, out_dir: str | Path, seeds: Sequence[int], run_all: RunAll = run_in_process, **options: Any
) -> dict[str, Any]:
    """Train ``name`` once per seed (``options`` as for :func:`fashionzoo.training.train.train`) and write
    ``seeds.json``; returns its content."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise FashionZooError(f"--seeds {','.join(map(str, seeds))}: give distinct seeds, e.g. 0,1,2,3,4")
    out = Path(out_dir).resolve()  # the folders the trainings see, wherever their worker's current folder is
    if options.get("data_dir"):
        options = {**options, "data_dir": str(Path(options["data_dir"]).resolve())}
    runs = run_all(functools.partial(train_seed, name=name, out_dir=str(out), options=options), list(seeds))
    summary = {
        "model": name,
        "seeds": list(seeds),
        "options": options,
        "runs": runs,
        "val_accuracy": spread([r["val_accuracy"] for r in runs]),
        "test_accuracy": spread([r["test_accuracy"] for r in runs]),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "seeds.json") as handle:
        json.dump(summary, handle, indent=2)
    return summary
