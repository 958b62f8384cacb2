"""What an ONNX file may ask of ONNX Runtime: the operators of an image classifier, bounded tensors and compute.

A foreign file is code: a 31 KB graph once asked for 2 GB per image (``ConstantOfShape``), another looped 10^15 times
(``Loop``). Before a session is made, the graph is read with the ``onnx`` package and refused unless every node is a
standard operator of :data:`ALLOWED_OPERATORS` (no control flow, no operator that makes a tensor of a size read from
data, no custom domain or local function), and, with the shapes ``onnx``'s shape inference finds, no tensor holds
more than :data:`MAX_ELEMENTS_PER_IMAGE` values and the convolutions, matrix products and pooling ask for at most
:data:`MAX_MACS_PER_IMAGE` multiply-adds per image (one whose sizes are known only when it runs is refused: that
is the time bound, as ONNX Runtime cannot stop a running operator). What shape inference cannot see (a batch axis
that hides a size, such as a reshape folding pixels into it) is left to the memory bound of the session
(:data:`fashionzoo.runtime.session.MEMORY_LIMIT`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NoReturn

import onnx

from fashionzoo.core.errors import FashionZooError, reason

ALLOWED_OPERATORS = frozenset(
    """Abs Add AveragePool BatchNormalization Cast Clip Concat Constant Conv DequantizeLinear Div Dropout Elu Erf Exp
    Flatten Gather Gemm GlobalAveragePool GlobalMaxPool HardSigmoid HardSwish Identity InstanceNormalization
    LayerNormalization LeakyRelu Log LogSoftmax LRN MatMul MatMulInteger Max MaxPool Mean Min Mul Neg PRelu Pow
    QLinearConv QLinearMatMul QuantizeLinear ReduceL2 ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape Selu
    Shape Sigmoid Sign Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Transpose Unsqueeze""".split()  # noqa: SIM905 (a table to read)
)
"""The standard operators (domain ``ai.onnx``) a file may use: those the zoo's own exports use (fp32 and int8), and
the usual layers of other image classifiers. Left out: control flow (``Loop``, ``If``, ``Scan``), which may run
without end, and operators whose output size is read from data (``ConstantOfShape``, ``Expand``, ``Tile``,
``Range``...), which may fill the memory; but for those of :data:`SIZED_BY_CONSTANTS`."""
SIZED_BY_CONSTANTS = frozenset({"Resize", "Pad"})
"""Operators allowed where shape inference knows their output's size (constant scales, sizes or pads, as in the
transfer models' 28 -> 32 resize), which the tensor bound below then limits; sizes read when the model runs are
refused."""
MAX_ELEMENTS_PER_IMAGE = 1 << 24
"""Most values a tensor may hold per image where shape inference knows its size (16.8 million, 64 MB of float32);
the zoo's largest holds 819,200 (cnn's dense weights, dequantized in its int8 file). Stored weights, whose size
the file bounds, are not counted."""
MAX_MACS_PER_IMAGE = 10**9
"""Most multiply-adds of convolutions and matrix products per image where shape inference knows their sizes; the
zoo's largest model (zoo-ensemble) needs 74 million."""
_STANDARD_DOMAINS = ("", "ai.onnx")


