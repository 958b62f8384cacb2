"""Releasing trained runs into the package: the maintainer's side of the zoo (``fashionzoo release``).

For a finished run folder this exports the ONNX file (parity-checked against Keras), quantises it to int8 (kept only
if it loses at most half a point), measures the ONNX batch-1 latency, writes the model card, copies weights and ONNX
files into the package (``src/fashionzoo/checkpoints/``, shipped in the wheel) and the run's record, card and figures
into ``docs/models/<name>/``, records every file's SHA-256 and size in ``weights.json`` and regenerates the model
table. It refuses a run that did not read the official data files of its data set, that ran on a ``--limit``ed
subset, or that trained a transfer model on a random backbone.

Releasing is idempotent: releasing the same run again changes no byte (the latency is measured once per set of
weights, the card is a function of the run record), so the SHA-256s pinned for a Hub commit stay true. The order for
a published release: ``release`` (files complete in the run folder), ``push`` (uploads that folder), then
``release --published NAME=COMMIT`` (pins the commit; no file changes).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import atomic_open, atomic_path, sha256_file
from fashionzoo.data.datasets import DATASETS
from fashionzoo.photos.calibration import PhotoCalibration
from fashionzoo.publish.checks import RUN_FILES, check_published, check_releasable, check_test_figures
from fashionzoo.publish.reports import standard_error, write_model_card
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import all_entries, get_entry
from fashionzoo.registry.specs import FileRecord, WeightsRecord
from fashionzoo.runtime import metadata
from fashionzoo.training import runs
from fashionzoo.training.runs import RunRecord

log = logging.getLogger(__name__)

DOCS_RUN_FILES = (*RUN_FILES, runs.CARD)
"""What of a run folder goes into ``docs/models/<name>/``."""
SHIPPED = ("weights", "onnx", "onnx_int8")
"""Released files that ship inside the package (all of them: the zoo works offline)."""
TABLE_START, TABLE_END = "<!-- model-table:start -->", "<!-- model-table:end -->"


@dataclass(frozen=True)
class ReleaseTree:
    """Where releases are written: a source checkout of fashionzoo (or a copy of its layout, in tests)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "src" / "fashionzoo" / "weights.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "src" / "fashionzoo" / "checkpoints"

    @property
    def docs(self) -> Path:
        return self.root / "docs" / "models"

    @classmethod
    def source_checkout(cls) -> ReleaseTree:
        """The checkout this package is installed from in editable mode; releasing needs one."""
        root = Path(str(resources.files("fashionzoo"))).resolve().parents[1]
        if not (root / "pyproject.toml").is_file() or not (root / "src" / "fashionzoo" / "weights.json").is_file():
            raise FashionZooError(
                f"{root}: not a fashionzoo source checkout; releasing writes into one (pip "
                "install -e . from a clone, or pass --tree)"
            )
        return cls(root)


def read_manifest(tree: ReleaseTree) -> dict[str, WeightsRecord]:
    """The released weights records of ``tree`` by full name."""
    try:
        raw = json.loads(tree.manifest.read_text(encoding="utf-8"))
        return {name: WeightsRecord.from_json(value) for name, value in raw.items()}
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise FashionZooError(f"{tree.manifest}: unreadable weights manifest ({error}); restore it from git") from None


def write_manifest(tree: ReleaseTree, records: dict[str, WeightsRecord]) -> None:
    """Write ``weights.json`` in registry order, atomically."""
    order = [entry.full_name for entry in all_entries()]
    unknown = sorted(set(records) - set(order))
    if unknown:
        raise FashionZooError(f"{tree.manifest}: no registry entry for {', '.join(unknown)}")
    ordered = {name: records[name].to_json() for name in order if name in records}
    with atomic_open(tree.manifest) as handle:
        json.dump(ordered, handle, indent=2)
        handle.write("\n")


def _file_record(path: Path) -> FileRecord:
    return FileRecord(filename=path.name, sha256=sha256_file(path), size=path.stat().st_size)


