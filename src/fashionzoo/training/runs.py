"""The run folder that ``fashionzoo train`` writes: its file names and its typed record (``metrics.json``).

One owner for the format: training writes a :class:`RunRecord` through :func:`write_record`; releasing, loading a
local weights file, exporting, pushing and the model table read it back through :func:`read_record`. No
TensorFlow here.

A run folder holds ``<full name>.weights.h5``, ``metrics.json``, ``history.csv``, ``curves.png``,
``confusion.png`` and the model card ``README.md``; while the run is going, ``state.json`` and ``backup/`` (the last
completed epoch, for ``--resume``), and ``search.json`` for recipes with a hyper-parameter search. Releasing adds
the ONNX files and the measured ONNX latency. ``.fashionzoo-run`` marks it as the zoo's (:data:`MARKER`): a folder
with files and no such mark (nor a run record) is never written into, and in a run folder only the zoo's own files
are ever removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open, check_can_write, remove_stale_temporaries, sha256_file
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
MARKER = ".fashionzoo-run"
"""An empty file that marks a folder as a run folder of the zoo, written before anything else; also the file locked
(``filelock``: an OS lock, gone with the process that held it) while a run writes the folder."""
BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")
"""What Keras' ``BackupAndRestore`` writes in :data:`BACKUP` (and in its ``fine-tune/`` folder)."""
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


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a run folder of the zoo: marked (:data:`MARKER`), or written by a version before the
    mark (a run record, or the state of an unfinished run)."""
    if (folder / MARKER).is_file():
        return True
    try:
        read_record(folder)
        return True
    except FashionZooError:
        pass
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "epochs_done" in state


def check_run_folder(out: Path) -> None:
    """Refuse, in one line and before touching anything, a folder with files in it that is not a run folder: the
    user's own files (``--out .``, ``--out ~``) are never removed or replaced."""
    if out.is_dir() and any(os.scandir(out)) and not is_run_folder(out):  # a link: the folder it names
        raise FashionZooError(
            f"{out}: a folder with files in it that is not a fashionzoo run folder; nothing in it was touched: "
            "train into a new or empty folder, or into a run folder"
        )


@contextlib.contextmanager
def claimed(out: Path) -> Iterator[None]:
    """Hold ``out`` as this process's run folder for the block: checked (:func:`check_run_folder`), marked, and
    locked, so that a run of another process into it is refused at once in one line (a claim inside a claim of
    the same folder, in the same process, holds it too). A block that fails having written nothing leaves neither
    the mark nor the folder it made."""
    check_run_folder(out)
    made = not out.exists()
    check_can_write(out / MARKER)  # the folder, made if missing; a link named like the mark refused
    lock = filelock.FileLock(out.resolve() / MARKER, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise FashionZooError(
            f"{out}: another fashionzoo train is writing this run folder now; wait for it to end or train into "
            "another folder"
        ) from None
    try:
        yield
    except BaseException:
        try:  # the mark is the lock file: removed while still held, no other run can lock it in between
            if lock.lock_counter == 1:  # the outermost claim
                _unmark_if_untouched(out, made)
        finally:
            lock.release()
        raise
    lock.release()


def _unmark_if_untouched(out: Path, made: bool) -> None:
    """Remove the mark of a run folder that holds nothing else, and the folder if this run made it."""
    with contextlib.suppress(OSError):
        if [entry.name for entry in os.scandir(out)] == [MARKER]:
            (out / MARKER).unlink()
            if made:
                out.rmdir()


def remove_backup(out: Path) -> None:
    """Remove what the zoo wrote in the run's :data:`BACKUP` folder (and its ``fine-tune/``), and the folders if
    that leaves them empty; anything else in them stays."""
    for folder in (out / BACKUP / "fine-tune", out / BACKUP):
        _remove_files(folder, BACKUP_FILES)


def _remove_files(folder: Path, names: tuple[str, ...]) -> None:
    """Remove ``names`` and dead writers' temporary files from ``folder``, then the folder if it is left empty."""
    for name in names:
        (folder / name).unlink(missing_ok=True)
    remove_stale_temporaries(folder)
    with contextlib.suppress(OSError):  # missing, or holding someone else's files
        folder.rmdir()


def _remove_members(out: Path) -> None:
    """Remove the zoo's files of every earlier member run (``members/seed-N`` run folders), and the folders left
    empty; files that are not the zoo's stay."""
    members = out / MEMBERS
    if not members.is_dir():
        return
    for member in members.glob("seed-*"):
        if member.is_dir() and not member.is_symlink() and is_run_folder(member):
            remove_backup(member)
            weights = tuple(path.name for path in member.glob("*.weights.h5"))
            _remove_files(member, (METRICS, STATE, HISTORY, SEARCH, CURVES, CONFUSION, CARD, MARKER, *weights))
    with contextlib.suppress(OSError):
        members.rmdir()


def prepare_run_folder(out: Path, work: str, resume: bool) -> None:
    """Make ``out`` ready for a run whose work in progress is the folder ``work`` (:data:`BACKUP`, or
    :data:`MEMBERS` for an ensemble). ``resume`` needs that folder; a fresh run removes what an earlier run wrote
    there and its record, state and history, so that nothing of an earlier run passes for this one's. A folder that
    is not a run folder (:func:`check_run_folder`) or cannot be written fails in one line, before any work; the
    folder is marked as a run folder."""
    check_run_folder(out)
    if resume and not (out / work).is_dir():
        raise FashionZooError(f"{out}: nothing to resume (no {work}/ folder); run without --resume to start afresh")
    check_can_write(out / METRICS)  # the folder, made if missing
    (out / MARKER).touch()
    if not resume:
        if work == BACKUP:
            remove_backup(out)
        else:
            _remove_members(out)
        for stale in (STATE, HISTORY, METRICS):
            (out / stale).unlink(missing_ok=True)
