"""Foreign ONNX files against the runtime wing (``fashionzoo.runtime``): a graph that would loop without end, fill the
memory or compute for minutes is refused before a session is made, in one line naming the file and the operator;
every released file passes; a batch past the memory arena's bound fails in one line; a named pipe is named so."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_cli_error, assert_one_line, garment_pngs, run_cli
from onnx import TensorProto, helper, numpy_helper, save

from fashionzoo.core.errors import FashionZooError
from fashionzoo.publish import hub
from fashionzoo.registry.lookup import get_entry
from fashionzoo.runtime import Classifier
from fashionzoo.runtime.graph_limits import ALLOWED_OPERATORS, MAX_ELEMENTS_PER_IMAGE, MAX_MACS_PER_IMAGE, check_graph
from fashionzoo.runtime.session import MEMORY_LIMIT

CHECKPOINTS = Path(__file__).resolve().parents[2] / "src" / "fashionzoo" / "checkpoints"


def onnx_file(path: Path, kind: str) -> Path:
    """A small hand-built classifier, [N, 28, 28, 1] -> [N, 10], whose softmax also takes the mean of a tensor
    ``kind`` makes from the image: ``constant-of-shape`` (N x 5e8 zeros, 2 GB an image), ``loop`` (10^15 turns),
    ``custom`` (an operator of an unknown domain), ``wide`` (a broadcast 4,100 x 4,100 values an image), ``conv``
    (4,096 21x21 filters: 1.4e9 multiply-adds an image), ``run-sized`` (a convolution whose filter count is the batch
    size, known only when it runs), ``resize`` (to 32x32 by constant scales: allowed), ``resize-run-sized`` (to a side
    read from the pixels) or ``batch-square`` (784 x 784 values an image: 2.5 GB for a
    batch of 1,024, each image within the bounds)."""
    constants = []

    def const(name: str, values: object, dtype: type = np.int64) -> str:
        constants.append(numpy_helper.from_array(np.array(values, dtype), name))
        return name

    flat = helper.make_node("Reshape", ["image", const("flat_shape", [-1, 784])], ["flat"])
    ten = helper.make_node("Slice", ["flat", const("start", [0]), const("end", [10]), const("axis", [1])], ["ten"])
    nodes = [flat, ten]
    domains = [helper.make_opsetid("", 17)]
    if kind == "constant-of-shape":
        nodes += [
            helper.make_node("Shape", ["image"], ["shape"]),
            helper.make_node("Gather", ["shape", const("zero", [0])], ["batch"]),
            helper.make_node("Concat", ["batch", const("huge", [500_000_000])], ["bomb_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["bomb_shape"], ["made"]),
        ]
    elif kind == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["go"], ["go_on"]), helper.make_node("Identity", ["carried"], ["kept"])],
            "body",
            [
                helper.make_tensor_value_info("turn", TensorProto.INT64, []),
                helper.make_tensor_value_info("go", TensorProto.BOOL, []),
                helper.make_tensor_value_info("carried", TensorProto.FLOAT, None),
            ],
            [
                helper.make_tensor_value_info("go_on", TensorProto.BOOL, []),
                helper.make_tensor_value_info("kept", TensorProto.FLOAT, None),
            ],
        )
        trips, go = const("trips", 10**15), const("go", True, np.bool_)
        nodes.append(helper.make_node("Loop", [trips, go, "flat"], ["made"], body=body))
    elif kind == "custom":
        nodes.append(helper.make_node("Boom", ["flat"], ["made"], domain="attacker.ops"))
        domains.append(helper.make_opsetid("attacker.ops", 1))
    elif kind == "wide":
        rows, cols = const("rows", np.ones((4100, 1)), np.float32), const("cols", np.ones((1, 4100)), np.float32)
        nodes += [
            helper.make_node("Reshape", ["image", const("column", [-1, 784, 1, 1])], ["pixels"]),
            helper.make_node("Add", [rows, cols], ["square"]),
            helper.make_node("Mul", ["pixels", "square"], ["made"]),
        ]
    elif kind == "conv":
        filters = const("filters", np.ones((4096, 1, 1, 1)), np.float32)
        window = const("window", np.ones((1, 1, 21, 21)), np.float32)
        nodes += [
            helper.make_node("Transpose", ["image"], ["planar"], perm=[0, 3, 1, 2]),
            helper.make_node("Add", [filters, window], ["weights"]),
            helper.make_node("Conv", ["planar", "weights"], ["made"], pads=[10, 10, 10, 10]),
        ]
    elif kind == "run-sized":
        window = const("window_values", np.ones(441), np.float32)
        nodes += [
            helper.make_node("Shape", ["image"], ["shape"]),
            helper.make_node("Gather", ["shape", const("zero", [0])], ["batch"]),
            helper.make_node("Concat", ["batch", const("window_shape", [1, 21, 21])], ["weights_shape"], axis=0),
            helper.make_node("Reshape", [window, "weights_shape"], ["weights"]),
            helper.make_node("Transpose", ["image"], ["planar"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["planar", "weights"], ["made"], name="sized_by_data", pads=[10, 10, 10, 10]),
        ]
    elif kind in ("resize", "resize-run-sized"):
        nodes.append(helper.make_node("Transpose", ["image"], ["planar"], perm=[0, 3, 1, 2]))
        if kind == "resize":  # constant scales, as the transfer models' 28 -> 32: allowed, its size known
            sizing = ["", const("scales", [1, 1, 32 / 28, 32 / 28], np.float32)]
        else:  # a side read from the pixels: up to 10,000 x 10,000 for a white image
            nodes += [
                helper.make_node("Shape", ["image"], ["shape"]),
                helper.make_node("Gather", ["shape", const("zero", [0])], ["batch"]),
                helper.make_node("ReduceMax", ["flat"], ["brightest"], keepdims=0),
                helper.make_node("Mul", ["brightest", const("grow", 10_000.0, np.float32)], ["side_float"]),
                helper.make_node("Cast", ["side_float"], ["side_scalar"], to=TensorProto.INT64),
                helper.make_node("Reshape", ["side_scalar", const("one", [1])], ["side"]),
                helper.make_node("Concat", ["batch", const("channel", [1]), "side", "side"], ["sizes"], axis=0),
            ]
            sizing = ["", "", "sizes"]
        nodes.append(helper.make_node("Resize", ["planar", *sizing], ["made"], name="grown", mode="linear"))
    elif kind == "batch-square":
        nodes += [
            helper.make_node("Reshape", ["image", const("column", [-1, 784, 1])], ["column_pixels"]),
            helper.make_node("Reshape", ["image", const("row", [-1, 1, 784])], ["row_pixels"]),
            helper.make_node("Mul", ["column_pixels", "row_pixels"], ["made"]),
        ]
    nodes += [
        helper.make_node("Flatten", ["made"], ["made_flat"], axis=1),
        helper.make_node("ReduceMean", ["made_flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["ten", "mean"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=domains)
    model.ir_version = 8
    save(model, path)
    return path


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("constant-of-shape", "operator ConstantOfShape is not allowed"),
        ("loop", "operator Loop is not allowed"),
        ("custom", "operator Boom of the custom domain 'attacker.ops' is not allowed"),
        (
            "wide",
            f"tensor 'square' would hold 16,810,000 values per image, over the limit of {MAX_ELEMENTS_PER_IMAGE:,}",
        ),
        ("run-sized", "operator Conv (sized_by_data) has sizes known only when it runs"),
        ("resize-run-sized", "operator Resize (grown) has sizes known only when it runs"),
        ("conv", f"takes 1,416,167,424 multiply-adds per image, over the limit of {MAX_MACS_PER_IMAGE:,}"),
    ],
)
def test_an_onnx_bomb_is_refused_before_a_session_is_made(tmp_path: Path, kind: str, fragment: str) -> None:
    """Issue 32, item 15: a 31 KB ``ConstantOfShape`` model took 2.1 GB for one image; a ``Loop`` of 10^15 turns
    hung ``predict``; a custom operator, a broadcast or a convolution past any classifier's size ran as asked."""
    model = onnx_file(tmp_path / f"{kind}.onnx", kind)
    assert model.stat().st_size < 40_000

    with pytest.raises(FashionZooError) as caught:
        Classifier(model)

    assert_one_line(caught, str(model), fragment)


