"""The registry's released-file records (``fashionzoo.registry.specs`` and ``weights.json``): names that would leave
their folder, malformed checksums and sizes are refused when a record is made, so when ``weights.json`` is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import COMMIT_A, REPO, sha256

from fashionzoo.registry import lookup as registry_lookup
from fashionzoo.registry.specs import FileRecord, is_safe_filename

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
