"""Classifying image files, the same for every classifier: options checked, files read ahead of the model, results
in input order, the released photo calibration (:class:`FileClassifier`, which :class:`~fashionzoo.runtime.Classifier`
and :class:`~fashionzoo.runtime.keras_classifier.KerasClassifier` extend)."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.data.datasets import InputSpec
from fashionzoo.photos.calibration import PhotoCalibration, apply_calibration
from fashionzoo.photos.convert import ImageBytes
from fashionzoo.photos.segmentation import SEVERAL_GARMENTS
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.runtime.loading import Item, Loaded, default_workers, load_all
from fashionzoo.runtime.results import Failure, Prediction

UNCERTAIN_BELOW = 0.5
"""Predictions whose top probability is below this are marked ``uncertain``, for weights without a
:class:`~fashionzoo.photos.calibration.PhotoCalibration` of their own (which chooses its threshold on the
development photos; docs/photos.md has how well it separates photos of none of the ten classes)."""


def check_options(top_k: int, batch_size: int, workers: int | None, uncertain_below: float | None) -> None:
    """Refuse options that cannot mean anything, in one line each, instead of clamping them silently."""
    for name, value in (("top_k", top_k), ("batch_size", batch_size), ("workers", workers)):
        if value is None:
            continue
        try:
            whole = None if isinstance(value, bool) else operator.index(value)  # numpy integers too
        except TypeError:
            whole = None
        if whole is None or whole < 1:
            raise FashionZooError(f"{name} must be a whole number of at least 1, not {value!r}")
    if uncertain_below is not None and not 0.0 <= uncertain_below <= 1.0:  # NaN fails this too
        raise FashionZooError(f"uncertain_below must be a probability from 0 to 1, not {uncertain_below!r}")


def classify_files(
    items: Iterable[Item] | str | os.PathLike | ImageBytes,
    predict: Callable[[np.ndarray], np.ndarray],
    classes: tuple[str, ...],
    top_k: int = 1,
    batch_size: int = 256,
    workers: int | None = None,
    uncertain_below: float | None = None,
    pipeline: str = "fashion-mnist",
    calibration: PhotoCalibration | None = None,
) -> Iterator[Prediction | Failure]:
    """Classify image files with ``predict`` (uint8 (N, 28, 28) -> probabilities), ``batch_size`` files at a time,
    each file turned into a 28x28 image by ``pipeline`` (the weights' ``InputSpec.pipeline``).

    An :class:`~fashionzoo.photos.convert.ImageBytes` (a file held in memory, such as an upload) is classified as a
    file of its name would be. Results come in input order; a file that cannot be read or converted yields a
    :class:`Failure`, and
    Failure items in ``items`` (from :func:`expand_inputs`) pass through. Files are decoded and preprocessed by
    ``workers`` threads, or processes for many files (default: :func:`default_workers`). The weights'
    ``calibration`` shifts the probabilities of photos (not of images already in the data set's format). A
    prediction whose top probability is below ``uncertain_below`` (default: the calibration's, else
    :data:`UNCERTAIN_BELOW`), or of a photo showing several separate garments (with its ``uncertain_reason``), is
    marked ``uncertain``. Memory stays bounded by the batch. Options that cannot mean
    anything, and an input that is no file or list, are refused at once, not when the results are iterated.
    """
    check_options(top_k, batch_size, workers, uncertain_below)
    if isinstance(items, (str, bytes, os.PathLike, ImageBytes)):  # one file, not the characters of its name
        items = [items]
    elif not isinstance(items, Iterable):
        raise FashionZooError(f"classify takes a file, a folder or a list of them, not {type(items).__name__}")
    if uncertain_below is None:
        uncertain_below = calibration.uncertain_below if calibration else UNCERTAIN_BELOW
    return _classified(
        items, predict, classes, min(top_k, len(classes)), batch_size, workers, uncertain_below, pipeline, calibration
    )


def _classified(
    items: Iterable[Item],
    predict: Callable[[np.ndarray], np.ndarray],
    classes: tuple[str, ...],
    k: int,
    batch_size: int,
    workers: int | None,
    uncertain_below: float,
    pipeline: str,
    calibration: PhotoCalibration | None,
) -> Iterator[Prediction | Failure]:
    """:func:`classify_files`' results, its options checked: ``k`` classes per prediction."""
    pending: list[Loaded | Failure] = []

    def flush() -> Iterator[Prediction | Failure]:
        loaded = [entry for entry in pending if not isinstance(entry, Failure)]
        probs = iter(_probabilities(predict, loaded, calibration))
        for entry in pending:
            if isinstance(entry, Failure):
                yield entry
                continue
            row = next(probs)
            if not np.isfinite(row).all():
                yield Failure(
                    entry[0],
                    f"{entry[0]}: the model gave non-finite probabilities (NaN or infinity); the model file is broken",
                )
                continue
            best = np.argsort(-row, kind="stable")[:k]
            ranked = tuple((classes[i], round(float(row[i]), 6)) for i in best)
            several = (
                f"{entry[3]} separate garments in the photo; crop it to one" if entry[3] >= SEVERAL_GARMENTS else None
            )
            yield Prediction(
                entry[0],
                int(best[0]),
                ranked[0][0],
                ranked[0][1],
                ranked,
                uncertain=bool(row[best[0]] < uncertain_below) or several is not None,
                uncertain_reason=several,
                model_input=entry[1],
                top_k_class_ids=tuple(int(i) for i in best),
            )
        pending.clear()

    count = 0
    for entry in load_all(items, default_workers() if workers is None else workers, batch_size, pipeline):
        if isinstance(entry, Failure) and not count:
            yield entry  # nothing waits before it: report at once
            continue
        pending.append(entry)
        count += not isinstance(entry, Failure)
        if count == batch_size:
            yield from flush()
            count = 0
    yield from flush()


def released_calibration(
    entry: ModelEntry, other_weights: bool = False, calibrated: bool = True
) -> PhotoCalibration | None:
    """The released weights' photo calibration, which holds for their own files only: None for ``other_weights``
    (a local ONNX file, which brings its own in its metadata, or Keras file) or when ``calibrated`` is off."""
    return entry.weights.photo_calibration if entry.weights and calibrated and not other_weights else None


def _probabilities(
    predict: Callable[[np.ndarray], np.ndarray], loaded: list[Loaded], calibration: PhotoCalibration | None
) -> np.ndarray:
    """``predict``'s probabilities for the loaded files, the photos' shifted by ``calibration``."""
    if not loaded:
        return np.zeros((0, 0), dtype=np.float32)
    probs = predict(np.stack([entry[1] for entry in loaded]))
    return apply_calibration(probs, [entry[2] for entry in loaded], calibration)


class FileClassifier:
    """What classifying files takes from a classifier: its classes, input spec, photo calibration and
    ``predict_probs``; :meth:`classify` is the same for the ONNX :class:`Classifier` and the Keras one."""

    classes: tuple[str, ...]
    input_spec: InputSpec
    photo_calibration: PhotoCalibration | None

    def predict_probs(
        self, images: np.ndarray, batch_size: int = 256, *, scenes: str | Sequence[str | None] | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def classify(
        self,
        paths: Iterable[Item] | str | os.PathLike | ImageBytes,
        top_k: int = 1,
        batch_size: int = 256,
        workers: int | None = None,
        uncertain_below: float | None = None,
    ) -> Iterator[Prediction | Failure]:
        """Classify image files (or one file) in order, ``batch_size`` at a time, photos with
        :attr:`photo_calibration`; unreadable files yield a :class:`Failure` (the other arguments are
        :func:`classify_files`', which refuses options that cannot mean anything at once)."""
        return classify_files(
            paths,
            lambda images: self.predict_probs(images, batch_size),
            self.classes,
            top_k,
            batch_size,
            workers,
            uncertain_below,
            self.input_spec.pipeline,
            self.photo_calibration,
        )
