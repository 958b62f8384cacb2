"""int8 quantisation: accuracy within half a point of fp32 on the shared test file, calibration on training images
only, refusal writes nothing, metadata, runtime loading and ``export --quantize int8``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Exported

from fashionzoo import FashionZooError
from fashionzoo.cli import main
from fashionzoo.core.files import sha256_file
from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.data.loading import load_split, train_val_split
from fashionzoo.runtime.classifier import Classifier

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8(exported: Exported, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The session's exported LeNet-5, quantised (its tests share an xdist group: one pytest-xdist worker makes it)."""
    from fashionzoo.publish.export import quantize_int8

    out = tmp_path_factory.mktemp("int8") / f"{exported.name}.int8.onnx"
    return quantize_int8(exported.name, exported.path, out, data_dir=shared_data)


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.xdist_group("test_quantize.int8")
def test_int8_accuracy_within_half_a_point(exported: Exported, int8: Path, shared_data: Path) -> None:
    test = load_split("test", data_dir=shared_data)
    fp32_acc, int8_acc = (
        float((Classifier(path, name=exported.name).predict_probs(test.images).argmax(1) == test.labels).mean())
        for path in (exported.path, int8)
    )
    assert int8_acc >= fp32_acc - 0.005
    meta = _metadata(int8)
    assert float(meta["fashionzoo.test_accuracy"]) == pytest.approx(int8_acc)
    assert float(meta["fashionzoo.fp32_test_accuracy"]) == pytest.approx(fp32_acc)


@pytest.mark.xdist_group("test_quantize.int8")
def test_int8_carries_metadata_and_is_quantised(exported: Exported, int8: Path) -> None:
    meta, fp32_meta = _metadata(int8), _metadata(exported.path)
    for key in (
        "fashionzoo.model",
        "fashionzoo.version",
        "fashionzoo.classes",
        "fashionzoo.input",
        "fashionzoo.preprocessing",
        "fashionzoo.weights_sha256",
    ):
        assert meta[key] == fp32_meta[key]
    assert meta["fashionzoo.quantization"].startswith("int8 static, QDQ")
    assert "calibrated on 1000 training images" in meta["fashionzoo.quantization"]
    assert meta["fashionzoo.fp32_sha256"] == sha256_file(exported.path)
    assert "fashionzoo.parity_max_abs_diff" in fp32_meta and "fashionzoo.parity_max_abs_diff" not in meta  # fp32's
    assert 0.95 <= float(meta["fashionzoo.fp32_top1_agreement"]) <= 1
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8.stat().st_size < exported.path.stat().st_size / 2


@pytest.mark.xdist_group("test_quantize.int8")
def test_int8_loads_in_the_runtime(exported: Exported, int8: Path, shared_data: Path) -> None:
    clf = Classifier(int8, name=exported.name)
    assert clf.name == exported.name and clf.classes == FASHION_CLASSES
    images = load_split("test", data_dir=shared_data).images[:64]
    probs = clf.predict_probs(images)
    assert probs.shape == (64, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # the softmax stays in float
    assert len(np.unique(probs)) > 64  # not quantised to 256 levels


def test_refusal_writes_nothing(
    exported: Exported, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fashionzoo.publish import export

    monkeypatch.setattr(export, "QUANT_MAX_DROP", -0.5)  # demand int8 be 50 points better: impossible
    out = tmp_path / "out" / "model.int8.onnx"
    with pytest.raises(FashionZooError, match="nothing written"):
        export.quantize_int8(exported.name, exported.path, out, data_dir=shared_data, calibration_size=100)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_calibration_reads_only_the_training_split(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fashionzoo.publish import export

    splits: list[str] = []
    real = export.load_split
    monkeypatch.setattr(export, "load_split", lambda split, *args: splits.append(split) or real(split, *args))
    first = export.calibration_images("lenet5", 50, shared_data)
    assert splits == ["train"] and first.shape == (50, 28, 28, 1)
    np.testing.assert_array_equal(first, export.calibration_images("lenet5", 50, shared_data))  # fixed seed
    train, val = train_val_split(real("train", data_dir=shared_data), 0.1)
    pixels = {image.tobytes() for image in train.images}
    assert all((np.rint(x[..., 0] * 255).astype(np.uint8)).tobytes() in pixels for x in first)
    assert len(val) > 0
    with pytest.raises(FashionZooError, match="calibration size"):
        export.calibration_images("lenet5", 0, shared_data)


def test_cli_export_quantize(exported: Exported, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    result = CliRunner().invoke(
        main,
        ["export", exported.name, "--quantize", "int8", "--out", str(out), "--data-dir", str(shared_data), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    meta = _metadata(out)
    assert summary == {"path": str(out), "opset": summary["opset"], **meta}  # the file's own metadata, as JSON
    assert meta["fashionzoo.quantization"].startswith("int8 static, QDQ")
    assert meta["fashionzoo.model"] == exported.name
    assert json.loads(meta["fashionzoo.classes"]) == list(FASHION_CLASSES)
