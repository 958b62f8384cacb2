"""The training entrypoint: reproduce a registry model's checkpoint from its recorded recipe.

Writes into the run folder: ``<name>.weights.h5``, ``history.csv``, ``curves.png``, ``confusion.png``,
``metrics.json`` and a model card ``README.md``. A ``backup/`` folder holds the last completed epoch
(weights, optimizer and schedule state) so ``resume=True`` continues an interrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import itertools
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

from fashionzoo import __version__, runs
from fashionzoo._files import FashionZooError, atomic_open, atomic_path, check_can_write, reason, sha256_file
from fashionzoo.data import SPLIT_SEED, Split, load_split, train_val_split
from fashionzoo.devices import choose
from fashionzoo.evaluation import metrics_from_probs
from fashionzoo.machine import machine_info
from fashionzoo.models import build, inference_model, predict_probs
from fashionzoo.models import load as load_trained
from fashionzoo.preprocessing import to_model_input
from fashionzoo.registry import ModelEntry, Recipe, with_tag
from fashionzoo.reports import read_history, write_run_figures
from fashionzoo.runs import RunRecord


def distribution_strategy(device: str) -> tuple[tf.distribute.Strategy, str]:
    """``cpu``, ``cuda`` or ``auto``: a MirroredStrategy over the GPUs (one GPU: OneDeviceStrategy),
    else the CPU; asking for ``cuda`` without a visible GPU falls back to the CPU with a notice."""
    gpus = tf.config.list_logical_devices("GPU")
    if choose(device, bool(gpus), "TensorFlow", "pip install 'fashionzoo[cuda]'") == "cuda":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(), f"cuda x{len(gpus)}"
        return tf.distribute.OneDeviceStrategy("/gpu:0"), "cuda"
    if gpus:  # asked for the CPU on a machine with a GPU: hide the GPU from this run
        return tf.distribute.OneDeviceStrategy("/cpu:0"), "cpu"
    return tf.distribute.get_strategy(), "cpu"  # the default strategy: no multi-device iterator overhead


log = logging.getLogger(__name__)
STEPS_PER_EXECUTION = int(os.environ.get("FASHIONZOO_STEPS_PER_EXECUTION", "32"))  # fewer Python round trips


def augmenter(specs: tuple[str, ...], seed: int) -> keras.Sequential:
    """Training-time augmentation layers from recipe specs: ``flip`` (horizontal), ``translate:FRACTION``
    (random shifts up to that fraction of the size, empty pixels black), ``erase:PROBABILITY`` (random erasing)."""
    steps = []
    for spec in specs:
        kind, *args = spec.split(":")
        if kind == "flip":
            steps.append(keras.layers.RandomFlip("horizontal", seed=seed))
        elif kind == "translate":
            steps.append(keras.layers.RandomTranslation(float(args[0]), float(args[0]), fill_mode="constant",
                                                        interpolation="nearest", seed=seed + 1))  # fmt: skip
        elif kind == "erase":
            steps.append(keras.layers.RandomErasing(float(args[0]), fill_value=0.0, value_range=(0, 1), seed=seed + 2))
        else:
            raise FashionZooError(f"unknown augmentation {spec!r} (use 'flip', 'translate:F' or 'erase:P')")
    return keras.Sequential(steps, name="augment")


def _dataset(
    split: Split, entry: ModelEntry, batch_size: int, seed: int | None, augment: tuple[str, ...] = ()
) -> tf.data.Dataset:
    """A tf.data pipeline of (inputs as ``entry``'s weights expect them, one-hot labels); shuffled with ``seed`` and
    augmented when given."""
    inputs = to_model_input(split.images, entry.preprocessing)
    data = tf.data.Dataset.from_tensor_slices((inputs, tf.one_hot(split.labels, len(entry.classes))))
    if seed is not None:
        data = data.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augment:
        layers = augmenter(augment, seed or 0)
        data = data.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Layers built inside compute with Keras dtype policy ``name`` (``mixed_bfloat16``: bfloat16 arithmetic,
    float32 weights); the global policy is restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _in_float32(entry: ModelEntry, model: keras.Model, build_kwargs: dict[str, Any]) -> keras.Model:
    """``model`` rebuilt in float32 with its trained weights: what is saved, measured and exported."""
    if model.compute_dtype == "float32":
        return model
    rebuilt = build(entry, **build_kwargs)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _compile(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    lr: Any = recipe.lr
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else recipe.lr, decay_steps=recipe.epochs * steps_per_epoch - warmup_steps,
            warmup_target=recipe.lr if warmup_steps else None, warmup_steps=warmup_steps)  # fmt: skip
    elif recipe.schedule != "constant" or warmup_steps:
        raise FashionZooError(f"unknown learning-rate schedule {recipe.schedule!r} (use 'constant' or 'cosine'; "
                              "warm-up needs 'cosine')")  # fmt: skip
    config: dict[str, Any] = {"learning_rate": lr}
    if recipe.weight_decay:
        config["weight_decay"] = recipe.weight_decay
    if recipe.momentum:
        config.update(momentum=recipe.momentum, nesterov=True)
    optimizer = keras.optimizers.get({"class_name": recipe.optimizer, "config": config})
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], steps_per_execution=STEPS_PER_EXECUTION,
                  jit_compile=recipe.xla or "auto")


def _fit_epochs(
    entry: ModelEntry, model: keras.Model, recipe: Recipe, train: Split, val: Split,
    callbacks: list[keras.callbacks.Callback], verbose: int, *, seed: int, first_epoch: int, last_epoch: int,
) -> keras.callbacks.History:  # fmt: skip
    """``model.fit`` from ``first_epoch`` to ``last_epoch`` on the (augmented, shuffled with ``seed``) training
    split, validated on ``val``."""
    return model.fit(
        _dataset(train, entry, recipe.batch_size, seed, recipe.augment),
        validation_data=_dataset(val, entry, 1024, None),
        initial_epoch=first_epoch, epochs=last_epoch, callbacks=callbacks, verbose=verbose,
        shuffle=False,  # the dataset shuffles itself; Keras warned on every run that it ignores its own shuffle
    )  # fmt: skip


def _fit(
    entry: ModelEntry, recipe: Recipe, train: Split, val: Split, strategy: tf.distribute.Strategy,
    build_kwargs: dict[str, Any], callbacks: list[keras.callbacks.Callback], verbose: int,
) -> tuple[keras.Model, keras.callbacks.History]:  # fmt: skip
    keras.utils.set_random_seed(recipe.seed)
    with strategy.scope(), _dtype_policy(recipe.precision):
        model = build(entry, **build_kwargs)
        _compile(model, recipe, steps_per_epoch=-(-len(train) // recipe.batch_size))
    history = _fit_epochs(entry, model, recipe, train, val, callbacks, verbose, seed=recipe.seed, first_epoch=0,
                          last_epoch=recipe.epochs)  # fmt: skip
    return model, history


def _fine_tune(
    entry: ModelEntry, model: keras.Model, recipe: Recipe, train: Split, val: Split, strategy: tf.distribute.Strategy,
    callbacks: list[keras.callbacks.Callback], verbose: int,
) -> None:  # fmt: skip
    """Phase two of a transfer recipe: every layer trainable (batch-norm statistics stay frozen: the backbone
    runs in inference mode), ``fine_tune_epochs`` more epochs at the constant ``fine_tune_lr``."""
    with strategy.scope():
        for layer in model.layers:
            layer.trainable = True
        _compile(model, recipe.replace(lr=recipe.fine_tune_lr, schedule="constant", warmup_epochs=0), 1)
    _fit_epochs(entry, model, recipe, train, val, callbacks, verbose, seed=recipe.seed + 1, first_epoch=recipe.epochs,
                last_epoch=recipe.epochs + recipe.fine_tune_epochs)  # fmt: skip


def _split_overrides(recipe: Recipe, params: dict[str, Any]) -> tuple[Recipe, dict[str, Any]]:
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    return (recipe.replace(**{k: v for k, v in params.items() if k in recipe_fields}),
            {k: v for k, v in params.items() if k not in recipe_fields})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training of a search: the recipe overrides, and which rows of the search data it trains and scores on."""

    params: dict[str, Any]
    train_rows: np.ndarray
    val_rows: np.ndarray


ScoreTrials = Callable[[ModelEntry, Recipe, Split, list[Trial], str], list[float]]
"""Runs trials of a search (``label`` names them in progress lines) and returns their validation accuracies in
order: :func:`score_trials_in_process` here, or ``fashionzoo.distributed`` on a Ray cluster."""


def score_trial(entry: ModelEntry, recipe: Recipe, data: Split, trial: Trial, strategy: tf.distribute.Strategy
                ) -> float:  # fmt: skip
    """Train ``recipe`` with ``trial.params`` on its training rows of ``data``; its validation rows' accuracy."""
    trial_recipe, kwargs = _split_overrides(recipe, trial.params)
    train = Split(data.images[trial.train_rows], data.labels[trial.train_rows], data.files)
    val = Split(data.images[trial.val_rows], data.labels[trial.val_rows], data.files)
    model, _ = _fit(entry, trial_recipe, train, val, strategy, kwargs, [], verbose=0)
    model = _in_float32(entry, model, kwargs)
    return metrics_from_probs(_predict(entry, model, val), val.labels, entry.classes)["accuracy"]


def score_trials_in_process(
    entry: ModelEntry, recipe: Recipe, data: Split, trials: list[Trial], label: str, *,
    strategy: tf.distribute.Strategy,
) -> list[float]:  # fmt: skip
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
    entry: ModelEntry, recipe: Recipe, train: Split, val: Split, strategy: tf.distribute.Strategy,
    score_trials: ScoreTrials | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Random search of ``recipe.search`` scored on the validation split, then k-fold cross-validation
    of the best setting on train+validation. Returns the chosen setting and every score. ``score_trials`` runs
    the trainings (default: one after another in this process)."""
    score = score_trials or functools.partial(score_trials_in_process, strategy=strategy)
    data = Split(np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels]), train.files)
    train_rows, val_rows = np.arange(len(train)), np.arange(len(train), len(data))
    settings = search_trials(recipe)
    accuracies = score(entry, recipe, data, [Trial(params, train_rows, val_rows) for params in settings],
                       "search trial")  # fmt: skip
    scores = [{"params": params, "val_accuracy": a} for params, a in zip(settings, accuracies, strict=True)]
    best = max(scores, key=lambda s: s["val_accuracy"])["params"]
    result: dict[str, Any] = {"best": best, "trials": scores}
    if recipe.search_folds > 1:
        folds = np.array_split(np.random.default_rng(SPLIT_SEED).permutation(len(data)), recipe.search_folds)
        fold_trials = [Trial(best, np.flatnonzero(~np.isin(np.arange(len(data)), held_out)), held_out)
                       for held_out in folds]  # fmt: skip
        fold_scores = score(entry, recipe, data, fold_trials, "cross-validation fold")
        result["cross_validation"] = {"folds": fold_scores, "mean": float(np.mean(fold_scores)),
                                      "std": float(np.std(fold_scores))}  # fmt: skip
    return result


class _StopOnNonFinite(keras.callbacks.Callback):
    """Stops at the first non-finite loss, before the epoch's backup can overwrite the last good one."""

    def __init__(self, backup: Path) -> None:
        super().__init__()
        self.backup = backup

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise FashionZooError(f"the loss became {float(loss)} (batch {batch + 1}); train again with a lower --lr "
                                  f"(the last completed epoch is kept in {self.backup})")  # fmt: skip


class _AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with each backup written whole, in one file, and renamed over the last one.

    Keras writes ``latest.weights.h5`` in place (a full disk left it truncated and the run could not resume) and
    the completed epoch in a second file: a run killed between the two resumed one epoch too early or too late,
    training an epoch twice or skipping one. Here the epoch is an attribute of the weights file, written to a
    temporary file and renamed: the previous backup stays whole until the new one is. A backup that cannot be read
    is a one-line error. ``on_resume`` is told the epoch a resumed run continues from."""

    EPOCHS_DONE = "fashionzoo_epochs_done"

    def __init__(self, backup_dir: str, on_resume: Callable[[int], None]) -> None:
        super().__init__(backup_dir, delete_checkpoint=False)  # kept until the run is complete: a crash in a later
        self.on_resume = on_resume  # phase still resumes

    def _save_model(self) -> None:  # Keras' hook for writing one backup
        with atomic_path(self._weights_path, suffix=".weights.h5") as weights:
            self.model.save_weights(weights)
            with h5py.File(weights, "a") as file:
                file.attrs[self.EPOCHS_DONE] = self._current_epoch

    def _load_model(self) -> None:  # Keras' hook for reading the backup, if any, when training begins
        super()._load_model()  # the weights, and the epoch of a backup written before the attribute existed
        if os.path.exists(self._weights_path):
            with h5py.File(self._weights_path, "r") as file:
                if self.EPOCHS_DONE in file.attrs:
                    self.model._initial_epoch = int(file.attrs[self.EPOCHS_DONE])
            epoch = self.model._initial_epoch
            if epoch is not None and epoch < self.params.get("epochs", epoch + 1):  # this phase has work left
                self.on_resume(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        self.model._initial_epoch = None  # Keras keeps it: a later fit (the fine-tuning phase) would start there

    def on_train_begin(self, logs: dict | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as error:
            raise FashionZooError(f"{self._weights_path}: the backup cannot be read ({reason(error, first_line=True)}"
                                  "); train again without --resume") from None  # fmt: skip


class _RunState(keras.callbacks.Callback):
    """Keeps ``state.json`` (completed epochs, accumulated wall time, the epochs resumed from) in step with the
    backup."""

    def __init__(self, path: Path, previous: dict[str, Any], run: dict[str, Any]) -> None:
        super().__init__()
        self.path, self.run, self.started = path, run, time.monotonic()
        self.elapsed: float = previous.get("wall_time_s", 0.0)
        self.resumed_at: list[int] = list(previous.get("resumed_at", []))

    def total(self) -> float:
        return self.elapsed + time.monotonic() - self.started

    def resumed(self, epoch: int) -> None:
        self.resumed_at.append(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with atomic_open(self.path) as handle:
            json.dump({"epochs_done": epoch + 1, "wall_time_s": self.total(), "resumed_at": self.resumed_at,
                       **self.run}, handle)  # fmt: skip


def strip_optimizer_state(path: Path) -> None:
    """Rewrite a Keras ``.weights.h5`` file without its optimizer group (a third of the size), atomically."""
    with h5py.File(path, "r") as source:
        if "optimizer" not in source:
            return
        with atomic_path(path, suffix=".weights.h5") as tmp, h5py.File(tmp, "w") as target:
            for key in source:
                if key != "optimizer":
                    source.copy(source[key], target, key)
            target.attrs.update(source.attrs)


def _save_weights(model: keras.Model, out: Path, entry: ModelEntry) -> Path:
    """Write the run's weights file (``<full name>.weights.h5``) atomically, without optimizer state."""
    path = out / f"{entry.full_name}.weights.h5"
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    strip_optimizer_state(path)
    return path


def _dedupe_history(path: Path) -> None:
    """A resumed run may log an epoch twice (killed between logging and backup): keep the last row."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = {line.split(",", 1)[0]: line for line in lines[1:]}
    with atomic_open(path) as handle:
        handle.write("\n".join([lines[0], *rows.values()]) + "\n")


def _predict(entry: ModelEntry, model: keras.Model, split: Split) -> np.ndarray:
    """Class probabilities for a split, its images prepared as ``entry``'s weights expect them."""
    return predict_probs(model, split.images, preprocessing=entry.preprocessing)


def _record(
    entry: ModelEntry, model: keras.Model, recipe: Recipe, overrides: dict[str, Any], *, search: dict | None,
    build_kwargs: dict[str, Any], data_files: dict[str, str], train: Split, val: Split, test: Split,
    wall_time: float, limit: int | None, device: str, weights_file: str,
) -> RunRecord:  # fmt: skip
    """Measure the served model (what ``load()`` returns) on test and validation: the run's record."""
    served = inference_model(entry, model)
    test_metrics = metrics_from_probs(_predict(entry, served, test), test.labels, entry.classes)
    val_metrics = metrics_from_probs(_predict(entry, served, val), val.labels, entry.classes)
    val_summary = {k: val_metrics[k] for k in ("accuracy", "loss", "n")}
    if entry.test_time_flip:  # the validation figure that justifies the test-time flip
        plain = metrics_from_probs(_predict(entry, model, val), val.labels, entry.classes)
        val_summary["without_test_time_flip"] = {k: plain[k] for k in ("accuracy", "loss")}
    return RunRecord(
        model=entry.name, params=int(model.count_params()), build_kwargs=build_kwargs,
        recipe=dataclasses.asdict(recipe), overrides=overrides, search=search, dataset=entry.tag,
        data_files=data_files, split_seed=SPLIT_SEED, n_train=len(train), n_val=len(val),
        epochs=recipe.epochs + recipe.fine_tune_epochs, wall_time_s=round(wall_time, 1), seed=recipe.seed,
        test=test_metrics, val=val_summary, test_time_flip=entry.test_time_flip, weights_file=weights_file,
        versions={"fashionzoo": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
                  "numpy": np.__version__, "python": platform.python_version()},
        machine=machine_info(device), limit=limit,
    )  # fmt: skip


def _search(entry: ModelEntry, recipe: Recipe, train: Split, val: Split, strategy: tf.distribute.Strategy,
            path: Path, resume: bool, score_trials: ScoreTrials | None) -> dict[str, Any]:  # fmt: skip
    """The recipe's hyper-parameter search, or the one an interrupted run already finished (``search.json``)."""
    if resume and path.is_file():
        return json.loads(path.read_text())
    started = time.monotonic()
    search = search_hyperparameters(entry, recipe, train, val, strategy, score_trials)
    search["wall_time_s"] = round(time.monotonic() - started, 1)
    with atomic_open(path) as handle:
        json.dump(search, handle, indent=2)
    return search


def _splits(entry: ModelEntry, recipe: Recipe, data_dir: str | os.PathLike | None, limit: int | None
            ) -> tuple[Split, Split, Split, dict[str, str]]:  # fmt: skip
    """The training, validation and test splits of ``entry``'s data set (the first ``limit`` training images and a
    fifth as many for validation, with ``limit``), and the SHA-256 of each data file read."""
    full_train = load_split("train", entry.tag, data_dir)
    test = load_split("test", entry.tag, data_dir)
    train_split, val_split = train_val_split(full_train, recipe.val_fraction)
    if limit:
        train_split, val_split = train_split.head(limit), val_split.head(max(limit // 5, 1))
    return train_split, val_split, test, {**full_train.files, **test.files}


def _write_mean_history(histories: list[dict[str, list[float]]], path: Path) -> None:
    """``history.csv`` of an ensemble: its members' histories averaged epoch by epoch."""
    columns, epochs = list(histories[0]), min(len(history["epoch"]) for history in histories)
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for epoch in range(epochs):
            writer.writerow([int(histories[0]["epoch"][epoch]) if column == "epoch"
                             else float(np.mean([history[column][epoch] for history in histories]))
                             for column in columns])  # fmt: skip


MEMBERS = "members"
"""The folder of an ensemble's run that holds one member run per seed (``seed-N``)."""


def _train_ensemble(entry: ModelEntry, out: Path, overrides: dict[str, Any], *, resume: bool,
                    data_dir: str | os.PathLike | None, device: str, limit: int | None, verbose: int
                    ) -> RunRecord:  # fmt: skip
    """Train each member of an ensemble entry (builder ``ensemble``) into ``out/members/seed-N`` with the member's
    recipe and ``overrides``, then measure the ensemble of their weights and write the run folder. With ``resume``,
    a finished member (its record, no ``backup/``) is kept when its recipe and data match, and an interrupted one
    continues. The history is the members' mean, epoch by epoch."""
    if "seed" in overrides:
        raise FashionZooError(f"{entry.full_name}: its members' seeds are the entry's ({entry.build_kwargs['seeds']}); "
                              "drop --seed / --seeds")  # fmt: skip
    if resume and not (out / MEMBERS).is_dir():
        raise FashionZooError(f"{out}: nothing to resume (no {MEMBERS}/ folder); run without --resume to start afresh")
    member = with_tag(entry.build_kwargs["member"], entry.tag)
    member_recipe = member.recipe.replace(**overrides)
    recipe = member_recipe.replace(notes=entry.recipe.notes)  # what the record says: the members' recipe
    check_can_write(out / runs.METRICS)
    if not resume:  # a fresh run retrains every member: none of an earlier run's may pass for this one's
        shutil.rmtree(out / MEMBERS, ignore_errors=True)
        for stale in (out / runs.HISTORY, out / runs.METRICS):
            stale.unlink(missing_ok=True)
    _, device_used = distribution_strategy(device)
    train_split, val_split, test, data_files = _splits(entry, recipe, data_dir, limit)
    model = build(entry)
    histories, wall_time = [], 0.0
    for seed in entry.build_kwargs["seeds"]:
        folder = out / MEMBERS / f"seed-{seed}"
        wanted = runs.recipe_for_resume(member_recipe.replace(seed=seed))
        if resume and (folder / runs.METRICS).is_file() and not (folder / runs.BACKUP).is_dir():
            record = runs.read_record(folder)
            if (record.full_name, runs.recipe_for_resume(record.recipe), record.data_files, record.limit) != (
                    member.full_name, wanted, data_files, limit) or not record.measured(folder / record.weights_file):
                raise FashionZooError(f"{folder}: this finished member was trained with another model, recipe, "
                                      "data or --limit, or its weights file is not the one it measured; delete it, or "
                                      "train the ensemble without --resume")  # fmt: skip
        else:
            log.info("%s: member seed %d into %s", entry.full_name, seed, folder)
            record = train(member, folder, seed=seed, resume=resume and (folder / runs.BACKUP).is_dir(),
                           data_dir=data_dir, device=device, limit=limit, verbose=verbose, **overrides)
        trained = load_trained(member, folder / record.weights_file, test_time_flip=False)
        model.get_layer(f"seed_{seed}").set_weights(trained.get_weights())
        histories.append(read_history(folder / runs.HISTORY))
        wall_time += record.wall_time_s
    _write_mean_history(histories, out / runs.HISTORY)
    weights_path = _save_weights(model, out, entry)
    record = _record(entry, model, recipe, overrides, search=None, build_kwargs=dict(entry.build_kwargs),
                     data_files=data_files, train=train_split, val=val_split, test=test, wall_time=wall_time,
                     limit=limit, device=device_used, weights_file=weights_path.name
                     ).replace(weights_sha256=sha256_file(weights_path))  # fmt: skip
    runs.write_record(out, record)
    write_run_figures(out, entry, record)
    return record


def train(
    model: str | ModelEntry,
    out_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str = "auto",
    limit: int | None = None,
    fine_tune_epochs: int | None = None,
    build_overrides: dict[str, Any] | None = None,
    verbose: int = 1,
    score_trials: ScoreTrials | None = None,
) -> RunRecord:
    """Train a registry model (an entry or a name: ``cnn-small.mnist``, or ``cnn-small`` with ``dataset="mnist"``)
    with its recipe, overrides recorded, and write the run folder (:mod:`fashionzoo.runs`); returns its record.
    ``score_trials`` runs the trainings of a recipe's search (default: in this process)."""
    entry = with_tag(model, dataset)
    overrides = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                   "fine_tune_epochs": fine_tune_epochs}.items() if v is not None}
    recipe = entry.recipe.replace(**overrides)
    out = Path(out_dir)
    if entry.builder == "ensemble":
        return _train_ensemble(entry, out, overrides, resume=resume, data_dir=data_dir, device=device, limit=limit,
                               verbose=verbose)  # fmt: skip
    backup, state_path, history_path = out / runs.BACKUP, out / runs.STATE, out / runs.HISTORY
    if resume and not backup.is_dir():
        raise FashionZooError(f"{out}: nothing to resume (no backup/ folder); run without --resume to start afresh")
    check_can_write(out / runs.METRICS)  # the folder, made if missing: a one-line error before any work
    if not resume:  # a fresh run: nothing of an earlier one may pass for this one's (its record above all)
        shutil.rmtree(backup, ignore_errors=True)
        for stale in (state_path, history_path, out / runs.METRICS):
            stale.unlink(missing_ok=True)
    strategy, device_used = distribution_strategy(device)
    train_split, val_split, test, data_files = _splits(entry, recipe, data_dir, limit)

    build_kwargs = dict(build_overrides or {})
    search = None
    if recipe.search:
        search = _search(entry, recipe, train_split, val_split, strategy, out / runs.SEARCH, resume, score_trials)
        recipe, chosen_kwargs = _split_overrides(recipe, search["best"])
        build_kwargs.update(chosen_kwargs)

    run = json.loads(json.dumps({"model": entry.full_name, "recipe": runs.recipe_for_resume(recipe),
                                 "build_kwargs": build_kwargs, "limit": limit, "dataset": entry.tag,
                                 "data_files": data_files}))  # as state.json stores it: lists, not tuples
    previous = json.loads(state_path.read_text()) if resume and state_path.is_file() else {}
    if isinstance(previous.get("recipe"), dict):  # written by an older version: fields it predates at their defaults
        previous["recipe"] = runs.recipe_for_resume(previous["recipe"])
    changed = [key for key, value in run.items() if key in previous and previous[key] != value]  # older: fewer keys
    if changed:
        raise FashionZooError(f"{out}: --resume must continue the interrupted run with its model, options and data "
                              f"files ({', '.join(changed)} differ from {state_path.name}); drop the changed options "
                              "or pass the same --data-dir")  # fmt: skip
    run_state = _RunState(state_path, previous, run)
    verbose = verbose if verbose == 0 or sys.stderr.isatty() else 2

    def callbacks(backup_dir: Path, append: bool) -> list[keras.callbacks.Callback]:
        backup_callback = _AtomicBackup(str(backup_dir), run_state.resumed)
        csv_logger = keras.callbacks.CSVLogger(str(history_path), append=append)
        return [_StopOnNonFinite(backup_dir), csv_logger, run_state, backup_callback]  # the backup last: a resume
        # reruns an epoch whose row was logged (the history keeps one row per epoch), never skips one

    model, _ = _fit(entry, recipe, train_split, val_split, strategy, build_kwargs, callbacks(backup, resume), verbose)
    if recipe.fine_tune_epochs:
        _fine_tune(entry, model, recipe, train_split, val_split, strategy, callbacks(backup / "fine-tune", True),
                   verbose)
    wall_time = run_state.total() + (search or {}).get("wall_time_s", 0.0)  # the search is part of the recipe
    _dedupe_history(history_path)
    model = _in_float32(entry, model, build_kwargs)

    weights_path = _save_weights(model, out, entry)
    record = _record(entry, model, recipe, overrides, search=search, build_kwargs=build_kwargs,
                     data_files=data_files, train=train_split, val=val_split, test=test, wall_time=wall_time,
                     limit=limit, device=device_used, weights_file=weights_path.name
                     ).replace(weights_sha256=sha256_file(weights_path), resumed_at=run_state.resumed_at or None)
    runs.write_record(out, record)
    write_run_figures(out, entry, record)
    shutil.rmtree(backup, ignore_errors=True)
    return record
