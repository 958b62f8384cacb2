"""What may be published and released: the checks ``push`` (:func:`fashionzoo.publish.hub.push`) and ``release``
(:mod:`fashionzoo.publish.release`) make before any upload or export, each refusal one line naming the run and the
way out, and whether a file is the released one (:func:`matches`). No TensorFlow here: a wrong run or pin is refused
at once."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import sha256_file
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import FileRecord, is_commit
from fashionzoo.training import runs

RUN_FILES = (runs.METRICS, runs.CURVES, runs.CONFUSION, runs.HISTORY)
"""What a finished run folder holds besides its weights (the model card is written by ``release``)."""


def matches(path: Path, record: FileRecord) -> bool:
    """Whether ``path`` is the released file: its size, then its SHA-256."""
    return path.stat().st_size == record.size and sha256_file(path) == record.sha256


def parse_published(items: Iterable[str]) -> dict[str, str]:
    """``--published NAME=COMMIT`` items as {NAME: COMMIT} (the commits are checked by :func:`check_published`)."""
    pins: dict[str, str] = {}
    for item in items:
        name, found, commit = item.partition("=")
        if not found:
            raise FashionZooError(
                "--published takes NAME=COMMIT, the full 40-digit commit hash 'push' printed, e.g. cnn=0123abcd..."
            )
        if name in pins:
            raise FashionZooError(f"--published {name}: given twice; pin each model once")
        pins[name] = commit
    return pins


def check_published(published: Mapping[str, str], names: Collection[str]) -> None:
    """Refuse a pinned revision that is not a full commit hash (a branch or tag moves), or a pin for none of the
    models released (``names``: their full names), which would pin nothing."""
    for name, revision in published.items():
        if not is_commit(revision):
            raise FashionZooError(f"{name}={revision}: publish a full 40-digit commit hash (a branch or tag moves)")
        if name not in names:
            raise FashionZooError(
                f"{name}={revision}: {name} is none of the runs released here ({', '.join(names)}); pin a run by "
                "its model's full name"
            )


def _refuse_random_backbone(run_dir: Path, record: runs.RunRecord, entry: ModelEntry) -> None:
    if record.is_random_backbone(entry):
        raise FashionZooError(
            f"{run_dir}: trained with a random backbone (a pipeline check), never released or published; train "
            "it with ImageNet backbone weights (--backbone-weights)"
        )


def check_releasable(run_dir: Path, record: runs.RunRecord, entry: ModelEntry) -> None:
    """Refuse a run that cannot be released: unfinished, with files missing, weights its record did not measure,
    misnamed, trained with a random backbone or on other data than the official files (or a ``--limit``)."""
    if (run_dir / runs.BACKUP).exists():
        raise FashionZooError(
            f"{run_dir}: an unfinished run (its {runs.BACKUP}/ folder is still there); finish it "
            f"with 'fashionzoo train {entry.full_name} --out {run_dir} --resume'"
        )
    missing = [name for name in (record.weights_file, *RUN_FILES) if not (run_dir / name).is_file()]
    if missing:
        raise FashionZooError(f"{run_dir}: {', '.join(missing)} missing; train the model again into this folder")
    if not record.measured(run_dir / record.weights_file):
        raise FashionZooError(
            f"{run_dir}: {record.weights_file} is not the file its record measured (another run "
            "wrote it?); train the model again into this folder"
        )
    if record.weights_file != f"{entry.full_name}.weights.h5":  # released files are named by the weights' full name
        raise FashionZooError(
            f"{run_dir}: its weights file {record.weights_file} is not named after "
            f"{entry.full_name}; train it again with 'fashionzoo train {entry.full_name}'"
        )
    _refuse_random_backbone(run_dir, record, entry)
    if not record.uses_official_data():
        why = f"--limit {record.limit}" if record.limit else f"data files that are not the official {record.dataset}"
        raise FashionZooError(
            f"{run_dir}: trained on {why}; train it with 'fashionzoo train {entry.full_name}' on "
            "the official files before releasing"
        )


ACCURACY_TOLERANCE = 0.0005
"""How far a run record's test accuracy may be from the one ``release`` measures on the same weights (5 of the
10,000 test images: a record measured on another device may see a borderline image otherwise)."""
LOSS_TOLERANCE = 0.001
"""The same for the test loss (measured: within 1e-8 on the released weights)."""


def check_test_figures(run_dir: Path, record: runs.RunRecord, measured: Mapping[str, float]) -> None:
    """Refuse a record whose test figures are not those ``release`` measured on its weights (``measured``: accuracy,
    loss and n on the official test file): an edited ``metrics.json`` is never published."""
    test = record.test
    if (
        test["n"] != measured["n"]
        or abs(test["accuracy"] - measured["accuracy"]) > ACCURACY_TOLERANCE
        or abs(test["loss"] - measured["loss"]) > LOSS_TOLERANCE
    ):
        raise FashionZooError(
            f"{run_dir / runs.METRICS}: records test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f} on "
            f"{test['n']} images, but its weights measure {measured['accuracy']:.4f}, {measured['loss']:.4f} on the "
            f"{measured['n']} official test images; nothing released (train the model again into this folder)"
        )


def check_pushable(run_dir: Path, record: runs.RunRecord, entry: ModelEntry) -> None:
    """Refuse to publish a run of another model than ``entry``, one trained with a random backbone, or one whose
    files are not ``entry``'s released files (release it first, so that the commit holds them)."""
    if record.full_name != entry.full_name:
        raise FashionZooError(
            f"{run_dir}: a run of {record.full_name}, not {entry.full_name}; pass --run with a run of "
            f"{entry.full_name}, or push {record.full_name}"
        )
    _refuse_random_backbone(run_dir, record, entry)
    if entry.weights is None:
        raise FashionZooError(
            f"{entry.full_name} is not released in this package; run 'fashionzoo release {run_dir}' "
            "first, so that the commit holds the released files"
        )
    differ = [
        file.filename
        for file in entry.weights.files.values()
        if not (run_dir / file.filename).is_file() or not matches(run_dir / file.filename, file)
    ]
    if differ:
        raise FashionZooError(
            f"{run_dir}: {', '.join(differ)} missing or not the released file (weights.json); release "
            f"this run ('fashionzoo release {run_dir}') before pushing it"
        )
