"""Records and what is believed of them: the registry's released-file records (``weights.json``: names that would
leave their folder, malformed checksums and sizes are refused when a record is made); run records (``metrics.json``)
checked by type and, by ``release``, against what their weights measure; the benchmark's cache verified before use;
the photo calibration carried by the released ONNX files (issue 32, items 5 to 7 and 28)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import (
    COMMIT_A,
    REPO,
    ROOT,
    assert_cli_error,
    assert_one_line,
    failing_without_tensorflow,
    released,
    run_cli,
    sha256,
    snapshot,
)

from fashionzoo.cli import main
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import sha256_file
from fashionzoo.publish.release import ReleaseTree
from fashionzoo.registry import lookup as registry_lookup
from fashionzoo.registry.specs import FileRecord, is_safe_filename
from fashionzoo.training import runs

UNSAFE_NAMES = [
    "../lenet5.weights.h5",
    "..",
    ".",
    "a/../../b.onnx",
    "/etc/passwd",
    "sub/lenet5.onnx",
    "..\\evil.onnx",
    "C:evil.onnx",
    ".hidden.onnx",
    "",
    "name\n.onnx",
    "nul\x00.onnx",
    "~/x.onnx",
    "a" * 300,
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_file_record_refuses_names_that_leave_their_folder(name: str) -> None:
    assert not is_safe_filename(name)
    with pytest.raises(ValueError, match="not a plain file name"):
        FileRecord(filename=name, sha256=sha256(b""), size=0)


@pytest.mark.parametrize(
    "name",
    [
        "lenet5.weights.h5",
        "cnn.onnx",
        "cnn.int8.onnx",
        "mlp-64-128-64-32.onnx",
        "README.md",
        "metrics.json",
        "resnet50-tl.weights.h5",
    ],
)
def test_file_record_accepts_released_names(name: str) -> None:
    assert FileRecord(filename=name, sha256=sha256(b"x"), size=1).filename == name


@pytest.mark.parametrize(("field", "value"), [("sha256", "ABC"), ("sha256", "g" * 64), ("size", -1), ("size", "12")])
def test_file_record_refuses_malformed_checksums_and_sizes(field: str, value: object) -> None:
    fields = {"filename": "cnn.onnx", "sha256": sha256(b""), "size": 0} | {field: value}
    with pytest.raises(ValueError):
        FileRecord(**fields)


def test_weights_json_with_a_traversing_name_fails_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"filename": "../../outside.onnx", "sha256": sha256(b""), "size": 0}
    (tmp_path / "weights.json").write_text(
        json.dumps({"lenet5": {"repo_id": REPO, "revision": COMMIT_A, "files": {"onnx": record}, "metrics": {}}}),
        encoding="utf-8",
    )
    monkeypatch.setattr(registry_lookup.resources, "files", lambda package: tmp_path)

    with pytest.raises(ValueError, match="outside.onnx"):
        registry_lookup._load_weights_records()


# ========================================================================= run records, release and the bench cache


def _released_run(folder: Path, name: str = "lenet5", **changes: object) -> Path:
    """The released run of ``name`` as a run folder (its record, figures and shipped files), ``changes`` made to its
    ``metrics.json`` as an editor would."""
    shutil.copytree(ROOT / "docs" / "models" / name, folder)
    for suffix in (".weights.h5", ".onnx", ".int8.onnx"):
        shutil.copyfile(released(name + suffix), folder / (name + suffix))
    record = json.loads((folder / runs.METRICS).read_text())
    (folder / runs.METRICS).write_text(json.dumps({**record, **changes}, indent=2))
    return folder


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"params": "many"}, "params: input should be a valid integer"),
        ({"test": {}}, "test.accuracy: field required"),
        ({"test": {"accuracy": 1.5, "loss": 0.3, "n": 10000}}, "test.accuracy: input should be less than or equal"),
        ({"photos": {"uncertain_below": 7}}, "photos.uncertain_below"),
    ],
)
def test_release_refuses_a_record_of_wrong_types_before_writing_anything(
    tmp_path: Path, tree: ReleaseTree, change: dict, fragment: str
) -> None:
    """Item 5: ``"params": "many"`` was released into weights.json and then crashed (and ``list`` with it);
    ``"test": {}`` was a KeyError traceback. Now one line naming the field, and the tree as it was."""
    run = _released_run(tmp_path / "run", **change)
    before = snapshot(tree.root)
    result = CliRunner().invoke(main, ["release", str(run), "--tree", str(tree.root)])
    assert_cli_error(result, run / runs.METRICS, fragment)
    assert snapshot(tree.root) == before
    with pytest.raises(FashionZooError, match="not a fashionzoo run record"):
        runs.read_record(run)


@pytest.mark.slow  # exports and measures lenet5
def test_release_refuses_a_record_whose_weights_measure_otherwise(
    tmp_path: Path, tree: ReleaseTree, shared_data: Path
) -> None:
    """Item 5: lenet5's weights (0.8949 on the test file) under a record claiming 0.9912 were released with 99.12%
    in weights.json, docs/models.md and the ONNX metadata. Now release measures the ONNX file it exports on the
    official test file and refuses the record, in one line, before anything reaches the tree."""
    run = _released_run(tmp_path / "run", test={"accuracy": 0.9912, "loss": 0.0301, "n": 10000})
    before = snapshot(tree.root)
    result = CliRunner().invoke(main, ["release", str(run), "--tree", str(tree.root), "--data-dir", str(shared_data)])
    assert_cli_error(result, "records test accuracy 0.9912", "its weights measure 0.8949", "nothing released")
    assert snapshot(tree.root) == before


def test_eval_checks_its_weights_path_before_importing_tensorflow(tmp_path: Path) -> None:
    """Item 28: ``eval --weights`` with a wrong path imported TensorFlow (6 s) before saying so."""
    missing = tmp_path / "nowhere.weights.h5"
    stderr = failing_without_tensorflow(["eval", "lenet5", "--weights", str(missing)])
    assert_one_line(stderr, missing, "no such file")


@pytest.mark.slow  # exports and quantises lenet5, twice
def test_bench_rebuilds_a_cached_onnx_file_that_is_not_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 6: with the cached files replaced by another model's, ``bench lenet5 --weights`` measured that model;
    a truncated cache file failed forever. Now each cached file is checked against its record (weights and file
    SHA-256) before use and converted again when it is not the one recorded."""
    from fashionzoo.bench.run import onnx_files
    from fashionzoo.data.loading import load_split
    from fashionzoo.publish.export import describe
    from fashionzoo.runtime import metadata
    from fashionzoo.runtime.classifier import Classifier

    caplog.set_level(logging.WARNING, "fashionzoo.bench.cache")

    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))
    weights = tmp_path / "run" / "lenet5.weights.h5"
    weights.parent.mkdir()
    shutil.copyfile(released("lenet5.weights.h5"), weights)
    first = onnx_files("lenet5", weights, shared_data)
    assert onnx_files("lenet5", weights, shared_data) == first and not caplog.records  # verified, used as it is
    shutil.copyfile(released("mlp.onnx"), first["fp32"])  # another model's file, as an attacker or a mistake puts it
    first["int8"].write_bytes(first["int8"].read_bytes()[:1000])  # a cut-off copy
    again = onnx_files("lenet5", weights, shared_data)
    assert again == first and len(caplog.records) == 2
    for path in again.values():
        facts = describe(path)
        assert (facts[metadata.MODEL], facts[metadata.WEIGHTS_SHA256]) == ("lenet5", sha256_file(weights))
        assert Classifier(path).predict_probs(load_split("test", data_dir=shared_data).images[:5]).shape == (5, 10)


