"""ONNX Runtime inference: Keras parity, session reuse, CUDA fallback, refusal of foreign graphs, no TensorFlow,
and the ``predict`` command on good and bad files."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Exported, fake_split
from PIL import Image

import fashionzoo
from fashionzoo import FashionZooError, runtime
from fashionzoo.cli import main
from fashionzoo.data.datasets import FASHION_CLASSES
from fashionzoo.models import loading as models_loading
from fashionzoo.photos.convert import forkable, to_model_input
from fashionzoo.runtime import loading as runtime_loading
from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.classify import classify_files
from fashionzoo.runtime.results import Failure
from fashionzoo.runtime.session import providers_for

ort = pytest.importorskip("onnxruntime")
PREDICTION = re.compile(
    r"^(?P<file>.+): (?P<label>[^(]+) \((?P<p>[01]\.\d\d)\)"
    r"(?P<rest>(, [^,(]+ \([01]\.\d\d\))*)(?P<flag> \[uncertain\])?$"
)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """Three dark-background 28x28 PNGs (passed through preprocessing unchanged)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(fake_split(3, seed=9)[0]):
        image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = 0  # dark border: kept as is
        Image.fromarray(image).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image, and skipped: wrong extension")
    return folder


def test_classifier_matches_keras(exported: Exported) -> None:
    path, model = exported.path, exported.model
    clf = Classifier(onnx_path=path)
    assert clf.classes == FASHION_CLASSES and clf.name == "lenet5"
    images = fake_split(50, seed=5)[0]
    probs = clf.predict_probs(images, batch_size=16)
    assert probs.shape == (50, 10) and probs.dtype == np.float32
    expected = np.asarray(model(to_model_input(images), training=False))
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    assert clf.predict_probs(images[0]).shape == (1, 10)
    assert clf.predict_probs(images[:0]).shape == (0, 10)
    with pytest.raises(FashionZooError, match="expected uint8 images"):
        clf.predict_probs(images.astype(np.float32) / 255)


def test_python_api_takes_what_users_pass_and_refuses_the_rest_in_one_line(
    exported: Exported, images_dir: Path
) -> None:
    """A review of the Python API: each of these was a wrong answer or a traceback."""

    path, model = exported.path, exported.model
    clf = fashionzoo.Classifier(path, name=fashionzoo.get_entry("lenet5"))  # an entry as well as a name
    assert fashionzoo.Classifier is Classifier and clf.name == "lenet5"
    file = images_dir / "img0.png"
    one = [p.label for p in clf.classify(str(file))]  # one file, not one Failure per character of its name
    assert len(one) == 1 and one == [p.label for p in clf.classify(file)] == [
        p.label for p in clf.classify([os.fsencode(file)])
    ]
    assert [p.error for p in clf.classify([3])] == ["3: not a file name"]
    images = fake_split(4, seed=6)[0]
    expected = np.asarray(model(to_model_input(images), training=False))  # Keras: the same checks
    for probs in (clf.predict_probs(images[..., np.newaxis]), models_loading.predict_probs(model, images)):
        np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)  # the models' own (N, 28, 28, 1) layout
    assert models_loading.predict_probs(model, images[:0]).shape == (0, 10)
    with pytest.raises(FashionZooError, match="expected uint8 images"):  # Keras scaled floats a second time
        models_loading.predict_probs(model, images / 255.0)
    with pytest.raises(FashionZooError, match=r"got \(3, 30, 30\); convert other images with .*convert_image"):
        clf.predict_probs(np.zeros((3, 30, 30), np.uint8))
    with pytest.raises(FashionZooError, match=r"run takes a float32 batch \(N, 28, 28, 1\) .* not float64"):
        clf.run(to_model_input(images).astype(np.float64))  # was blamed on the model file
    with pytest.raises(FashionZooError, match="a model name is a string such as"):
        fashionzoo.get_entry(None)
    with pytest.raises(FashionZooError, match="int8=True picks the released int8 file"):  # int8 was ignored
        Classifier.from_pretrained("lenet5", onnx_path=path, int8=True)


