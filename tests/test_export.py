"""ONNX export: parity with Keras on the shared test images, metadata, dynamic batch, atomic refusal, --opset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Exported, fake_run_record

import fashionzoo
from fashionzoo import FashionZooError
from fashionzoo.cli import main
from fashionzoo.core.files import sha256_file
from fashionzoo.data.datasets import FASHION_CLASSES, InputSpec
from fashionzoo.photos.convert import to_model_input
from fashionzoo.registry.lookup import get_entry
from fashionzoo.training import runs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def _data_env(monkeypatch: pytest.MonkeyPatch, shared_data: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("FASHIONZOO_DATA_DIR", str(shared_data))
    monkeypatch.setenv("FASHIONZOO_HOME", str(tmp_path / "home"))


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_records_metadata_and_parity(exported: Exported) -> None:
    meta = _metadata(exported.path)
    assert meta["fashionzoo.model"] == exported.name == "lenet5"
    assert meta["fashionzoo.version"] == fashionzoo.__version__
    assert json.loads(meta["fashionzoo.classes"]) == list(FASHION_CLASSES)
    assert json.loads(meta["fashionzoo.input"]) == {
        "height": 28,
        "width": 28,
        "channels": 1,
        "scale": 1 / 255,
        "pipeline": "fashion-mnist",
    }
    assert InputSpec.from_json(meta["fashionzoo.input"]) == get_entry("lenet5").input_spec
    assert meta["fashionzoo.dataset"] == "fashion-mnist"
    assert "divided by 255" in meta["fashionzoo.preprocessing"]
    assert meta["fashionzoo.test_accuracy"] == str(Exported.RECORDED_ACCURACY)  # the record beside the weights
    assert meta["fashionzoo.weights_sha256"] == sha256_file(exported.weights)
    assert 0.0 <= float(meta["fashionzoo.parity_max_abs_diff"]) <= 1e-5


def test_an_accuracy_only_for_the_weights_a_record_measured(exported: Exported, tmp_path: Path) -> None:
    """Weights beside a record that predates ``weights_sha256``, or that measured other bytes: no test accuracy in
    the file (another run's 0.8874 was written for untrained weights)."""
    from fashionzoo.publish.export import _weights_facts

    weights = tmp_path / "lenet5.weights.h5"
    weights.write_bytes(exported.weights.read_bytes())
    for record in (
        fake_run_record("lenet5", weights.name, accuracy=0.8874),
        fake_run_record("lenet5", weights.name, accuracy=0.8874).replace(weights_sha256="0" * 64),
    ):
        runs.write_record(tmp_path, record)
        facts = _weights_facts(get_entry("lenet5"), weights)
        assert facts == {"fashionzoo.weights_sha256": sha256_file(weights)}


def test_exported_graph_is_valid_with_named_io(exported: Exported) -> None:
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    assert next(o.version for o in model.opset_import if o.domain == "") == 17


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_keras(exported: Exported, batch: int) -> None:
    images = np.random.default_rng(batch).integers(0, 256, (batch, 28, 28), dtype=np.uint8)
    x = to_model_input(images)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"image": x})
    assert probs.shape == (batch, 10)
    np.testing.assert_allclose(probs, np.asarray(exported.model(x, training=False)), atol=1e-5, rtol=0)


@pytest.mark.slow  # converts a model with tf2onnx
@pytest.mark.usefixtures("_data_env")
def test_failed_parity_writes_nothing(exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fashionzoo.publish import export

    real = export._onnx_probs
    monkeypatch.setattr(export, "_onnx_probs", lambda proto, x: real(proto, x) + 1e-4)
    out = tmp_path / "out" / "bad.onnx"
    with pytest.raises(FashionZooError, match=r"does not match Keras on 10000 test images.*nothing written"):
        export.export_onnx("lenet5", out, weights=exported.weights, model=exported.model)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.slow  # converts a model with tf2onnx
@pytest.mark.usefixtures("_data_env")
def test_cli_export_honours_opset_and_default_path(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", "lenet", "--weights", str(exported.weights), "--opset", "13"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "lenet5.onnx"
    assert result.stdout.startswith("lenet5.onnx: opset 13, max abs difference from Keras ")
    assert result.stderr.splitlines() == [
        "fashionzoo: lenet5: converting to ONNX with tf2onnx (opset 13)",
        "fashionzoo: lenet5: checking ONNX Runtime against Keras on the test images",
    ]
    model = onnx.load(str(written))
    assert next(o.version for o in model.opset_import if o.domain == "") == 13
    assert float(_metadata(written)["fashionzoo.parity_max_abs_diff"]) <= 1e-5


def test_cli_export_missing_weights_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.weights.h5"
    out = tmp_path / "x.onnx"
    result = CliRunner().invoke(main, ["export", "lenet5", "--weights", str(missing), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr == f"fashionzoo: error: {missing}: no such file (pass the path of a weights file)\n"
    assert not out.exists()


@pytest.mark.slow  # converts a model with tf2onnx
@pytest.mark.usefixtures("_data_env")
def test_test_time_flip_travels_in_the_onnx_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with ``test_time_flip``: the ONNX file averages each image with its mirror image, like Keras."""
    import keras

    from fashionzoo.publish.export import export_onnx

    entry = dataclasses.replace(get_entry("lenet5"), test_time_flip=True)
    keras.utils.set_random_seed(11)
    bare = fashionzoo.build(entry)
    weights = tmp_path / "lenet5.weights.h5"
    bare.save_weights(weights)
    path = export_onnx(entry, tmp_path / "lenet5.onnx", weights=weights)
    assert _metadata(path)["fashionzoo.test_time_augmentation"].startswith("flip")

    x = to_model_input(np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8))
    mirrored = x[:, :, ::-1, :].copy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, probs_of_mirrored = (session.run(["probabilities"], {"image": batch})[0] for batch in (x, mirrored))
    plain, plain_of_mirrored = (np.asarray(bare(batch, training=False)) for batch in (x, mirrored))
    assert np.abs(plain - plain_of_mirrored).max() > 1e-3  # the bare network does see the difference
    np.testing.assert_allclose(probs, (plain + plain_of_mirrored) / 2, atol=1e-5, rtol=0)
    np.testing.assert_allclose(probs, probs_of_mirrored, atol=1e-6, rtol=0)  # the average is mirror-symmetric
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
