"""One training run: fit with resumable backups, then measure the served model and write the run folder."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import sha256_file
from fashionzoo.core.machine import machine_info
from fashionzoo.core.version import __version__
from fashionzoo.data.loading import SPLIT_SEED
from fashionzoo.models.evaluation import metrics_from_probs
from fashionzoo.models.loading import inference_model
from fashionzoo.photos.pool import score
from fashionzoo.publish.reports import write_run_figures
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import Recipe
from fashionzoo.training import runs
from fashionzoo.training.fit import (
    Splits,
    check_recipe,
    distribution_strategy,
    fine_tune,
    fit_model,
    in_float32,
    load_splits,
    predict_photos,
    predict_split,
    start_weights_of,
)
from fashionzoo.training.resume import AtomicBackup, RunState, StopOnNonFinite, dedupe_history, write_run_weights
from fashionzoo.training.runs import RunRecord
from fashionzoo.training.search import ScoreTrials, run_search, split_overrides


def measure_run(
    entry: ModelEntry,
    model: keras.Model,
    recipe: Recipe,
    overrides: dict[str, Any],
    splits: Splits,
    *,
    search: dict | None,
    build_kwargs: dict[str, Any],
    wall_time: float,
    limit: int | None,
    device: str,
    weights_file: str,
) -> RunRecord:
    """Measure the served model (what ``load()`` returns) on test and validation, and on the held-out senders'
    photos for a data set with a photo pool: the run's record."""
    train, val, test = splits.train, splits.val, splits.test
    served = inference_model(entry, model)
    test_metrics = metrics_from_probs(predict_split(entry, served, test), test.labels, entry.classes)
    val_metrics = metrics_from_probs(predict_split(entry, served, val), val.labels, entry.classes)
    val_summary = {k: val_metrics[k] for k in ("accuracy", "loss", "n")}
    if entry.test_time_flip:  # the validation figure that justifies the test-time flip
        plain = metrics_from_probs(predict_split(entry, model, val), val.labels, entry.classes)
        val_summary["without_test_time_flip"] = {k: plain[k] for k in ("accuracy", "loss")}
    return RunRecord(
        model=entry.name,
        params=int(model.count_params()),
        build_kwargs=build_kwargs,
        recipe=dataclasses.asdict(recipe),
        overrides=overrides,
        search=search,
        dataset=entry.tag,
        data_files=splits.files,
        split_seed=SPLIT_SEED,
        n_train=len(train),
        n_val=len(val),
        epochs=recipe.epochs + recipe.fine_tune_epochs,
        wall_time_s=round(wall_time, 1),
        seed=recipe.seed,
        test=test_metrics,
        val=val_summary,
        test_time_flip=entry.test_time_flip,
        weights_file=weights_file,
        versions={
            "fashionzoo": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        machine=machine_info(device),
        limit=limit,
        photos=None if splits.photos_val is None else score(splits.photos_val, predict_photos(entry, served, splits)),
    )


def train_single(
    entry: ModelEntry,
    out: Path,
    overrides: dict[str, Any],
    *,
    resume: bool,
    data_dir: str | os.PathLike | None,
    device: str,
    limit: int | None,
    build_overrides: dict[str, Any] | None,
    verbose: int,
    score_trials: ScoreTrials | None,
    splits: Splits | None = None,
) -> RunRecord:
    """Train one network of ``entry`` with its recipe and ``overrides`` into ``out``; returns the run's record.
    ``splits``: the data already read for this recipe (an ensemble's members share one read of it)."""
    recipe = entry.recipe.replace(**overrides)
    check_recipe(entry.full_name, recipe)
    backup, state_path, history_path = out / runs.BACKUP, out / runs.STATE, out / runs.HISTORY
    runs.prepare_run_folder(out, runs.BACKUP, resume)
    strategy, device_used = distribution_strategy(device)
    if splits is None:
        splits = load_splits(entry, recipe, data_dir, limit)
    train_split, val_split, data_files = splits.train, splits.val, splits.files

    build_kwargs = dict(build_overrides or {})
    search = None
    if recipe.search:
        search = run_search(entry, recipe, train_split, val_split, strategy, out / runs.SEARCH, resume, score_trials)
        recipe, chosen_kwargs = split_overrides(recipe, search["best"])
        build_kwargs.update(chosen_kwargs)

    run = json.loads(
        json.dumps(
            {
                "model": entry.full_name,
                "recipe": runs.recipe_for_resume(recipe),
                "build_kwargs": build_kwargs,
                "limit": limit,
                "dataset": entry.tag,
                "data_files": data_files,
            }
        )
    )  # as state.json stores it: lists, not tuples
    previous = json.loads(state_path.read_text()) if resume and state_path.is_file() else {}
    if isinstance(previous.get("recipe"), dict):  # written by an older version: fields it predates at their defaults
        previous["recipe"] = runs.recipe_for_resume(previous["recipe"])
    changed = [key for key, value in run.items() if key in previous and previous[key] != value]  # older: fewer keys
    if changed:
        raise FashionZooError(
            f"{out}: --resume must continue the interrupted run with its model, options and data "
            f"files ({', '.join(changed)} differ from {state_path.name}); drop the changed options "
            "or pass the same --data-dir"
        )
    run_state = RunState(state_path, previous, run)
    verbose = verbose if verbose == 0 or sys.stderr.isatty() else 2

    start = start_weights_of(recipe) if recipe.start_from else None  # read once: fitted from, then averaged with

    def callbacks(backup_dir: Path, append: bool) -> list[keras.callbacks.Callback]:
        backup_callback = AtomicBackup(str(backup_dir), run_state.resumed)
        csv_logger = keras.callbacks.CSVLogger(str(history_path), append=append)
        return [StopOnNonFinite(backup_dir), csv_logger, run_state, backup_callback]  # the backup last: a resume
        # reruns an epoch whose row was logged (the history keeps one row per epoch), never skips one

    model, _ = fit_model(
        entry,
        recipe,
        train_split,
        val_split,
        strategy,
        build_kwargs,
        callbacks(backup, resume),
        verbose,
        photos=splits.photos,
        start=start,
    )
    if recipe.fine_tune_epochs:
        fine_tune(
            entry, model, recipe, train_split, val_split, strategy, callbacks(backup / "fine-tune", True), verbose
        )
    wall_time = run_state.total() + (search or {}).get("wall_time_s", 0.0)  # the search is part of the recipe
    dedupe_history(history_path)
    model = in_float32(entry, model, build_kwargs)
    if start is not None and recipe.start_weight:
        model = averaged_with_start(model, start, recipe.start_weight)

    weights_path = write_run_weights(model, out, entry)
    record = measure_run(
        entry,
        model,
        recipe,
        overrides,
        splits,
        search=search,
        build_kwargs=build_kwargs,
        wall_time=wall_time,
        limit=limit,
        device=device_used,
        weights_file=weights_path.name,
    ).replace(weights_sha256=sha256_file(weights_path), resumed_at=run_state.resumed_at or None)
    runs.write_record(out, record)
    write_run_figures(out, entry, record)
    runs.remove_backup(out)
    return record


def averaged_with_start(model: keras.Model, start: list[np.ndarray], share: float) -> keras.Model:
    """The trained weights averaged with the ``start`` weights the run began from, ``share`` of the latter (WiSE-FT:
    keeps what the start knew while keeping most of what fine-tuning learnt). Every weight is averaged, batch-norm
    statistics included."""
    weights = zip(model.get_weights(), start, strict=True)
    model.set_weights([(1 - share) * trained + share * kept for trained, kept in weights])
    return model