def _copy(source: Path, target: Path) -> None:
    """Copy a file whole or not at all (a full disk leaves the previous release's file in place)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def check_release(run_dirs: list[Path], tree: ReleaseTree, published: dict[str, str] | None = None) -> None:
    """Refuse, in one line and before any export, a tree without a readable manifest, a run that cannot be released,
    or a ``published`` pin that is not a commit hash of one of the runs (:mod:`fashionzoo.publish.checks`)."""
    read_manifest(tree)
    names = []
    for run_dir in run_dirs:
        record = runs.read_record(run_dir)
        check_releasable(Path(run_dir), record, get_entry(record.full_name))
        names.append(record.full_name)
    check_published(published or {}, names)


def release_run(
    run_dir: str | Path, tree: ReleaseTree, *, published: str | None = None, data_dir: str | Path | None = None
) -> WeightsRecord:
    """Release one finished run into ``tree`` and return its weights record (``weights.json`` is not written here:
    :func:`release` does that once for all runs)."""
    from fashionzoo.bench.run import onnx_latency
    from fashionzoo.publish.export import describe, export_onnx, quantize_int8, write_photo_calibration

    run = Path(run_dir)
    record = runs.read_record(run)
    entry = get_entry(record.full_name)
    check_releasable(run, record, entry)
    previous = read_manifest(tree).get(entry.full_name)
    released = previous.files if previous else {}

    def unchanged(key: str, path: Path) -> bool:  # already released from these very weights: keep the file
        return key in released and path.is_file() and sha256_file(path) == released[key].sha256

    weights, onnx_path, int8_path = (
        run / record.weights_file,
        run / f"{entry.full_name}.onnx",
        run / f"{entry.full_name}.int8.onnx",
    )
    fresh = not (unchanged("weights", weights) and unchanged("onnx", onnx_path))
    if fresh:
        export_onnx(entry, onnx_path, weights=weights, data_dir=data_dir)
    check_test_figures(run, record, test_figures(entry, onnx_path, data_dir))  # before anything is written
    calibration = previous.photo_calibration if previous and unchanged("weights", weights) else None
    if calibration is None and record.photos and "uncertain_below" in record.photos:  # chosen on held-out senders
        calibration = PhotoCalibration((0.0,) * len(entry.classes), record.photos["uncertain_below"])
    write_photo_calibration(onnx_path, calibration)  # the file reads photos as the release does
    if fresh or record.onnx_latency is None:
        record = record.replace(onnx_latency=onnx_latency(onnx_path, entry, batch_size=1))
        runs.write_record(run, record)
    write_model_card(record, entry, run / runs.CARD)
    files = {"weights": weights, "onnx": onnx_path, "card": run / runs.CARD, "metrics": run / runs.METRICS}
    try:
        fp32_sha256 = sha256_file(onnx_path)  # the int8 file must be quantised from it, its calibration included
        int8_current = (
            unchanged("onnx_int8", int8_path) and describe(int8_path).get(metadata.FP32_SHA256) == fp32_sha256
        )
        if fresh or not int8_current:
            quantize_int8(entry, onnx_path, int8_path, data_dir=data_dir)
        files["onnx_int8"] = int8_path
    except FashionZooError as error:
        log.warning("%s: no int8 file released: %s", entry.full_name, error)
    for key in SHIPPED:
        if key in files:
            _copy(files[key], tree.checkpoints / files[key].name)
    for filename in DOCS_RUN_FILES:
        _copy(run / filename, tree.docs / entry.full_name / filename)
    records = {key: _file_record(path) for key, path in files.items()}
    revision = published or (previous.revision if previous and previous.files == records else None)
    test, latency = record.test, record.onnx_latency
    if test is None or latency is None:  # release_run measured both before this
        raise FashionZooError(f"{run}: the run record lacks its test figures or ONNX latency; release it again")
    return WeightsRecord(
        repo_id=f"fashionzoo/{entry.full_name}",
        revision=revision,
        files=records,
        metrics={
            "accuracy": test["accuracy"],
            "loss": test["loss"],
            "n": test["n"],
            "params": record.params,
            "epochs": record.epochs,
            "wall_time_s": record.wall_time_s,
            "onnx_batch1_p50_ms": latency["p50_ms"],
            **photo_metrics(record),
        },
        build_kwargs=record.build_kwargs,
        shipped=tuple(key for key in SHIPPED if key in records),
        data_files=DATASETS[record.dataset].content_hashes(record.data_files),
        photo_calibration=calibration,  # a calibration holds for the model it was chosen for
    )


def test_figures(entry: ModelEntry, onnx_path: Path, data_dir: str | Path | None) -> dict[str, float]:
    """Accuracy, loss and n of an ONNX file (ONNX Runtime, probabilities as exported) on the official test file of
    ``entry``'s data set; a test file that is not the official one is refused."""
    from fashionzoo.data.loading import load_split
    from fashionzoo.models.evaluation import metrics_from_probs
    from fashionzoo.photos.convert import to_model_input
    from fashionzoo.publish.export import PARITY_BATCH
    from fashionzoo.runtime.classifier import Classifier

    test = load_split("test", entry.tag, data_dir)
    official = {f.name: f.content_sha256 for f in DATASETS[entry.tag].files.values()}
    if not test.files or any(official.get(name) != sha for name, sha in test.files.items()):
        raise FashionZooError(
            f"{', '.join(test.files) or 'the test file'}: not the official {entry.tag} test file; pass --data-dir "
            "with the official files to release"
        )
    run = Classifier(onnx_path, name=entry.full_name).run
    x = to_model_input(test.images, entry.input_spec)
    probs = np.concatenate([run(x[i : i + PARITY_BATCH]) for i in range(0, len(x), PARITY_BATCH)])
    return {key: metrics_from_probs(probs, test.labels, entry.classes)[key] for key in ("accuracy", "loss", "n")}


