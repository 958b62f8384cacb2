"""The training loop: data, augmentation, compile, fit, fine-tuning."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from fashionzoo.core.devices import choose
from fashionzoo.core.errors import FashionZooError
from fashionzoo.data.datasets import DATASETS
from fashionzoo.data.loading import SPLIT_SEED, Split, load_split, train_val_split
from fashionzoo.models.builders import build
from fashionzoo.models.loading import load, predict_probs
from fashionzoo.photos.convert import to_model_input
from fashionzoo.photos.pool import PoolPhotos, read_pool, split_by_sender
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import get_entry
from fashionzoo.registry.specs import Recipe


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
            steps.append(
                keras.layers.RandomTranslation(
                    float(args[0]), float(args[0]), fill_mode="constant", interpolation="nearest", seed=seed + 1
                )
            )
        elif kind == "erase":
            steps.append(keras.layers.RandomErasing(float(args[0]), fill_value=0.0, value_range=(0, 1), seed=seed + 2))
        else:
            raise FashionZooError(f"unknown augmentation {spec!r} (use 'flip', 'translate:F' or 'erase:P')")
    return keras.Sequential(steps, name="augment")


class Splits(NamedTuple):
    """What a run trains, chooses and is measured on, and the SHA-256 of every data file read."""

    train: Split
    val: Split
    test: Split
    files: dict[str, str]
    photos: PoolPhotos | None = None  # the photo pool's training photos, for a data set with one
    photos_val: PoolPhotos | None = None  # its held-out senders' photos


def _dataset(
    split: Split, entry: ModelEntry, batch_size: int, seed: int | None, augment: tuple[str, ...] = ()
) -> tf.data.Dataset:
    """A tf.data pipeline of (inputs as ``entry``'s weights expect them, one-hot labels); shuffled with ``seed`` and
    augmented when given."""
    inputs = to_model_input(split.images, entry.input_spec)
    data = tf.data.Dataset.from_tensor_slices((inputs, tf.one_hot(split.labels, len(entry.classes))))
    if seed is not None:
        data = data.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    return _augmented(data.batch(batch_size), augment, seed)


def _augmented(data: tf.data.Dataset, augment: tuple[str, ...], seed: int | None) -> tf.data.Dataset:
    if augment:
        layers = augmenter(augment, seed or 0)
        data = data.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def photos_per_batch(recipe: Recipe) -> int:
    """How many of a batch's images are photos of the pool."""
    return min(max(1, round(recipe.photo_share * recipe.batch_size)), recipe.batch_size - 1)


def _with_photos(
    split: Split, photos: PoolPhotos, entry: ModelEntry, recipe: Recipe, seed: int
) -> tuple[tf.data.Dataset, int]:
    """Endless batches of :func:`photos_per_batch` photos (targets: the classes each allows, none for a photo of none
    of the ten) and Fashion-MNIST images for the rest (one-hot), each source reshuffled on every pass, augmented
    alike; and the steps of an epoch, one pass over the photos."""
    per_batch = photos_per_batch(recipe)
    images = tf.data.Dataset.from_tensor_slices(
        (to_model_input(split.images, entry.input_spec), tf.one_hot(split.labels, len(entry.classes)))
    )
    pool = tf.data.Dataset.from_tensor_slices(
        (to_model_input(photos.pixels, entry.input_spec), photos.allowed.astype(np.float32))
    )
    images = images.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).repeat()
    pool = pool.shuffle(len(photos), seed=seed + 1, reshuffle_each_iteration=True).repeat()
    mixed = tf.data.Dataset.zip(images.batch(recipe.batch_size - per_batch), pool.batch(per_batch)).map(
        lambda a, b: (tf.concat([a[0], b[0]], 0), tf.concat([a[1], b[1]], 0))
    )
    return _augmented(mixed, recipe.augment, seed), photo_steps(recipe, photos)


