"""The registry's record types: a training recipe, a released file, a released checkpoint."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from fashionzoo.photos.calibration import PhotoCalibration


@dataclass(frozen=True)
class Recipe:
    """Everything a training run needs to be reproduced (overrides are recorded in metrics.json)."""

    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    optimizer: str = "adam"
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0  # decoupled, applied by the optimizer
    schedule: str = "constant"  # "constant" or "cosine" (decays to 0 over the run)
    warmup_epochs: int = 0  # linear warm-up to ``lr`` before the cosine decay
    label_smoothing: float = 0.0
    xla: bool = False  # compile the training step with XLA (Keras leaves it off on CPU-only machines)
    precision: str = "float32"  # Keras dtype policy while training; "mixed_bfloat16" keeps float32 weights
    augment: tuple[str, ...] = ()  # training-time augmentation: "flip", "translate:FRACTION", "erase:PROBABILITY"
    fine_tune_epochs: int = 0  # transfer models: epochs with the backbone unfrozen, after ``epochs`` frozen
    fine_tune_lr: float = 1e-5
    val_fraction: float = 0.1
    search: dict[str, list[Any]] | None = None  # hyper-parameter space searched before training
    search_trials: int = 0
    search_folds: int = 0
    start_from: str = ""  # a released model whose weights start the run (fine-tuning), by full name
    start_weight: float = 0.0  # the share of ``start_from``'s weights averaged back in at the end (WiSE-FT)
    start_member: str = ""  # with ``start_from`` an ensemble: the member (its layer, ``seed_N``) the run starts from
    photo_share: float = 0.0  # the share of each batch drawn from the data set's photo pool (0: none)
    outlier_weight: float = 0.0  # weight of the flat target for photos of none of the classes (outlier exposure)
    photo_val_fraction: float = 0.2  # the pool's senders held out, with all their photos, for validation
    notes: str = ""

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_safe_filename(name: object) -> bool:
    """Whether ``name`` is a plain file name that stays inside the folder it is joined to.

    Only letters, digits and ``_ . + -`` are allowed, and not as a leading dot: no path separator (``/``, ``\\``),
    no ``..``, no absolute or drive path (``C:``), no hidden file, no control character.
    """
    return isinstance(name, str) and _SAFE_FILENAME.fullmatch(name) is not None and ".." not in name


@dataclass(frozen=True)
class FileRecord:
    """One released file: its name in the Hub repo, SHA-256 and size in bytes.

    Checked when created (``weights.json`` is read at import): the name must be a plain file name
    (:func:`is_safe_filename`), so that joining it to the cache or shipped folder cannot leave that folder.
    """

    filename: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not is_safe_filename(self.filename):
            raise ValueError(
                f"released file name {self.filename!r} is not a plain file name (no path separators, "
                "'..', absolute paths or leading dots)"
            )
        if not isinstance(self.sha256, str) or _SHA256.fullmatch(self.sha256) is None:
            raise ValueError(f"{self.filename}: SHA-256 {self.sha256!r} is not 64 lowercase hex digits")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"{self.filename}: size {self.size!r} is not a byte count")


def is_commit(revision: str) -> bool:
    """Whether ``revision`` is a full Hub commit hash, the only revision that pins a file."""
    return re.fullmatch(r"[0-9a-f]{40}", revision) is not None


@dataclass(frozen=True)
class WeightsRecord:
    """A released checkpoint: where it lives on the Hub, pinned, verified, what it was trained on and measured.

    ``metrics`` summarises the run on the official test file: accuracy, loss, n, params, epochs, wall_time_s,
    onnx_batch1_p50_ms. ``data_files`` are the SHA-256s of the data files the run read (the official files: the
    release refuses any other)."""

    repo_id: str
    revision: str | None  # a Hub commit hash once published; None until then (shipped copy only)
    files: dict[str, FileRecord]  # "weights", "onnx", "onnx_int8", "card", "metrics"
    metrics: dict[str, Any]
    build_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. hyper-parameters found by a search
    shipped: tuple[str, ...] = ()  # keys of ``files`` that ship inside the package
    data_files: dict[str, str] = field(default_factory=dict)
    photo_calibration: PhotoCalibration | None = None  # chosen after the release, for these very files

    def __post_init__(self) -> None:
        if self.revision is not None and not is_commit(self.revision):
            raise ValueError(f"revision {self.revision!r} is not a commit hash (40 hex digits): a branch or tag moves")

    def to_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["shipped"] = list(self.shipped)
        if self.photo_calibration is None:
            del raw["photo_calibration"]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WeightsRecord:
        raw = dict(raw)
        files = {key: FileRecord(**value) for key, value in raw.pop("files").items()}
        calibration = raw.pop("photo_calibration", None)
        return cls(
            files=files,
            shipped=tuple(raw.pop("shipped", ())),
            photo_calibration=PhotoCalibration.from_json(calibration) if calibration else None,
            **raw,
        )
