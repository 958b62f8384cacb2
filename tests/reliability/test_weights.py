"""Weights files against the models wing (``fashionzoo.models``): a weights bomb refused from its structure with
bounded memory, by every command; another model's weights name the real difference; NaN weights give strict JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI_ENV, assert_cli_error, assert_one_line, bar, released, run_cli, strict_json

from fashionzoo.core.errors import FashionZooError

pytestmark = pytest.mark.slow  # each test starts TensorFlow in a fresh process, most of them several times


def weights_bomb(folder: Path) -> Path:
    """lenet5's released weights with the dense kernel replaced by a gzip-chunked dataset declaring 250 million
    float32 values (1 GB) and holding none: 205 kB on disk."""
    import h5py

    bomb = folder / "bomb.weights.h5"
    shutil.copyfile(released("lenet5.weights.h5"), bomb)
    with h5py.File(bomb, "a") as file:
        del file["layers/dense/vars/0"]
        file["layers/dense/vars"].create_dataset(
            "0", shape=(250_000_000,), dtype="float32", chunks=(1 << 20,), compression="gzip"
        )
    assert bomb.stat().st_size < 300_000
    return bomb


LOAD_PEAK = r"""
import json, sys, time
from fashionzoo.core.errors import FashionZooError
from fashionzoo.models import loading as models_loading

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

models_loading.build("lenet5").save_weights  # TensorFlow and the builder warmed up: count them in the baseline
base, start = peak_kb(), time.perf_counter()
try:
    models_loading.load("lenet5", sys.argv[1])
    outcome = {"error": None}
except FashionZooError as error:
    outcome = {"error": str(error)}
outcome.update(seconds=time.perf_counter() - start, peak_growth_mb=(peak_kb() - base) / 1024)
print(json.dumps(outcome))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc (Linux)")
def test_weights_bomb_is_refused_from_its_structure_with_bounded_memory(tmp_path: Path) -> None:
    bomb = weights_bomb(tmp_path)

    result = subprocess.run(
        [sys.executable, "-c", LOAD_PEAK, str(bomb)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **CLI_ENV},
    )

    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    print(f"weights bomb: {outcome}")  # quoted in docs/reliability.md
    assert_one_line(
        FashionZooError(outcome["error"]), "bomb.weights.h5", "layers/dense/vars/0", "(250000000,)", "(256, 120)"
    )
    assert outcome["peak_growth_mb"] < 100  # Keras alone allocated 4.5 GB for it


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "lenet5", "--weights", "{bomb}", "--data-dir", "{data}"],
        ["export", "lenet5", "--weights", "{bomb}", "--out", "{out}/lenet5.onnx", "--data-dir", "{data}"],
        ["predict", "{image}", "--model", "lenet5", "--backend", "keras", "--weights", "{bomb}"],
        ["bench", "lenet5", "--weights", "{bomb}", "--batch-sizes", "1", "--data-dir", "{data}"],
    ],
    ids=["eval", "export", "predict-keras", "bench"],
)
def test_every_command_refuses_the_weights_bomb(tmp_path: Path, make_idx_folder, command: list[str]) -> None:
    image = tmp_path / "shirt.png"
    bar(True).save(image)
    names = {
        "bomb": weights_bomb(tmp_path),
        "data": make_idx_folder(sizes={"test": 20}).path,
        "out": tmp_path,
        "image": image,
    }

    result = run_cli(*(part.format(**names) for part in command), env={"FASHIONZOO_HOME": str(tmp_path / "home")})

    assert_cli_error(result, "bomb.weights.h5", "do not fit model 'lenet5'", "layers/dense/vars/0")
    assert not (tmp_path / "lenet5.onnx").exists()


def test_weights_of_another_model_name_the_real_difference(tmp_path: Path, make_idx_folder) -> None:
    data_dir = make_idx_folder(sizes={"test": 20}).path

    result = run_cli("eval", "lenet5", "--weights", str(released("cnn.weights.h5")), "--data-dir", str(data_dir))

    message = assert_cli_error(
        result,
        "cnn.weights.h5",
        "layers/conv2d/vars/0 is (3, 3, 1, 32) float32 in the file",
        "the model needs (5, 5, 1, 6) float32",
    )
    assert "Skipping" not in message


def test_eval_json_with_nan_weights_is_strict_json(tmp_path: Path, make_idx_folder) -> None:
    import h5py

    weights = tmp_path / "nan.weights.h5"
    shutil.copyfile(released("lenet5.weights.h5"), weights)
    with h5py.File(weights, "a") as file:
        file["layers/dense_2/vars/0"][...] = np.nan
    data_dir = make_idx_folder(sizes={"test": 20}).path

    result = run_cli("eval", "lenet5", "--weights", str(weights), "--data-dir", str(data_dir), "--json")

    row = strict_json(result.stdout)
    assert row["loss"] is None and "loss" in row["error"] and row["n"] == 20
    assert_cli_error(result, "nan.weights.h5", "not finite")