def release(
    run_dirs: list[Path],
    tree: ReleaseTree,
    *,
    published: dict[str, str] | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, WeightsRecord]:
    """Release runs into ``tree``, then write ``weights.json`` and the model table; returns the new records."""
    published = published or {}
    check_release(run_dirs, tree, published)
    manifest = read_manifest(tree)
    done = {}
    for run_dir in run_dirs:
        name = runs.read_record(run_dir).full_name
        done[name] = manifest[name] = release_run(run_dir, tree, published=published.get(name), data_dir=data_dir)
        log.info("%s: released (%.4f test accuracy)", name, done[name].metrics["accuracy"])
        write_manifest(tree, manifest)  # after each run: a later failure keeps the earlier releases consistent
    write_model_table(tree, manifest)
    return done


def photo_metrics(record: RunRecord) -> dict[str, float]:
    """The held-out senders' photo figures a release records for weights that trained on a photo pool."""
    if not record.photos:
        return {}
    keys = ("phone_balanced_accuracy", "auroc_in_vs_out_of_class", "auroc_right_vs_wrong")
    return {f"photos_{key}": record.photos[key] for key in keys if key in record.photos}


def _table_rows(manifest: dict[str, WeightsRecord], tag: str, docs_prefix: str) -> list[str]:
    rows = []
    for entry in all_entries():
        if entry.tag != tag:
            continue
        reported = f"{entry.reported_accuracy:.2%}" if entry.reported_accuracy else "-"
        aliases = ", ".join(f"`{alias}`" for alias in entry.full_aliases)
        weights = manifest.get(entry.full_name)
        if weights is None:
            figures = f"no checkpoint ({entry.why_unreleased}) | - | {reported} | {entry.recipe.epochs} | - | -"
            params = entry.params
        else:
            m = weights.metrics
            card = f"{docs_prefix}models/{entry.full_name}/README.md"
            error = standard_error(m["accuracy"], m["n"])
            latency = f"{m['onnx_batch1_p50_ms']:.3f} ms" if m.get("onnx_batch1_p50_ms") else "-"
            figures = (
                f"[{m['accuracy']:.2%}]({card}) ± {error:.2%} | {m['loss']:.4f} | {reported} | "
                f"{m['epochs']} | {m['wall_time_s'] / 60:.1f} min | {latency}"
            )
            params = m["params"]
        rows.append(f"| `{entry.full_name}` | {aliases} | {entry.reference} | {params:,} | {figures} |")
    return rows


def model_table(manifest: dict[str, WeightsRecord], docs_prefix: str = "docs/") -> str:
    """The Markdown model tables (Fashion-MNIST, then MNIST weights) with the note that explains them."""
    header = [
        "| model | aliases | reference | params | test accuracy ± standard error | test loss | reported | epochs "
        "| train time here | ONNX batch-1 latency |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    note = (
        "Test accuracy: the official test file (10,000 images), with its binomial standard error. "
        "Reported: what the reference experiment published (its own split). Train time: wall time of the full "
        "recipe on the 2-core CPU machine where the zoo is built. ONNX batch-1 latency: ONNX Runtime p50 on that "
        "CPU (default session), measured at release."
    )
    fashion = "\n".join([*header, *_table_rows(manifest, "fashion-mnist", docs_prefix)])
    digits = "\n".join([*header, *_table_rows(manifest, "mnist", docs_prefix)])
    photos = "\n".join([*header, *_table_rows(manifest, "photos", docs_prefix)])
    return (
        f"{fashion}\n\nMNIST weights (tag `.mnist`, official MNIST test file):\n\n{digits}\n\n"
        "Weights that have also seen real photos (tag `.photos`: Fashion-MNIST and the CC0 clothing-photos pool; "
        f"official Fashion-MNIST test file):\n\n{photos}\n\n{note}"
    )


def write_model_table(tree: ReleaseTree, manifest: dict[str, WeightsRecord]) -> None:
    """Write ``docs/models.md`` and the README's block between the model-table markers (if the README has one)."""
    with atomic_open(tree.root / "docs" / "models.md") as handle:
        handle.write(f"# Models\n\nGenerated by `fashionzoo release`.\n\n{model_table(manifest, '')}\n")
    table = model_table(manifest)
    readme = tree.root / "README.md"
    if readme.is_file() and TABLE_START in (text := readme.read_text(encoding="utf-8")):
        before, rest = text.split(TABLE_START, 1)
        after = rest.split(TABLE_END, 1)[1]
        with atomic_open(readme) as handle:
            handle.write(f"{before}{TABLE_START}\n{table}\n{TABLE_END}{after}")