@pytest.mark.parametrize(
    "change",
    [
        {"scale": 0},
        {"scale": -1},
        {"scale": 1e-300},
        {"scale": 1e6},
        {"scale": "x"},
        {"scale": None},
        {"scale": float("nan")},
        {"channels": True},
        {"height": 32},
    ],
    ids=str,
)
def test_an_edited_input_spec_is_refused_in_one_line(exported: Exported, tmp_path: Path, change: dict) -> None:
    """An ONNX file whose ``fashionzoo.input`` was edited: tracebacks, or the same class for every image, before."""
    import onnx

    model = onnx.load(exported.path)
    prop = next(p for p in model.metadata_props if p.key == "fashionzoo.input")
    prop.value = json.dumps({**json.loads(prop.value), **change})
    onnx.save(model, tmp_path / "edited.onnx")
    with pytest.raises(FashionZooError, match=r"edited.onnx: metadata 'fashionzoo.input' is not a usable input spec"):
        Classifier(tmp_path / "edited.onnx")


def test_sessions_are_shared(exported: Exported) -> None:
    path = exported.path
    first = Classifier.from_pretrained("lenet5", onnx_path=path)
    second = Classifier.from_pretrained("lenet5", onnx_path=str(path))
    assert first is not second and first.session is second.session
    assert Classifier(path, intra_op_threads=1).session is not first.session


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_cuda_request_falls_back_to_cpu(exported: Exported, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert providers_for("cuda") == ["CPUExecutionProvider"]
    assert [r.getMessage() for r in caplog.records] == [
        "--device cuda asked, but onnxruntime has no CUDA device (pip install onnxruntime-gpu); using the CPU"
    ]
    caplog.clear()
    assert providers_for("auto") == providers_for("cpu") == ["CPUExecutionProvider"]
    assert caplog.records == []
    clf = Classifier(exported.path, device="cuda", inter_op_threads=1)
    assert clf.session.get_providers() == ["CPUExecutionProvider"]
    assert clf.run(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)  # the single-image path: a second session
    assert len(caplog.records) == 1  # said once, not once per session
    with pytest.raises(FashionZooError, match="unknown device 'tpu'"):
        providers_for("tpu")
    image = Image.fromarray(fake_split(1, seed=8)[0][0])
    image.save(tmp_path / "one.png")
    keras_run = CliRunner().invoke(
        main,
        [
            "predict",
            "--backend",
            "keras",
            "--device",
            "cuda",
            "--model",
            "lenet5",
            "--weights",
            str(exported.weights),
            str(tmp_path / "one.png"),
        ],
    )
    assert keras_run.exit_code == 0, keras_run.output  # the Keras backend ran on the CPU without a word before
    assert "--device cuda asked, but TensorFlow has no CUDA device" in keras_run.stderr


def _identity_onnx(path: Path, shape: list) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("shape", [["N", 784], ["N", 1, 28, 28], [1, 28, 28, 1]], ids=["flat", "nchw", "fixed"])
def test_foreign_graphs_are_refused(tmp_path: Path, shape: list) -> None:
    path = _identity_onnx(tmp_path / "other.onnx", shape)
    with pytest.raises(FashionZooError, match=re.escape(f"{path}: not a fashionzoo image model (input x")):
        Classifier(path)


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(FashionZooError, match=re.escape(f"{path}: not a usable ONNX model (Protobuf parsing failed.)")):
        Classifier(path)
    with pytest.raises(FashionZooError, match="no such file \\(pass the path of an ONNX file\\)"):
        Classifier(tmp_path / "missing.onnx")


def test_classify_streams_in_order_with_failures(images_dir: Path) -> None:
    files = sorted(str(p) for p in images_dir.glob("*.png"))
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return np.tile(np.linspace(0.0, 0.9, 10, dtype=np.float32), (len(batch), 1))

    items = [files[0], "missing.png", Failure("x*", "x*: no file matches this pattern"), files[1], files[2]]
    results = list(classify_files(items, predict, FASHION_CLASSES, top_k=2, batch_size=2))
    assert calls == [2, 1]
    assert [r.file for r in results] == [files[0], "missing.png", "x*", files[1], files[2]]
    assert isinstance(results[1], Failure) and results[1].error == "missing.png: no such file (check the path)"
    assert results[0].as_dict() == {
        "file": files[0],
        "label": "Ankle boot",
        "class_id": 9,
        "probability": 0.9,
        "uncertain": False,
        "top_k": [
            {"label": "Ankle boot", "class_id": 9, "probability": 0.9},
            {"label": "Bag", "class_id": 8, "probability": 0.8},
        ],
    }


def test_many_files_load_in_worker_processes_in_order(tmp_path: Path) -> None:
    """From ``_PROCESSES_FROM`` files on, files are loaded by forked worker processes: same pixels and failures, in
    input order, as loading them one by one here; the processes exist while loading and are gone afterwards."""
    rng = np.random.default_rng(5)
    files: list[str | Failure] = []
    for i in range(runtime_loading._PROCESSES_FROM + 20):
        path = tmp_path / f"photo{i:03d}.png"
        photo = np.full((40, 30), 255, np.uint8)
        photo[5 + i % 7 : 35, 4 : 26 - i % 5] = rng.integers(0, 200, dtype=np.uint8)
        Image.fromarray(photo).save(path)
        files.append(str(path))
    files[7] = str(tmp_path / "missing.png")
    files[270] = Failure("x*", "x*: no file matches this pattern")
    serial = list(runtime_loading.load_all(files, 1, 64, "fashion-mnist"))
    children: list[int] = []
    loaded = []
    for entry in runtime_loading.load_all(files, 2, 64, "fashion-mnist"):
        children = children or [child.pid for child in multiprocessing.active_children()]
        loaded.append(entry)
    assert len(children) == 2 and not multiprocessing.active_children()
    assert [e if isinstance(e, Failure) else e[0] for e in loaded] == [
        e if isinstance(e, Failure) else e[0] for e in serial
    ]
    assert isinstance(loaded[7], Failure) and loaded[270] == files[270]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(loaded, serial, strict=True) if not isinstance(a, Failure))


