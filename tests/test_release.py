"""Reproducing and releasing checkpoints for real: retrain from the recorded recipe on the official files, release
into a temporary package tree, release again (nothing changes), and refuse runs that must never be released."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_cli_error, assert_one_line, failing_without_tensorflow, snapshot

from fashionzoo.cli import main
from fashionzoo.core.errors import FashionZooError
from fashionzoo.core.files import sha256_file
from fashionzoo.data.datasets import DATASETS
from fashionzoo.photos.calibration import PhotoCalibration
from fashionzoo.publish.release import ReleaseTree, read_manifest, release, write_manifest
from fashionzoo.registry.lookup import get_entry
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.training import runs

pytestmark = pytest.mark.xdist_group("test_release.retrained")

REPRODUCED = ("lenet5", "mlp-small-tuned")
"""Retrained by the suite with their full recipes (about a minute each on 2 cores)."""
DOCS = Path(__file__).resolve().parents[1] / "docs" / "models"
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fashionzoo"
TOLERANCE = 0.003
"""How far a retrained run's test accuracy may land from the released one (0.3 points)."""


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """Each of :data:`REPRODUCED` trained again with its released recipe, on the official files (the module's tests
    share an xdist group: one pytest-xdist worker trains them)."""
    from fashionzoo.training.train import train

    folders = {}
    for name in REPRODUCED:
        out = tmp_path_factory.mktemp("runs") / name
        train(name, out, data_dir=shared_data, verbose=0)
        folders[name] = out
    return folders


@pytest.mark.slow  # retrains two released models with their full recipes
@pytest.mark.parametrize("name", REPRODUCED)
def test_retraining_reproduces_the_released_accuracy(name: str, retrained: dict[str, Path]) -> None:
    record, released = runs.read_record(retrained[name]), get_entry(name).weights
    assert released is not None, f"{name} must be released"
    released_run = runs.read_record(DOCS / name)  # the released run's own record, shipped in docs/models/
    assert record.full_recipe == released_run.full_recipe and record.overrides == released_run.overrides == {}
    assert record.uses_official_data() and record.data_files == released.data_files
    assert record.test["n"] == released.metrics["n"] == 10_000
    assert abs(record.test["accuracy"] - released.metrics["accuracy"]) <= TOLERANCE


@pytest.mark.slow  # retrains two released models with their full recipes
def test_release_into_a_package_tree_then_again_changes_nothing(
    retrained: dict[str, Path], tree: ReleaseTree, shared_data: Path
) -> None:
    run = retrained["lenet5"]
    first = release([run], tree, data_dir=shared_data)["lenet5"]
    assert set(first.files) == {"weights", "onnx", "onnx_int8", "card", "metrics"}
    assert first.shipped == ("weights", "onnx", "onnx_int8") and first.revision is None
    for key in first.shipped:
        assert sha256_file(tree.checkpoints / first.files[key].filename) == first.files[key].sha256
    assert sha256_file(tree.docs / "lenet5" / "metrics.json") == first.files["metrics"].sha256
    assert read_manifest(tree) == {"lenet5": first}
    assert first.metrics["onnx_batch1_p50_ms"] > 0 and first.data_files == runs.read_record(run).data_files
    assert DATASETS["fashion-mnist"].is_official(first.data_files)
    readme = (tree.root / "README.md").read_text()
    assert "old table" not in readme and "| `lenet5` |" in readme and readme.endswith("more text\n")

    before, run_before = snapshot(tree.root), snapshot(run)
    second = CliRunner().invoke(
        main, ["release", str(run), "--tree", str(tree.root), "--data-dir", str(shared_data), "--json"]
    )
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout) == {
        "lenet5": {
            "metrics": first.metrics,
            "revision": None,
            "files": {key: file.filename for key, file in first.files.items()},
        }
    }
    assert read_manifest(tree) == {"lenet5": first}
    assert snapshot(tree.root) == before and snapshot(run) == run_before  # not a byte changed

    calibrated = dataclasses.replace(first, photo_calibration=PhotoCalibration((0.5,) + (0.0,) * 9, 0.4))
    write_manifest(tree, {"lenet5": calibrated})
    again = release([run], tree, data_dir=shared_data)["lenet5"]
    assert again.photo_calibration == calibrated.photo_calibration  # it holds for the very model it was chosen for
    assert again.files["weights"] == first.files["weights"] and again.files["onnx"] != first.files["onnx"]
    onnx_file = tree.checkpoints / again.files["onnx"].filename  # the calibration travels in the file's metadata
    assert Classifier(onnx_file).photo_calibration == calibrated.photo_calibration

    pinned = release([run], tree, published={"lenet5": "a" * 40}, data_dir=shared_data)["lenet5"]
    assert pinned.revision == "a" * 40 and pinned.files == again.files  # pinning changes no file


