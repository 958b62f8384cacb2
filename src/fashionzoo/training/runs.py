"""The run folder that ``fashionzoo train`` writes: its file names and its typed record (``metrics.json``).

One owner for the format: training writes a :class:`RunRecord` through :func:`write_record`; releasing, loading a
local weights file, exporting, pushing and the model table read it back through :func:`read_record`. No
TensorFlow here.

A run folder holds ``<full name>.weights.h5``, ``metrics.json``, ``history.csv``, ``curves.png``,
``confusion.png`` and the model card ``README.md``; while the run is going, ``state.json`` and ``backup/`` (the last
completed epoch, for ``--resume``), and ``search.json`` for recipes with a hyper-parameter search. Releasing adds
the ONNX files and the measured ONNX latency.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open, check_can_write, sha256_file
from fashionzoo.data.datasets import DATASETS, full_name
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import Recipe

METRICS = "metrics.json"
STATE = "state.json"
SEARCH = "search.json"
HISTORY = "history.csv"
CURVES = "curves.png"
CONFUSION = "confusion.png"
CARD = "README.md"
BACKUP = "backup"
MEMBERS = "members"
"""The folder of an ensemble's run that holds one member run per seed (``seed-N``)."""
PUBLISHED = ("*.weights.h5", "*.onnx", CARD, METRICS, HISTORY, "*.png")
"""What ``push`` uploads from a released run folder."""

RECIPE_DEFAULTS: dict[str, Any] = json.loads(
    json.dumps({f.name: f.default for f in dataclasses.fields(Recipe) if f.default is not dataclasses.MISSING})
)
"""Every recipe field with a default, as JSON stores it. A record written before a field existed holds the field at
its default, which is what that run did (``precision``: float32): :attr:`RunRecord.full_recipe`."""


@dataclass(frozen=True)
class RunRecord:
    """What a training run did and measured: the content of ``metrics.json``.

    ``test`` and ``val`` are :func:`fashionzoo.models.evaluation.metrics_from_probs` results (``val`` keeps accuracy,
    loss and n, and for test-time-flipping models the figure without the flip); ``data_files`` maps each data file
    read to its SHA-256; ``weights_sha256`` is that of the weights file measured (records before it have none);
    ``resumed_at`` the epochs an interrupted run continued from (``--resume``: the same recipe and data, but the
    data order and random draws start again, so it is not bit for bit the uninterrupted run);
    ``onnx_latency`` is added by the release. ``recipe`` is kept as written (:attr:`full_recipe` fills in fields a
    record predates), so that a record and the model card made from it read back byte for byte."""

    model: str
    params: int
    build_kwargs: dict[str, Any]
    recipe: dict[str, Any]
    overrides: dict[str, Any]
    search: dict[str, Any] | None
    dataset: str
    data_files: dict[str, str]
    split_seed: int
    n_train: int
    n_val: int
    epochs: int
    wall_time_s: float
    seed: int
    test: dict[str, Any]
    val: dict[str, Any]
    test_time_flip: bool
    weights_file: str
    versions: dict[str, str]
    machine: dict[str, Any]
    limit: int | None = None
    onnx_latency: dict[str, Any] | None = None
    weights_sha256: str | None = None
    resumed_at: list[int] | None = None
    photos: dict[str, Any] | None = None  # figures on the photo pool's held-out senders (photos.pool.score)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as written

    @property
    def full_name(self) -> str:
        """The released name of these weights: ``model``, or ``model.dataset`` off the default data set."""
        return full_name(self.model, self.dataset)

    @property
    def full_recipe(self) -> dict[str, Any]:
        """The recipe with every field: one a record predates at its default, which is what that run did
        (``precision``: float32)."""
        return RECIPE_DEFAULTS | self.recipe

    def measured(self, weights: Path) -> bool:
        """Whether ``weights`` is the file this run measured (by SHA-256; a record from before ``weights_sha256``
        cannot tell, and is taken at its word)."""
        return self.weights_sha256 is None or sha256_file(weights) == self.weights_sha256

    def uses_official_data(self) -> bool:
        """Whether the run read the official files of its data set (every file, by SHA-256) on its whole
        training file (no ``--limit``)."""
        spec = DATASETS.get(self.dataset)
        return spec is not None and spec.is_official(self.data_files) and self.limit is None

    def is_random_backbone(self, entry: ModelEntry) -> bool:
        """A transfer model trained with a random backbone: a pipeline check, never released or published."""
        return entry.needs_backbone_weights and not self.build_kwargs.get("backbone_weights")

    def replace(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for optional in ("onnx_latency", "weights_sha256", "resumed_at"):
            if raw[optional] is None:
                del raw[optional]
        return {**raw, **self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: Path) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(raw))
        if missing:
            raise FashionZooError(
                f"{source}: not a fashionzoo run record (missing {', '.join(missing)}); train the "
                "model again into this folder"
            )
        from fashionzoo.training.record_types import checked_record

        record = checked_record(cls, {k: v for k, v in raw.items() if k in known}, source)
        return record.replace(extra={k: v for k, v in raw.items() if k not in known})