def _opencv_threads(items: list[str], pipeline: str) -> list[int]:
    """In place of ``runtime_loading._load_chunk``: the loading process's OpenCV thread count, once per item."""
    return [cv2.getNumThreads()] * len(items)


def test_loading_processes_run_opencv_on_one_thread_and_this_process_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loading processes are forked inside ``forkable`` (OpenCV on one thread); this process's own OpenCV calls
    keep its thread count while it reads their results."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(2)  # as on two cores or more
    try:
        monkeypatch.setattr(runtime_loading, "_load_chunk", _opencv_threads)
        names = [f"{index}.png" for index in range(runtime_loading._PROCESSES_FROM)]
        loading = runtime_loading.load_all(names, 2, 64, "fashion-mnist")
        first = next(loading)
        assert cv2.getNumThreads() == 2
        assert [first, *loading] == [1] * len(names)
    finally:
        cv2.setNumThreads(threads)


@pytest.mark.slow  # 120 processes forked beside two busy ones
def test_processes_forked_inside_forkable_do_not_inherit_a_held_opencv_lock() -> None:
    """OpenCV's thread pool is not fork-safe: a child forked while one of the parent's pool threads held its lock
    waits for it forever (a loading process hung so in a CI run). CPU load stretches the moments a pool thread holds
    its lock: here about 1 in 60 children forked just after the parent's OpenCV call hung without ``forkable``, and
    this test then failed in every run (4 of 4; 10 of 10 beside four busy processes)."""
    image = np.random.default_rng(0).integers(0, 256, (256, 256), np.uint8)
    fork = multiprocessing.get_context("fork")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for _ in range(120):
            cv2.GaussianBlur(image, (0, 0), 2.0)  # the pool's threads work, then settle down to wait
            with forkable():
                child = fork.Process(target=cv2.GaussianBlur, args=(image, (0, 0), 2.0))
                child.start()
            child.join(timeout=30)
            if child.exitcode is None:
                child.kill()
                child.join()
                pytest.fail("a process forked inside forkable() hung in OpenCV")
            assert child.exitcode == 0
    finally:
        for process in busy:
            process.kill()
            process.wait()


