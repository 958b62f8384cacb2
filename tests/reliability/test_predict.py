"""``predict`` (``fashionzoo.runtime``) attacked from the command line, in fresh processes: 10,000 files with bounded
memory, ONNX models that break at run time or give NaN, symbolic link loops, empty paths, escape sequences and
non-UTF-8 names, blank images."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI_ENV, assert_cli_error, garment_pngs, run_cli, strict_json, wait_for
from PIL import Image

from fashionzoo.publish import hub
from fashionzoo.registry.lookup import get_entry


@pytest.mark.slow  # 10,000 files written, then classified
def test_predict_streams_a_directory_of_10000_images_with_bounded_memory(tmp_path: Path) -> None:
    """10,000 files go through in batches with a progress count, and the process stays small."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10_000):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    onnx_path = hub.released_file(get_entry("lenet5"), "onnx")
    # VmHWM: the peak RSS of this process image (ru_maxrss would include the forking pytest process)
    code = (
        "import sys\n"
        "from fashionzoo.cli import main\n"
        "try:\n"
        f"    main(['predict', {str(folder)!r}, '--onnx', {str(onnx_path)!r}, '--model', 'lenet5', '--json',\n"
        "          '--progress', '--batch-size', '500'])\n"
        "except SystemExit:\n"
        "    peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "    print('peak_kb', peak.split()[1], file=sys.stderr)\n"
        "    raise\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 10_000 and rows[0]["file"].endswith("00000.png") and rows[-1]["file"].endswith("09999.png")
    assert "fashionzoo: 500 files done" in result.stderr and "fashionzoo: 10000 files done" in result.stderr
    peak_mb = int(result.stderr.split("peak_kb")[-1].split()[0]) / 1024
    assert peak_mb < 400, f"peak memory {peak_mb:.0f} MB"


# -- ONNX models that break --------------------------------------------------------------------------------------------


def tiny_onnx(path: Path, kind: str, classes: list[str] | None = None) -> Path:
    """A small hand-built ONNX classifier, [N, 28, 28, 1] -> declared [N, 10]: ``softmax`` (first 10 pixels),
    ``one-row`` (one row whatever N), ``fails`` (a Reshape that fails unless N is a multiple of 5), ``nan`` (pixels
    divided by 0: NaN and infinity), ``logits`` (the first 10 pixels times 100, no softmax). ``classes`` go into the
    fashionzoo.classes metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, constants = [], []

    def const(name: str, values: list, dtype: type = np.int64) -> str:
        constants.append(numpy_helper.from_array(np.array(values, dtype), name))
        return name

    shape = {"one-row": [1, 784], "fails": [-1, 10]}.get(kind, [-1, 784])
    source = "image"
    if kind == "one-row":
        nodes.append(helper.make_node("ReduceMean", ["image"], ["mean"], axes=[0], keepdims=1))
        source = "mean"
    nodes.append(helper.make_node("Reshape", [source, const("shape", shape)], ["flat"]))
    logits = "flat"
    if kind != "fails":
        nodes.append(
            helper.make_node(
                "Slice", ["flat", const("starts", [0]), const("ends", [10]), const("axes", [1])], ["logits"]
            )
        )
        logits = "logits"
    if kind == "nan":
        nodes.append(helper.make_node("Div", [logits, const("zero", [0.0], np.float32)], ["probabilities"]))
    elif kind == "logits":
        nodes.append(helper.make_node("Mul", [logits, const("hundred", [100.0], np.float32)], ["probabilities"]))
    else:
        nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])]
    graph = helper.make_graph(nodes, kind, inputs, outputs, constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if classes:
        helper.set_model_props(model, {"fashionzoo.classes": json.dumps(classes)})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("kind", "fragment"), [("one-row", "returned shape (1, 10) for 2 images"), ("fails", "failed while running")]
)
def test_predict_with_an_onnx_model_that_breaks_at_run_time(tmp_path: Path, kind: str, fragment: str) -> None:
    model = tiny_onnx(tmp_path / f"{kind}.onnx", kind)
    images = garment_pngs(tmp_path / "photos", "a.png", "b.png")

    result = run_cli("predict", *map(str, images), "--onnx", str(model), "--model", "lenet5")

    assert_cli_error(result, str(model), fragment)


def test_predict_json_with_a_model_giving_nan_and_infinity_is_strict_json(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "nan.onnx", "nan")
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(model), "--model", "lenet5", "--json")

    message = assert_cli_error(result, "shirt.png", "non-finite probabilities")
    assert [strict_json(line) for line in result.stdout.splitlines()] == [
        {"file": str(image), "error": message.removeprefix("fashionzoo: error: ")}
    ]  # no probability, no NaN


def test_predict_refuses_a_foreign_model_whose_outputs_are_not_probabilities(tmp_path: Path) -> None:
    """Issue 32, item 8: a model ending in logits printed ``Pullover (52.94)`` and wrote ``"probability": 52.94``."""
    model = tiny_onnx(tmp_path / "logits.onnx", "logits")
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(model), "--model", "lenet5", "--json")

    assert_cli_error(result, str(model), "not probabilities", "softmax")


@pytest.mark.parametrize(
    ("classes", "fragment"),
    [(["a", "b", "a"] + list("cdefghi"), "names a twice"), (["", *"bcdefghij"], "not a JSON list")],
)
def test_class_names_that_repeat_or_are_empty_are_refused(tmp_path: Path, classes: list[str], fragment: str) -> None:
    """Issue 32, item 8: duplicate or empty class names were accepted."""
    model = tiny_onnx(tmp_path / "named.onnx", "softmax", classes)
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(model))

    assert_cli_error(result, str(model), fragment)


# -- symbolic link loops in folders ------------------------------------------------------------------------------------


@pytest.fixture
def loop_dir(tmp_path: Path) -> Path:
    """loopdir/{a,b}.png, loopdir/sub/c.png, two '..' links in sub and a self-looping self.png."""
    folder = tmp_path / "loopdir"
    garment_pngs(folder, "a.png", "b.png")
    garment_pngs(folder / "sub", "c.png")
    (folder / "sub" / "up1").symlink_to("..")
    (folder / "sub" / "up2").symlink_to("..")
    (folder / "self.png").symlink_to("self.png")
    return folder


def test_recursive_pattern_over_link_loops_walks_each_folder_once(loop_dir: Path) -> None:
    result = run_cli("predict", str(loop_dir / "**" / "*.png"), "--model", "lenet5", "--json", timeout=120)

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    classified = sorted(Path(row["file"]).relative_to(loop_dir).as_posix() for row in rows if "error" not in row)
    assert classified == ["a.png", "b.png", "sub/c.png"]
    failed = sorted(Path(row["file"]).relative_to(loop_dir).as_posix() for row in rows if "error" in row)
    assert failed == ["self.png", "sub/up1", "sub/up2"]  # --json has a line for every input
    errors = [line for line in result.stderr.splitlines() if line.startswith("fashionzoo: error:")]
    assert sorted(errors) == sorted(
        [
            f"fashionzoo: error: {loop_dir / 'self.png'}: a broken or looping symbolic link (check the path)",
            f"fashionzoo: error: {loop_dir / 'sub' / 'up1'}: symbolic link loop (it leads back to a folder above it); "
            "not followed",
            f"fashionzoo: error: {loop_dir / 'sub' / 'up2'}: symbolic link loop (it leads back to a folder above it); "
            "not followed",
        ]
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_a_self_looping_link_does_not_hide_the_good_images_of_its_folder(loop_dir: Path) -> None:
    result = run_cli("predict", str(loop_dir), "--model", "lenet5", "--json", timeout=120)

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(row["file"]).name for row in rows if "error" not in row) == ["a.png", "b.png"]
    assert_cli_error(result, "self.png", "looping symbolic link")


# -- names and blank images --------------------------------------------------------------------------------------------


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path: Path) -> None:
    garment_pngs(tmp_path, "here.png")

    result = run_cli("predict", "", "--model", "lenet5", cwd=tmp_path)

    assert_cli_error(result, "empty path")
    assert result.stdout == ""  # here.png is not classified


def test_newlines_and_escapes_in_names_and_class_names_are_escaped(tmp_path: Path) -> None:
    image = garment_pngs(tmp_path, "evil\n\x1b[2J.png")[0]
    classes = [f"class{i}\x1b[31m\nred" for i in range(10)]
    model = tiny_onnx(tmp_path / "named.onnx", "softmax", classes=classes)

    result = run_cli(
        "predict",
        str(image),
        str(tmp_path / "gone\x1b]0;x\x07.png"),
        "--onnx",
        str(model),
        "--model",
        "lenet5",
        "--top-k",
        "2",
    )

    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "evil\\n\\x1b[2J.png: class" in result.stdout and "\\x1b[31m\\nred" in result.stdout
    assert_cli_error(result, "gone\\x1b]0;x\\x07.png")


def test_a_non_utf8_file_name_round_trips_through_json(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    garment_pngs(tmp_path, os.fsdecode(b"caf\xe9.png"))
    gone = os.fsencode(tmp_path) + b"/gone\xe9.png"

    result = subprocess.run(
        [sys.executable, "-m", "fashionzoo", "predict", raw, gone, "--model", "lenet5", "--json"],
        capture_output=True,
        timeout=300,
        env={**os.environ, **CLI_ENV},
    )

    assert result.returncode == 1, result.stderr[-2000:]  # the missing file
    row, failed = (strict_json(line) for line in result.stdout.decode("utf-8").splitlines())  # valid UTF-8
    assert row["file"].endswith("caf\ufffd.png") and failed["file"].endswith("gone\ufffd.png") and failed["error"]
    assert base64.b64decode(row["file_base64"]) == raw  # the exact bytes, to find the file again
    assert base64.b64decode(failed["file_base64"]) == gone


@pytest.mark.parametrize("image", ["white", "black", "1x1"])
def test_a_blank_image_is_not_classified(tmp_path: Path, image: str) -> None:
    path = tmp_path / f"{image}.png"
    {
        "white": Image.new("RGB", (300, 400), "white"),
        "black": Image.new("L", (28, 28), 0),
        "1x1": Image.new("RGB", (1, 1), (200, 10, 10)),
    }[image].save(path)

    result = run_cli("predict", str(path), "--model", "lenet5")

    assert_cli_error(result, f"{image}.png", "blank image", "nothing to classify")
    assert result.stdout == ""


def test_a_recursive_pattern_expands_a_tree_600_folders_deep(tmp_path: Path) -> None:
    """Issue 32, item 17: ``predict 'deep/**/*.png'`` stopped with RecursionError 500 folders down."""
    from fashionzoo.runtime.inputs import expand_inputs

    levels = [tmp_path / "deep"]
    for _ in range(600):  # made and removed one level at a time (mkdir(parents=True) and rmtree recurse too)
        levels.append(levels[-1] / "d")
    for level in levels:
        level.mkdir()
    (levels[-1] / "bottom.png").write_bytes(b"only listed here")
    try:
        assert list(expand_inputs([f"{levels[0]}/**/*.png"])) == [str(levels[-1] / "bottom.png")]
    finally:
        (levels[-1] / "bottom.png").unlink()
        for level in reversed(levels):
            level.rmdir()


# =============================================================================== predict --out's files (issue 32)


def test_rows_tell_a_name_that_is_not_utf8_from_one_spelt_with_its_escape(tmp_path: Path) -> None:
    """``caf\\xe9.png`` (byte 0xE9) and a file literally named ``caf\\xe9.png`` gave the same ``path``."""
    garment_pngs(tmp_path, os.fsdecode(b"caf\xe9.png"), "caf\\xe9.png")
    out = tmp_path / "rows.jsonl"

    result = run_cli("predict", str(tmp_path), "--model", "lenet5", "--out", str(out))

    assert result.returncode == 0, result.stderr[-2000:]
    rows = [strict_json(line) for line in out.read_text(encoding="utf-8").splitlines()]
    exact = [None if row["file_base64"] is None else base64.b64decode(row["file_base64"]) for row in rows]
    assert sorted(exact, key=str) == [None, os.fsencode(tmp_path) + b"/caf\xe9.png"]
    assert all(row["path"].endswith("caf\\xe9.png") for row in rows)  # the same text: file_base64 tells them apart


@pytest.mark.parametrize(
    "inputs, out",
    [
        (["mydata.jsonl", "x.png"], "mydata.jsonl"),
        (["mydata.jsonl"], "./sub/../mydata.jsonl"),  # another spelling of the same file
        (["link.jsonl", "x.png"], "mydata.jsonl"),  # a link to it
        (["list.parquet", "--engine", "ray"], "list.parquet"),  # checked on the driver, before any cluster
    ],
)
def test_out_naming_one_of_the_inputs_is_refused(tmp_path: Path, inputs: list[str], out: str) -> None:
    garment_pngs(tmp_path, "x.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "mydata.jsonl").write_text('{"mine": 1}\n', encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to("mydata.jsonl")
    if "--engine" in inputs:
        pa = pytest.importorskip("pyarrow")
        pytest.importorskip("pyarrow.parquet").write_table(
            pa.table({"path": ["x.png"], "label": ["mine"]}), tmp_path / "list.parquet"
        )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    result = run_cli("predict", *inputs, "--model", "lenet5", "--out", out, cwd=tmp_path)

    assert_cli_error(result, out, "is an input", "name another --out file")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_killed_predict_out_leaves_a_temporary_file_that_the_next_run_removes(tmp_path: Path) -> None:
    """kill -9 during ``predict --out``: the hidden ``.rows.jsonl.<pid>.*`` stayed for good."""
    images = tmp_path / "images"
    first = garment_pngs(images, "0000.png")[0]
    for i in range(1, 3000):  # enough work to be killed in the middle of
        shutil.copyfile(first, images / f"{i:04d}.png")
    out = tmp_path / "rows.jsonl"
    command = [sys.executable, "-m", "fashionzoo", "predict", str(images), "--model", "lenet5", "--out", str(out)]
    killed = subprocess.Popen(command, env={**os.environ, **CLI_ENV}, stderr=subprocess.DEVNULL)
    temporaries = lambda: [p.name for p in tmp_path.glob(".rows.jsonl.*")]  # noqa: E731
    try:
        assert wait_for(lambda: bool(temporaries()), timeout=120), "the run never began its file"
    finally:
        killed.kill()
        killed.wait()
    stale = temporaries()
    assert stale == [f".rows.jsonl.{killed.pid}.{stale[0].split('.')[-2]}.jsonl"] and not out.exists()

    result = run_cli("predict", str(first), "--model", "lenet5", "--out", str(out))

    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "rows.jsonl"]  # the dead run's file gone


def test_parquet_rows_on_a_full_disk_are_one_line(full_disk: Path, tmp_path: Path) -> None:
    """The last row group written on closing did not fit: an OSError traceback and "Exception ignored in
    generator"; JSON Lines was already one line."""
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for i in range(2000):  # rows of errors, one per file: more than the disk's few free kilobytes once written
        (unreadable / f"{i:04d}-{'x' * 40}.png").write_bytes(b"not an image")
    with open(full_disk / "filler", "wb") as filler:  # leave 8 KB: the file is begun, its rows do not fit
        filler.write(bytes(shutil.disk_usage(full_disk).free - 8192))
    out = full_disk / "rows.parquet"

    result = run_cli("predict", str(unreadable), "--model", "lenet5", "--out", str(out))

    assert_cli_error(result, str(out), "No space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no rows file, no temporary file


@pytest.mark.parametrize("ending", [".jsonl", ".parquet"])
def test_out_rows_say_why_a_prediction_is_uncertain_as_json_does(tmp_path: Path, ending: str) -> None:
    """``predict --json`` says ``uncertain_reason`` for a photo of three or more separate garments; the ``--out``
    rows (the local command's and Ray's, both built by ``prediction_files.table``) had no such column."""
    pq = pytest.importorskip("pyarrow.parquet")
    from fashionzoo.runtime import prediction_files as predictions
    from fashionzoo.runtime.results import Failure, Prediction

    reason = "3 separate garments in the photo; crop it to one"
    common = {"class_id": 0, "label": "T-shirt/top", "top_k": (("T-shirt/top", 0.9),), "top_k_class_ids": (0,)}
    several = Prediction("three.jpg", probability=0.9, uncertain=True, uncertain_reason=reason, **common)
    single = Prediction("one.jpg", probability=0.9, **common)
    results = [several, single, Failure("bad.png", "bad.png: not an image")]
    out = tmp_path / f"rows{ending}"

    predictions.write(predictions.tables(results, 2), str(out), progress=False)

    if ending == ".jsonl":
        rows = [strict_json(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        rows = pq.read_table(out).to_pylist()
    assert [row["uncertain_reason"] for row in rows] == [reason, None, None]
    assert list(rows[0]) == predictions.schema().names  # every row has every column, in the schema's order
    assert set(several.as_dict()) - {"file"} <= set(rows[0])  # all that --json says of a prediction
    assert predictions.table(results).to_pylist() == [predictions.row(result) for result in results]
