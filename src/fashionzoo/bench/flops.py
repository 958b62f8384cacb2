"""FLOPs of a model and the fp32 FLOP/s this CPU actually reaches, to state throughput as a fraction of a measured
peak rather than of the nominal one (cores x clock x vector width, which a virtual machine's reported clock and
Winograd kernels both distort)."""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

GEMM_SIZE = 1024
"""Side of the square fp32 matrices multiplied by :func:`measured_peak` (2 x 1024^3 FLOPs per product)."""


def flops_per_image(model: keras.Model) -> int:
    """FLOPs of one image: 2 x multiply-accumulates of every Conv2D and Dense layer (nested models included);
    bias, activations, pooling and softmax are left out (under 1% for the zoo's models)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += flops_per_image(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel_h, kernel_w, channels_in, _ = layer.kernel.shape
            total += 2 * math.prod(layer.output.shape[1:]) * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * math.prod(layer.input.shape[1:-1]) * math.prod(layer.kernel.shape)
    return total


def _matmul_model(size: int) -> bytes:
    """An ONNX graph multiplying a (size, size) input by a constant (size, size) matrix."""
    weights = np.random.default_rng(0).random((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
        [onnx.numpy_helper.from_array(weights, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def measured_peak(threads: int, repeats: int = 20, size: int = GEMM_SIZE) -> dict[str, float | int | str]:
    """The fp32 GFLOP/s of ONNX Runtime's MatMul (MLAS SGEMM) on ``threads`` threads: the fastest of ``repeats``
    products of two ``size`` x ``size`` matrices (the fastest, because other processes can only slow it down)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(_matmul_model(size), options, providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).random((size, size), dtype=np.float32)
    session.run(["c"], {"a": a})
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(["c"], {"a": a})
        best = min(best, time.perf_counter() - start)
    return {
        "gflops": 2 * size**3 / best / 1e9,
        "threads": threads,
        "size": size,
        "repeats": repeats,
        "how": f"fastest of {repeats} ONNX Runtime MatMul calls, fp32 {size}x{size} by {size}x{size}, "
        f"{threads} intra-op threads",
    }