def _photo_links(folder: Path, count: int) -> Path:
    """``count`` links to one 600x800 product-like JPEG: enough files for loading processes, each a real photo."""
    folder.mkdir()
    photo = np.full((800, 600, 3), 240, np.uint8)
    photo[100:700, 150:450] = (40, 60, 120)
    Image.fromarray(photo).save(folder / "photo.jpg", quality=90)
    for i in range(count):
        (folder / f"link{i:05d}.jpg").symlink_to(folder / "photo.jpg")
    return folder


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is gone
    except OSError:
        return True


def _predict_with_loaders(folder: Path, *options: str) -> tuple[subprocess.Popen, list[int]]:
    """``predict FOLDER --json`` in a process of its own, once its two loading processes are at work."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fashionzoo",
            "predict",
            str(folder),
            "--json",
            "--model",
            "cnn-small",
            "--workers",
            "2",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(loaders := _children(process.pid)) < 2:
        time.sleep(0.02)
    assert len(loaders) >= 2, "no loading processes"
    return process, loaders


@pytest.mark.slow  # two predict processes over 4,000 photos
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_loading_processes_end_with_their_parent_and_a_dead_one_fails_its_files(tmp_path: Path) -> None:
    """A predict killed from outside left its loading processes blocked on their pipes forever; a loading process
    that died (out of memory) ended the run with a BrokenProcessPool traceback and nothing classified."""
    folder = _photo_links(tmp_path / "links", 4000)
    process, loaders = _predict_with_loaders(folder)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(map(_gone, loaders)):
        time.sleep(0.05)
    assert all(map(_gone, loaders))

    process, loaders = _predict_with_loaders(folder)
    os.kill(loaders[0], signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    rows = [json.loads(line) for line in out.splitlines()]
    assert process.returncode == 1 and len(rows) == 4001 and "Traceback" not in err, err[-2000:]
    lost = [row for row in rows if "error" in row]
    assert lost and all("the process loading it died" in row["error"] for row in lost)
    assert len(lost) < 1000 and all(row["label"] for row in rows if "error" not in row)  # the others classified


def test_a_caller_that_stops_early_leaves_no_loading_process(tmp_path: Path) -> None:
    files = [
        str(path) for path in sorted(_photo_links(tmp_path / "links", runtime_loading._PROCESSES_FROM + 50).iterdir())
    ]
    loading = runtime_loading.load_all(files, 2, 64, "fashion-mnist")
    next(loading)
    assert multiprocessing.active_children()
    loading.close()  # as a for loop's break does
    assert not multiprocessing.active_children()


def test_recursive_walk_of_a_very_deep_tree(tmp_path: Path) -> None:
    levels = [tmp_path / "d"]
    for _ in range(1100):  # deeper than Python's recursion limit, made and removed one level at a time
        levels.append(levels[-1] / "d")  # (mkdir(parents=True) and shutil.rmtree recurse too: pytest's cleanup
    for level in levels:  # of tmp_path failed at the end of the session)
        level.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(levels[-1] / "bottom.png")
    try:
        assert list(runtime.expand_inputs([str(tmp_path)], recursive=True)) == [str(levels[-1] / "bottom.png")]
    finally:
        (levels[-1] / "bottom.png").unlink()
        for level in reversed(levels):
            level.rmdir()


def test_runtime_import_pulls_no_tensorflow() -> None:
    code = (
        "import sys, fashionzoo, fashionzoo.runtime, fashionzoo.cli\n"
        "try: fashionzoo.load('nope')\n"  # a wrong name is refused before TensorFlow is imported
        "except fashionzoo.FashionZooError: pass\n"
        "assert fashionzoo.Classifier is fashionzoo.runtime.classifier.Classifier\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_predict_onnx_backend_pulls_no_tensorflow(exported: Exported, images_dir: Path) -> None:
    args = ["predict", "--onnx", str(exported.path), "--model", "lenet5", "--json", str(images_dir / "img0.png")]
    code = (
        "import sys; from fashionzoo.cli import main; "
        f"main({args!r}, standalone_mode=False); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')); "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["file"] == str(images_dir / "img0.png")


def test_predict_json_dir_and_glob(exported: Exported, images_dir: Path) -> None:
    pattern = str(images_dir / "img[12].png")
    result = CliRunner().invoke(
        main,
        [
            "predict",
            "--onnx",
            str(exported.path),
            "--model",
            "lenet5",
            "--json",
            "--top-k",
            "3",
            "--batch-size",
            "2",
            str(images_dir),
            pattern,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    names = ["img0.png", "img1.png", "img2.png", "img1.png", "img2.png"]
    assert [Path(row["file"]).name for row in rows] == names
    probs = Classifier(exported.path).predict_probs(np.stack([np.asarray(Image.open(images_dir / n)) for n in names]))
    for row, expected in zip(rows, probs, strict=True):
        assert set(row) == {"file", "label", "class_id", "probability", "uncertain", "top_k"}
        assert row["class_id"] == int(expected.argmax()) and row["label"] == FASHION_CLASSES[row["class_id"]]
        assert [t["label"] for t in row["top_k"]][0] == row["label"] and len(row["top_k"]) == 3
        top = [t["probability"] for t in row["top_k"]]
        assert top == sorted(top, reverse=True) and top[0] == row["probability"]
        assert abs(row["probability"] - float(expected.max())) < 1e-5


def test_predict_human_output_and_keras_backend_agree(exported: Exported, images_dir: Path) -> None:
    path, weights = exported.path, exported.weights
    common = ["predict", "--model", "lenet5", "--top-k", "2", str(images_dir)]
    onnx_run = CliRunner().invoke(main, [*common, "--onnx", str(path)])
    keras_run = CliRunner().invoke(main, [*common, "--backend", "keras", "--weights", str(weights)])
    assert onnx_run.exit_code == keras_run.exit_code == 0, onnx_run.output + keras_run.output
    lines = onnx_run.stdout.splitlines()
    assert len(lines) == 3 and all(PREDICTION.match(line) for line in lines), lines
    assert all(PREDICTION.match(line)["rest"].count(",") == 1 for line in lines)
    assert [line.split(" (")[0] for line in keras_run.stdout.splitlines()] == [line.split(" (")[0] for line in lines]
    mixed = CliRunner().invoke(main, [*common, "--onnx", str(path), "--backend", "keras"])
    assert mixed.exit_code == 1 and mixed.stderr.startswith("fashionzoo: error: --onnx is for --backend onnx")


def test_predict_bad_inputs_fail_one_line_each(
    exported: Exported, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    good = images_dir / "img0.png"
    (bad / "notimage.png").write_text("plain text, not a PNG")
    (bad / "empty.png").write_bytes(b"")
    data = good.read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("1", (8000, 6000)).save(bad / "bomb.png")  # 48 megapixels: over the limit, tiny file
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path: os.PathLike | str = ".") -> object:  # root ignores permissions: refuse the listing here
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    inputs = [
        str(good),
        str(tmp_path / "missing.png"),
        *(str(bad / n) for n in ("notimage.png", "empty.png", "truncated.png", "bomb.png")),
        str(locked),
        str(images_dir / "img1.png"),
        str(tmp_path / "nothing*.png"),
    ]
    result = CliRunner().invoke(main, ["predict", "--onnx", str(exported.path), "--model", "lenet5", *inputs])
    assert result.exit_code == 1
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(good), str(images_dir / "img1.png")]
    errors = result.stderr.splitlines()
    expected = {
        "missing.png": "no such file",
        "notimage.png": "not an image",
        "empty.png": "empty (0 bytes)",
        "truncated.png": "truncated or corrupt",
        "bomb.png": "decompression bomb",
        "locked": "permission denied",
        "nothing*.png": "no file matches",
    }
    assert len(errors) == len(expected), errors
    for line, (name, reason) in zip(errors, expected.items(), strict=True):
        assert line.startswith("fashionzoo: error: ") and name in line and reason in line, line