def test_predict_with_a_looping_onnx_file_ends_at_once_in_one_line(tmp_path: Path) -> None:
    """Issue 32, item 15: ``predict --onnx`` of the Loop model hung; now the command refuses the file."""
    model = onnx_file(tmp_path / "loop.onnx", "loop")
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(model), "--json", timeout=120)

    assert_cli_error(result, str(model), "operator Loop is not allowed")


def test_a_batch_past_the_memory_bound_fails_in_one_line(tmp_path: Path) -> None:
    """Issue 32, item 15: what shape inference passes is bounded when it runs: a batch of 1,024 asking for 2.5 GB
    at once took it; ONNX Runtime's arena now refuses past MEMORY_LIMIT, and a batch of one still runs."""
    model = onnx_file(tmp_path / "square.onnx", "batch-square")
    classifier = Classifier(model)
    images = np.full((1024, 28, 28), 200, dtype=np.uint8)

    assert classifier.predict_probs(images[:1]).shape == (1, 10)
    with pytest.raises(FashionZooError) as caught:
        classifier.predict_probs(images, batch_size=1024)

    assert_one_line(caught, str(model), f"2,517,630,976 bytes at once, over the {MEMORY_LIMIT >> 20} MB")


def test_every_released_onnx_file_passes_the_bounds() -> None:
    """The zoo's own exports, fp32 and int8, use only allowed operators and stay within the bounds."""
    files = sorted(CHECKPOINTS.glob("*.onnx"))
    assert len(files) >= 38
    assert any(".int8." in file.name for file in files)
    for file in files:
        check_graph(file)
    assert "Loop" not in ALLOWED_OPERATORS and "ConstantOfShape" not in ALLOWED_OPERATORS


def test_a_resize_of_constant_scales_runs_as_the_transfer_models_need_it(tmp_path: Path) -> None:
    """``Resize`` and ``Pad`` are allowed where shape inference knows their size (the transfer models resize 28 to 32
    inside the graph); the one read from the pixels is refused above."""
    model = onnx_file(tmp_path / "resize.onnx", "resize")
    assert Classifier(model).predict_probs(np.zeros((2, 28, 28), np.uint8)).shape == (2, 10)


def test_a_named_pipe_given_as_a_model_file_is_named_so_without_blocking(tmp_path: Path) -> None:
    """Issue 32, item 28: a FIFO given to ``--onnx`` or ``--weights`` was reported as "no such file ... a onnx file";
    it is not opened (reading a named pipe blocks until something writes to it)."""
    pipe = tmp_path / "model.onnx"
    os.mkfifo(pipe)
    image = garment_pngs(tmp_path, "shirt.png")[0]

    result = run_cli("predict", str(image), "--onnx", str(pipe), timeout=120)

    assert_cli_error(result, f"{pipe}: is a named pipe (FIFO), not a regular file; pass the path of an ONNX file")
    with pytest.raises(FashionZooError) as caught:
        hub.released_file(get_entry("lenet5"), "weights", pipe)
    assert_one_line(caught, f"{pipe}: is a named pipe (FIFO), not a regular file; pass the path of a weights file")