@pytest.mark.slow  # retrains two released models with their full recipes
def test_release_refuses_limited_unofficial_and_random_backbone_runs(
    retrained: dict[str, Path], tree: ReleaseTree, tmp_path: Path
) -> None:
    record = runs.read_record(retrained["lenet5"])
    cases = {
        "limit": record.replace(limit=500),
        "unofficial": record.replace(data_files={**record.data_files, "t10k-labels-idx1-ubyte.gz": "0" * 64}),
        "random backbone": record.replace(
            model="vgg16-tl", build_kwargs={"backbone_weights": None}, weights_file="vgg16-tl.weights.h5"
        ),
    }
    for why, bad in cases.items():
        folder = tmp_path / why
        shutil.copytree(retrained["lenet5"], folder)
        runs.write_record(folder, bad)
        with pytest.raises(FashionZooError) as excinfo:
            release([folder], tree)
        message = assert_one_line(excinfo, folder)
        assert {"limit": "--limit 500", "unofficial": "not the official", "random backbone": "random"}[why] in message
        assert read_manifest(tree) == {} and not tree.checkpoints.exists()  # refused before anything was written
    with pytest.raises(FashionZooError, match="random backbone"):  # a good run first: nothing is released either
        release([retrained["lenet5"], folder], tree)
    assert read_manifest(tree) == {} and not tree.checkpoints.exists()
    damages = {  # what an interrupted or foreign run leaves behind
        "an unfinished run (its backup/ folder is still there)": lambda run: (run / "backup").mkdir(),
        "curves.png missing": lambda run: (run / "curves.png").unlink(),
        "lenet5.weights.h5 is not the file its record measured": lambda run: (run / "lenet5.weights.h5").write_bytes(
            b"weights of a later, interrupted run"
        ),
    }
    for why, damage in damages.items():
        folder = tmp_path / why.split()[0]
        shutil.copytree(retrained["lenet5"], folder)
        damage(folder)
        with pytest.raises(FashionZooError, match=why.replace("(", r"\(").replace(")", r"\)")):
            release([folder], tree)
    assert read_manifest(tree) == {} and not tree.checkpoints.exists()
    with pytest.raises(FashionZooError, match="lenet5=main: publish a full 40-digit commit hash"):
        release([retrained["lenet5"]], tree, published={"lenet5": "main"})  # after the export and copies, before
    assert read_manifest(tree) == {} and not tree.checkpoints.exists()


def test_releasing_a_shipped_run_again_changes_no_byte(tmp_path: Path, tree: ReleaseTree) -> None:
    """A released run folder (its shipped files and records) released again: the same record, card and files, so
    a published revision stays pinned. The card once came out with its recipe's keys in another order."""
    name = "mlp-small"
    shipped = get_entry(name).weights
    run = tmp_path / name
    shutil.copytree(DOCS / name, run)
    for file in shipped.files.values():
        if file.filename.endswith((".h5", ".onnx")):
            shutil.copyfile(PACKAGE / "checkpoints" / file.filename, run / file.filename)
    pinned = dataclasses.replace(shipped, revision="b" * 40)
    write_manifest(tree, {name: pinned})
    before = snapshot(run)
    assert release([run], tree)[name] == pinned and read_manifest(tree) == {name: pinned}
    assert snapshot(run) == before and snapshot(tree.docs / name) == snapshot(DOCS / name)


def test_a_record_from_before_a_recipe_field_existed_reads_with_its_default(tmp_path: Path) -> None:
    """Records written before ``Recipe.precision`` existed ran in float32; read back, they say so, so that a
    retraining's record compares equal to the released one."""
    raw = json.loads((DOCS / "zoo-resnet" / runs.METRICS).read_text())
    assert raw["recipe"].pop("precision") == "mixed_bfloat16"
    (tmp_path / runs.METRICS).write_text(json.dumps(raw))
    full = runs.read_record(tmp_path).full_recipe
    assert full == {**runs.RECIPE_DEFAULTS, **raw["recipe"], "precision": "float32"} and full["photo_share"] == 0.0
    assert runs.read_record(tmp_path).recipe == raw["recipe"]  # kept as written: the card made from it too


def test_cli_release_refuses_a_folder_without_a_run_record(tmp_path: Path, tree: ReleaseTree) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["release", str(empty), "--tree", str(tree.root)])
    assert_cli_error(result, "metrics.json: no such file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_release_refuses_a_tree_without_a_manifest_before_importing_tensorflow(tmp_path: Path) -> None:
    stderr = failing_without_tensorflow(["release", "--tree", str(tmp_path), str(tmp_path)])
    assert_one_line(stderr, "weights.json: unreadable weights manifest")