# ====================================================================== the photo calibration in the ONNX file


def _photo(folder: Path) -> Path:
    """A product photo of a T-shirt from the test file (white background: the ``plain`` scene)."""
    from fashionzoo.data.loading import load_split
    from fashionzoo.photos.synthetic import as_photo

    test = load_split("test")
    shirt = test.images[int(np.flatnonzero(test.labels == 0)[0])]
    path = folder / "tshirt.png"
    as_photo(shirt, 4.0, (12, 30, 8, 20)).save(path)
    return path


def test_predict_onnx_on_the_released_file_reads_photos_as_predict_model(tmp_path: Path, shared_data: Path) -> None:
    """Item 7: ``predict --onnx`` on the released zoo-ensemble.onnx dropped the photo calibration (Shirt 0.62 where
    ``predict`` said T-shirt/top 0.67). The calibration now travels in the file's metadata."""
    from fashionzoo.registry.lookup import get_entry
    from fashionzoo.runtime.classifier import Classifier

    name = "zoo-ensemble"
    calibration = get_entry(name).weights.photo_calibration
    assert calibration is not None
    for key in ("onnx", "onnx_int8"):
        path = released(get_entry(name).weights.files[key].filename)
        assert Classifier(path).photo_calibration == calibration
        assert Classifier(path, calibrated=False).photo_calibration is None
    photo = _photo(tmp_path)
    by_name = run_cli("predict", str(photo), "--model", name, "--top-k", "3", "--json")
    by_file = run_cli("predict", str(photo), "--onnx", str(released(f"{name}.onnx")), "--top-k", "3", "--json")
    assert by_name.returncode == by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["top_k"] == json.loads(by_name.stdout)["top_k"]
    raw = run_cli("predict", str(photo), "--onnx", str(released(f"{name}.onnx")), "--uncalibrated", "--json")
    assert json.loads(raw.stdout)["top_k"] != json.loads(by_file.stdout)["top_k"][:1]