def photo_steps(recipe: Recipe, photos: PoolPhotos) -> int:
    """The steps of an epoch with photos: one pass over them, rounded up to whole groups of
    :data:`STEPS_PER_EXECUTION` (Keras runs an endless data set's steps in such groups; the schedule decays over
    exactly the steps run)."""
    steps = -(-len(photos) // photos_per_batch(recipe))
    return -(-steps // STEPS_PER_EXECUTION) * STEPS_PER_EXECUTION


class AllowedClassesLoss(keras.losses.Loss):
    """Cross-entropy for targets that allow several classes: minus the log of the allowed classes' summed
    probability (a one-hot target: ordinary cross-entropy), with label smoothing as Keras applies it (towards a flat
    target). A target that allows no class (a photo of none of the ten) is trained towards the flat target alone,
    weighted by ``outlier_weight`` (outlier exposure), so that such photos come out unsure."""

    def __init__(self, label_smoothing: float, outlier_weight: float, name: str = "allowed_classes") -> None:
        super().__init__(name=name)
        self.label_smoothing, self.outlier_weight = label_smoothing, outlier_weight

    def call(self, y_true: Any, y_pred: Any) -> Any:
        probs = keras.ops.clip(keras.ops.cast(y_pred, "float32"), 1e-7, 1.0)
        allowed = keras.ops.cast(y_true, "float32")
        flat = -keras.ops.mean(keras.ops.log(probs), axis=-1)
        chosen = -keras.ops.log(keras.ops.clip(keras.ops.sum(allowed * probs, axis=-1), 1e-7, 1.0))
        inside = (1.0 - self.label_smoothing) * chosen + self.label_smoothing * flat
        return keras.ops.where(keras.ops.sum(allowed, axis=-1) > 0, inside, self.outlier_weight * flat)

    def get_config(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing, "outlier_weight": self.outlier_weight, "name": self.name}


def allowed_accuracy(y_true: Any, y_pred: Any) -> Any:
    """1 where the top class is one the target allows (a one-hot target: ordinary accuracy), 0 elsewhere."""
    top = keras.ops.one_hot(keras.ops.argmax(y_pred, axis=-1), keras.ops.shape(y_pred)[-1])
    return keras.ops.max(keras.ops.cast(y_true, "float32") * top, axis=-1)


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


def in_float32(entry: ModelEntry, model: keras.Model, build_kwargs: dict[str, Any]) -> keras.Model:
    """``model`` rebuilt in float32 with its trained weights: what is saved, measured and exported."""
    if model.compute_dtype == "float32":
        return model
    rebuilt = build(entry, **build_kwargs)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def check_recipe(name: str, recipe: Recipe) -> None:
    """Refuse, in one line and before any work, a recipe that cannot run: a seed numpy cannot take, or no epoch left
    after the warm-up."""
    if not 0 <= recipe.seed < 2**32:
        raise FashionZooError(f"{name}: seed {recipe.seed} is not a whole number from 0 to {2**32 - 1}")
    if recipe.photo_share and recipe.batch_size < 2:
        raise FashionZooError(f"{name}: a batch mixing photos and images holds at least 2; use --batch-size 2 or more")
    if recipe.search and (recipe.start_from or recipe.photo_share):
        raise FashionZooError(f"{name}: a recipe cannot both search and start from weights or mix in photos")
    if recipe.epochs < 1 or (recipe.schedule == "cosine" and recipe.epochs <= recipe.warmup_epochs):
        least = recipe.warmup_epochs + 1 if recipe.schedule == "cosine" else 1
        raise FashionZooError(
            f"{name}: {recipe.epochs} epoch(s) leave nothing to train after the recipe's {recipe.warmup_epochs} "
            f"warm-up epoch(s); use --epochs {least} or more"
        )


def start_weights(name: str) -> dict[str, str]:
    """The released weights a fine-tuning starts from, as a data file: their name and SHA-256."""
    entry = get_entry(name)
    released = entry.weights.files.get("weights") if entry.weights else None
    if released is None:
        raise FashionZooError(f"{entry.full_name}: no released weights to start from; release it first")
    return {released.filename: released.sha256}


def start_weights_of(recipe: Recipe) -> list[np.ndarray]:
    """The weights a fine-tuning starts from: the released ``recipe.start_from``'s, or those of its member
    ``recipe.start_member`` when it is an ensemble."""
    start = load(recipe.start_from, test_time_flip=False)
    return (start.get_layer(recipe.start_member) if recipe.start_member else start).get_weights()


def _compile(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    lr: Any = recipe.lr
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else recipe.lr,
            decay_steps=recipe.epochs * steps_per_epoch - warmup_steps,
            warmup_target=recipe.lr if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    elif recipe.schedule != "constant" or warmup_steps:
        raise FashionZooError(
            f"unknown learning-rate schedule {recipe.schedule!r} (use 'constant' or 'cosine'; warm-up needs 'cosine')"
        )
    config: dict[str, Any] = {"learning_rate": lr}
    if recipe.weight_decay:
        config["weight_decay"] = recipe.weight_decay
    if recipe.momentum:
        config.update(momentum=recipe.momentum, nesterov=True)
    optimizer = keras.optimizers.get({"class_name": recipe.optimizer, "config": config})
    if recipe.photo_share:
        loss: keras.losses.Loss = AllowedClassesLoss(recipe.label_smoothing, recipe.outlier_weight)
        metrics: list[Any] = [keras.metrics.MeanMetricWrapper(allowed_accuracy, name="accuracy")]
    else:
        loss, metrics = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing), ["accuracy"]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=STEPS_PER_EXECUTION,
        jit_compile=recipe.xla or "auto",
    )


def _fit_epochs(
    entry: ModelEntry,
    model: keras.Model,
    recipe: Recipe,
    train: Split,
    val: Split,
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
    *,
    seed: int,
    first_epoch: int,
    last_epoch: int,
    photos: PoolPhotos | None = None,
) -> keras.callbacks.History:
    """``model.fit`` from ``first_epoch`` to ``last_epoch`` on the (augmented, shuffled with ``seed``) training
    split, with ``photos`` mixed in by the recipe, validated on ``val``."""
    steps = None
    if photos is not None and recipe.photo_share:
        training, steps = _with_photos(train, photos, entry, recipe, seed)
    else:
        training = _dataset(train, entry, recipe.batch_size, seed, recipe.augment)
    return model.fit(
        training,
        steps_per_epoch=steps,
        validation_data=_dataset(val, entry, 1024, None),
        initial_epoch=first_epoch,
        epochs=last_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself; Keras warned on every run that it ignores its own shuffle
    )


def fit_model(
    entry: ModelEntry,
    recipe: Recipe,
    train: Split,
    val: Split,
    strategy: tf.distribute.Strategy,
    build_kwargs: dict[str, Any],
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
    photos: PoolPhotos | None = None,
    start: list[np.ndarray] | None = None,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build (with the ``start`` weights of a fine-tuning, :func:`start_weights_of`), compile and fit
    ``recipe.epochs`` epochs."""
    keras.utils.set_random_seed(recipe.seed)
    steps = photo_steps(recipe, photos) if photos is not None and recipe.photo_share else None
    with strategy.scope(), _dtype_policy(recipe.precision):
        model = build(entry, **build_kwargs)
        if start is not None:
            model.set_weights(start)
        _compile(model, recipe, steps_per_epoch=steps or -(-len(train) // recipe.batch_size))
    history = _fit_epochs(
        entry,
        model,
        recipe,
        train,
        val,
        callbacks,
        verbose,
        seed=recipe.seed,
        first_epoch=0,
        last_epoch=recipe.epochs,
        photos=photos,
    )
    return model, history


def fine_tune(
    entry: ModelEntry,
    model: keras.Model,
    recipe: Recipe,
    train: Split,
    val: Split,
    strategy: tf.distribute.Strategy,
    callbacks: list[keras.callbacks.Callback],
    verbose: int,
) -> None:
    """Phase two of a transfer recipe: every layer trainable (batch-norm statistics stay frozen: the backbone
    runs in inference mode), ``fine_tune_epochs`` more epochs at the constant ``fine_tune_lr``."""
    with strategy.scope():
        for layer in model.layers:
            layer.trainable = True
        _compile(model, recipe.replace(lr=recipe.fine_tune_lr, schedule="constant", warmup_epochs=0), 1)
    _fit_epochs(
        entry,
        model,
        recipe,
        train,
        val,
        callbacks,
        verbose,
        seed=recipe.seed + 1,
        first_epoch=recipe.epochs,
        last_epoch=recipe.epochs + recipe.fine_tune_epochs,
    )


def predict_split(entry: ModelEntry, model: keras.Model, split: Split) -> np.ndarray:
    """Class probabilities for a split, its images prepared as ``entry``'s weights expect them."""
    return predict_probs(model, split.images, input_spec=entry.input_spec)


def load_splits(entry: ModelEntry, recipe: Recipe, data_dir: str | os.PathLike | None, limit: int | None) -> Splits:
    """The training, validation and test splits of ``entry``'s data set (the first ``limit`` training images and a
    fifth as many for validation, with ``limit``), its photo pool's photos split by sender (``limit`` of them, with
    ``limit``), and the SHA-256 of each data file read: the released weights a fine-tuning starts from included."""
    started_from = start_weights(recipe.start_from) if recipe.start_from else {}
    full_train = load_split("train", entry.tag, data_dir)
    test = load_split("test", entry.tag, data_dir)
    train_split, val_split = train_val_split(full_train, recipe.val_fraction)
    if limit:
        train_split, val_split = train_split.head(limit), val_split.head(max(limit // 5, 1))
    files = {**full_train.files, **test.files, **started_from}
    pool = DATASETS[entry.tag].photo_pool
    if pool is None:
        return Splits(train_split, val_split, test, files)
    log.info("%s: converting the %s photos as predict does", entry.full_name, pool.name)  # the CLI's progress
    photos, photo_files = read_pool(pool, limit, seed=SPLIT_SEED)
    photos_train, photos_val = split_by_sender(photos, recipe.photo_val_fraction, seed=SPLIT_SEED)
    return Splits(train_split, val_split, test, {**files, **photo_files}, photos_train, photos_val)


def predict_photos(entry: ModelEntry, model: keras.Model, splits: Splits) -> np.ndarray:
    """Class probabilities for the held-out senders' photos."""
    assert splits.photos_val is not None
    return predict_probs(model, splits.photos_val.pixels, input_spec=entry.input_spec)
