"""Hyper-parameter search before training: trials scored on validation folds."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from fashionzoo.core.files import atomic_open
from fashionzoo.data.loading import SPLIT_SEED, Split
from fashionzoo.models.evaluation import metrics_from_probs
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import Recipe
from fashionzoo.training.fit import fit_model, in_float32, log, predict_split


def split_overrides(recipe: Recipe, params: dict[str, Any]) -> tuple[Recipe, dict[str, Any]]:
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    return (
        recipe.replace(**{k: v for k, v in params.items() if k in recipe_fields}),
        {k: v for k, v in params.items() if k not in recipe_fields},
    )


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training of a search: the recipe overrides, and which rows of the search data it trains and scores on."""

    params: dict[str, Any]
    train_rows: np.ndarray
    val_rows: np.ndarray


ScoreTrials = Callable[[ModelEntry, Recipe, Split, list[Trial], str], list[float]]
"""Runs trials of a search (``label`` names them in progress lines) and returns their validation accuracies in
order: :func:`score_trials_in_process` here, or ``fashionzoo.distributed`` on a Ray cluster."""


def score_trial(
    entry: ModelEntry, recipe: Recipe, data: Split, trial: Trial, strategy: tf.distribute.Strategy
) -> float:
    """Train ``recipe`` with ``trial.params`` on its training rows of ``data``; its validation rows' accuracy."""
    trial_recipe, kwargs = split_overrides(recipe, trial.params)
    train = Split(data.images[trial.train_rows], data.labels[trial.train_rows], data.files)
    val = Split(data.images[trial.val_rows], data.labels[trial.val_rows], data.files)
    model, _ = fit_model(entry, trial_recipe, train, val, strategy, kwargs, [], verbose=0)
    model = in_float32(entry, model, kwargs)
    return metrics_from_probs(predict_split(entry, model, val), val.labels, entry.classes)["accuracy"]


def score_trials_in_process(
    entry: ModelEntry,
    recipe: Recipe,
    data: Split,
    trials: list[Trial],
    label: str,
    *,
    strategy: tf.distribute.Strategy,
) -> list[float]:
    """The trials one after another in this process."""
    scores = []
    for i, trial in enumerate(trials, 1):
        scores.append(score_trial(entry, recipe, data, trial, strategy))
        log.info(trial_line(label, i, len(trials), trial, scores[-1]))
    return scores


def trial_line(label: str, number: int, count: int, trial: Trial, accuracy: float) -> str:
    """The progress line of a finished trial."""
    return f"{label} {number}/{count} {trial.params}: accuracy {accuracy:.4f}"


def search_trials(recipe: Recipe) -> list[dict[str, Any]]:
    """The settings of ``recipe.search`` that the random search tries, in order (drawn with the recipe's seed)."""
    rng = np.random.default_rng(recipe.seed)
    space = recipe.search or {}
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    return [grid[i] for i in rng.permutation(len(grid))[: recipe.search_trials or len(grid)]]


def search_hyperparameters(
    entry: ModelEntry,
    recipe: Recipe,
    train: Split,
    val: Split,
    strategy: tf.distribute.Strategy,
    score_trials: ScoreTrials | None = None,
) -> dict[str, Any]:
    """Random search of ``recipe.search`` scored on the validation split, then k-fold cross-validation
    of the best setting on train+validation. Returns the chosen setting and every score. ``score_trials`` runs
    the trainings (default: one after another in this process)."""
    score = score_trials or functools.partial(score_trials_in_process, strategy=strategy)
    data = Split(np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels]), train.files)
    train_rows, val_rows = np.arange(len(train)), np.arange(len(train), len(data))
    settings = search_trials(recipe)
    accuracies = score(
        entry, recipe, data, [Trial(params, train_rows, val_rows) for params in settings], "search trial"
    )
    scores = [{"params": params, "val_accuracy": a} for params, a in zip(settings, accuracies, strict=True)]
    best = settings[max(range(len(settings)), key=lambda i: accuracies[i])]
    result: dict[str, Any] = {"best": best, "trials": scores}
    if recipe.search_folds > 1:
        folds = np.array_split(np.random.default_rng(SPLIT_SEED).permutation(len(data)), recipe.search_folds)
        fold_trials = [
            Trial(best, np.flatnonzero(~np.isin(np.arange(len(data)), held_out)), held_out) for held_out in folds
        ]
        fold_scores = score(entry, recipe, data, fold_trials, "cross-validation fold")
        result["cross_validation"] = {
            "folds": fold_scores,
            "mean": float(np.mean(fold_scores)),
            "std": float(np.std(fold_scores)),
        }
    return result


def run_search(
    entry: ModelEntry,
    recipe: Recipe,
    train: Split,
    val: Split,
    strategy: tf.distribute.Strategy,
    path: Path,
    resume: bool,
    score_trials: ScoreTrials | None,
) -> dict[str, Any]:
    """The recipe's hyper-parameter search, or the one an interrupted run already finished (``search.json``)."""
    if resume and path.is_file():
        return json.loads(path.read_text())
    started = time.monotonic()
    search = search_hyperparameters(entry, recipe, train, val, strategy, score_trials)
    search["wall_time_s"] = round(time.monotonic() - started, 1)
    with atomic_open(path) as handle:
        json.dump(search, handle, indent=2)
    return search