def check_graph(path: Path) -> None:
    """Refuse, with one line naming ``path`` and the fault, an ONNX file outside the bounds of this module."""
    stat = path.stat()
    _check_version(str(path), str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _check_version(path: str, resolved: str, mtime_ns: int, size: int) -> None:
    """:func:`check_graph` once per version of a file (both sessions of a classifier read it), named ``path`` in
    its errors as the caller gave it."""
    try:
        model = onnx.load(resolved, load_external_data=False)
    except Exception:  # protobuf's DecodeError and others: not a model; ONNX Runtime then gives its own reason
        return
    if model.functions:
        _refuse(path, f"local function {model.functions[0].name} is not allowed in a model fashionzoo runs")
    for node in model.graph.node:
        if node.domain not in _STANDARD_DOMAINS:
            _refuse(path, f"operator {node.op_type} of the custom domain {node.domain!r} is not allowed")
        if node.op_type not in ALLOWED_OPERATORS | SIZED_BY_CONSTANTS:
            _refuse(path, f"operator {node.op_type} is not allowed in a model fashionzoo runs")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:  # onnx's InferenceError, ValidationError
        raise FashionZooError(
            f"{path}: not a usable ONNX model (its shapes do not add up: {reason(error, first_line=True)})"
        ) from None
    shapes = {value.name: _shape(value) for value in _values(inferred.graph)}
    for node in inferred.graph.node:
        output = shapes.get(node.output[0])
        if node.op_type in SIZED_BY_CONSTANTS and (output is None or None in output[1:]):
            _refuse(path, f"operator {node.op_type} ({node.name or node.output[0]}) has sizes known only when it runs")
    for name, shape in shapes.items():
        if shape is not None and (values := _per_image(shape)) > MAX_ELEMENTS_PER_IMAGE:
            _refuse(
                path,
                f"tensor {name!r} would hold {values:,} values per image, over the limit of {MAX_ELEMENTS_PER_IMAGE:,}",
            )
    shapes.update({tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer})
    macs = sum(_multiply_adds(path, node, shapes) for node in inferred.graph.node)
    if macs > MAX_MACS_PER_IMAGE:
        _refuse(path, f"the model takes {macs:,} multiply-adds per image, over the limit of {MAX_MACS_PER_IMAGE:,}")


def _refuse(path: str, fault: str) -> NoReturn:
    raise FashionZooError(
        f"{path}: {fault} (fashionzoo bounds what a model file may do: docs/reliability.md); "
        "export the model with standard layers"
    )


def _values(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    return [*graph.input, *graph.value_info, *graph.output]


Shape = tuple[int | None, ...]
"""A tensor's dimensions, None for one shape inference only names (the batch, or a size known when it runs)."""


def _shape(value: onnx.ValueInfoProto) -> Shape | None:
    """A tensor's dimensions as shape inference found them; None when even the rank is unknown."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim)


def _per_image(shape: Shape) -> int:
    """Values per image of a tensor: a named dimension counted as 1 (the batch)."""
    return math.prod(1 if dim is None else dim for dim in shape)


_WEIGHTS_INPUT = {"Conv": 1, "QLinearConv": 3, "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "Gemm": 1}
"""Which input of each convolution and matrix product holds its weights."""
_WINDOWED = ("MaxPool", "AveragePool")


def _multiply_adds(path: str, node: onnx.NodeProto, shapes: dict[str, Shape | None]) -> int:
    """Multiply-adds (or comparisons) per image of a convolution, matrix product or pooling: each output value
    sums over the weights' receptive field (convolutions), the shared axis (matrix products) or the window
    (pooling). One whose weights or output have sizes known only when it runs is refused: it could not be
    bounded."""
    if node.op_type not in _WEIGHTS_INPUT and node.op_type not in _WINDOWED:
        return 0
    index = _WEIGHTS_INPUT.get(node.op_type, 0)
    output = shapes.get(node.output[0])
    weights = shapes.get(node.input[index]) if len(node.input) > index else None
    if (
        output is None
        or weights is None
        or None in output[1:]
        or None in (weights[1:] if node.op_type in _WINDOWED else weights)
    ):
        _refuse(path, f"operator {node.op_type} ({node.name or node.output[0]}) has sizes known only when it runs")
    if node.op_type in _WINDOWED:
        field = math.prod(next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), []))
    elif "Conv" in node.op_type:
        field = _per_image((1, *weights[1:]))
    elif node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        field = weights[-1] or 1
    else:
        field = (weights[-2] if len(weights) > 1 else weights[0]) or 1
    return _per_image(output) * field