def test_every_released_onnx_file_carries_its_weights_photo_calibration() -> None:
    """``calibrate_photos.py --write`` records a calibration in ``weights.json`` alone and the next release writes it
    into the files: a calibration written without that release would leave ``predict --onnx`` reading photos otherwise
    than ``predict --model``."""
    from fashionzoo.photos.calibration import PhotoCalibration
    from fashionzoo.publish.export import describe
    from fashionzoo.runtime import metadata

    checked = 0
    for entry in registry_lookup.all_entries():
        record = entry.weights
        for key in ("onnx", "onnx_int8"):
            if record is None or key not in record.files:
                continue
            raw = describe(released(record.files[key].filename)).get(metadata.PHOTO_CALIBRATION)
            written = PhotoCalibration.from_json(json.loads(raw)) if raw else None
            assert written == record.photo_calibration, f"{entry.full_name} {key}"
            checked += written is not None
    assert checked >= 6  # zoo-resnet, zoo-ensemble and the two photo weights, each in fp32 and int8


def test_a_photo_calibration_written_into_an_onnx_file_reads_back(tmp_path: Path) -> None:
    """Release writes the calibration with ``write_photo_calibration``: read back by ``Classifier``, the same one
    again changes no byte, None removes it; a malformed one is refused in one line."""
    from fashionzoo.photos.calibration import PhotoCalibration
    from fashionzoo.publish.export import write_photo_calibration
    from fashionzoo.runtime import metadata
    from fashionzoo.runtime.classifier import Classifier

    path = tmp_path / "lenet5.onnx"
    shutil.copyfile(released("lenet5.onnx"), path)
    original = path.read_bytes()
    calibration = PhotoCalibration(tuple(np.linspace(-1, 1, 10).round(3)), 0.4, {"person": (0.5,) * 10})
    assert write_photo_calibration(path, calibration)
    assert Classifier(path).photo_calibration == calibration
    stamped = path.read_bytes()
    assert not write_photo_calibration(path, calibration) and path.read_bytes() == stamped
    assert write_photo_calibration(path, None) and path.read_bytes() == original
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {metadata.PHOTO_CALIBRATION: '{"offsets": [1, 2]}'})
    onnx.save_model(proto, str(path))
    with pytest.raises(FashionZooError) as error:
        Classifier(path)
    assert_one_line(error, path, "fashionzoo.photo_calibration' is not a photo calibration")


@pytest.mark.slow  # trains two small members
def test_an_ensemble_records_that_a_member_resumed(tmp_path: Path) -> None:
    """Item 28: the ensemble's metrics.json lacked ``resumed_at`` when a member had resumed; it now holds its
    members' (a member resumed at epoch 1 stands in for one interrupted and resumed)."""
    import dataclasses

    from fashionzoo.training.train import train

    entry = dataclasses.replace(
        registry_lookup.get_entry("zoo-ensemble"),
        build_kwargs={"member": "mlp-64-32", "seeds": (0, 1)},
        test_time_flip=False,
        weights=None,
    )
    assert train(entry, tmp_path, epochs=1, limit=1000, verbose=0).resumed_at is None
    member = tmp_path / "members" / "seed-1"
    runs.write_record(member, runs.read_record(member).replace(resumed_at=[1]))
    assert train(entry, tmp_path, epochs=1, limit=1000, resume=True, verbose=0).resumed_at == [1]
    assert runs.read_record(tmp_path).resumed_at == [1]


def _datasets(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []
    group.visititems(lambda name, item: found.append((name, item)) if isinstance(item, h5py.Dataset) else None)
    return found


@pytest.mark.slow  # exports lenet5
def test_an_export_of_released_weights_carries_their_photo_calibration(tmp_path: Path, shared_data: Path) -> None:
    """Item 7: ``fashionzoo export NAME`` of the released weights writes their photo calibration as the released
    file has it; an export of other weights does not."""
    import dataclasses

    from fashionzoo.photos.calibration import PhotoCalibration
    from fashionzoo.publish.export import export_onnx
    from fashionzoo.registry.lookup import get_entry
    from fashionzoo.runtime.classifier import Classifier

    entry = get_entry("lenet5")
    calibration = PhotoCalibration((0.25,) * 10, 0.35)
    calibrated = dataclasses.replace(entry, weights=dataclasses.replace(entry.weights, photo_calibration=calibration))
    released_export = export_onnx(calibrated, tmp_path / "released.onnx", data_dir=shared_data)
    assert Classifier(released_export).photo_calibration == calibration
    other = tmp_path / "other" / "lenet5.weights.h5"
    other.parent.mkdir()
    shutil.copyfile(released("lenet5.weights.h5"), other)
    with h5py.File(other, "r+") as weights:  # the same network, other weights: one bias moved
        biases = [name for name, item in _datasets(weights) if item.ndim == 1]
        weights[biases[0]][0] += 0.001
    other_export = export_onnx(calibrated, tmp_path / "other.onnx", weights=other, data_dir=shared_data)
    assert Classifier(other_export).photo_calibration is None