def recipe_for_resume(recipe: Recipe | dict[str, Any]) -> dict[str, Any]:
    """The recipe fields a resumed run must share with the interrupted one (the prose ``notes`` may change), from a
    recipe or from one stored in ``state.json``, where a field it predates is at its default."""
    fields = recipe if isinstance(recipe, dict) else json.loads(json.dumps(dataclasses.asdict(recipe)))
    return {k: v for k, v in (RECIPE_DEFAULTS | fields).items() if k != "notes"}


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """The run's ``metrics.json`` as a :class:`RunRecord`; a one-line error if it is missing or unreadable."""
    path = Path(run_dir) / METRICS
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FashionZooError(f"{path}: no such file; train the model into {path.parent} first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FashionZooError(f"{path}: unreadable run record ({error}); train the model again") from None
    if not isinstance(raw, dict):
        raise FashionZooError(f"{path}: not a fashionzoo run record (not a JSON object); train the model again")
    return RunRecord.from_json(raw, path)


def write_record(run_dir: str | os.PathLike, record: RunRecord) -> Path:
    """Write ``metrics.json`` atomically, byte-for-byte the same for the same record."""
    path = Path(run_dir) / METRICS
    with atomic_open(path) as handle:
        json.dump(record.to_json(), handle, indent=2)
        handle.write("\n")
    return path


def record_for_weights(weights_path: str | os.PathLike) -> RunRecord | None:
    """The record of the run that wrote ``weights_path``: its folder's ``metrics.json`` if that is a run record
    naming the file and, when the record has it, the file's SHA-256 (a weights file copied elsewhere, beside someone
    else's metrics.json, or rewritten by a later run, has none)."""
    path = Path(weights_path)
    if not (path.parent / METRICS).is_file():
        return None
    try:
        record = read_record(path.parent)
    except FashionZooError:
        return None
    if record.weights_file != path.name:
        return None
    return record if record.measured(path) else None


def prepare_run_folder(out: Path, work: str, resume: bool) -> None:
    """Make ``out`` ready for a run whose work in progress is the folder ``work`` (:data:`BACKUP`, or
    :data:`MEMBERS` for an ensemble). ``resume`` needs that folder; a fresh run removes it and an earlier run's
    record, state and history, so that nothing of an earlier run passes for this one's. A folder that cannot be
    written fails in one line, before any work."""
    if resume and not (out / work).is_dir():
        raise FashionZooError(f"{out}: nothing to resume (no {work}/ folder); run without --resume to start afresh")
    check_can_write(out / METRICS)  # the folder, made if missing
    if not resume:
        shutil.rmtree(out / work, ignore_errors=True)
        for stale in (STATE, HISTORY, METRICS):
            (out / stale).unlink(missing_ok=True)
