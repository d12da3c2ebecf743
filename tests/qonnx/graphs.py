"""Hand-built QONNX graphs (onnx.helper) for the importer's tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

QONNX = "qonnx.custom_op.general"


class Graph:
    """Nodes named ``<op type lower><index>``, outputs ``t<index>``, constants ``c<index>``."""

    def __init__(self, input_shape=(32, 1, 4, 4)):
        self.nodes, self.inits = [], []
        self.input_shape = tuple(input_shape)

    def const(self, value, dtype=np.float32) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        i = len(self.nodes)
        out = f"t{i}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}{i}",
                                           domain=domain, **attrs))
        return out

    def quant(self, x: str, scale, bits: int, *, signed: int = 1, narrow: int = 0,
              mode: str = "ROUND", zero=0.0) -> str:
        return self.node("Quant", [x, self.const(scale), self.const(zero),
                                   self.const(float(bits))],
                         domain=QONNX, signed=signed, narrow=narrow, rounding_mode=mode)

    def weight(self, ints, scale, bits: int, **kw) -> str:
        """A Quant of the float constant ``ints * scale`` (exact in float32)."""
        value = np.asarray(ints, dtype=np.float64) * np.asarray(scale, dtype=np.float64)
        return self.quant(self.const(value), scale, bits, **kw)

    def model(self, out: str):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.input_shape))
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "g", [x], [y], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                        helper.make_opsetid(QONNX, 1)])
        return ModelWrapper(model).transform(InferShapes()).model


def conv_net(*, conv_mode: str = "FLOOR", fc_mode: str = "FLOOR", act_zero: float = 0.0,
             act_scale=0.25, seed: int = 0):
    """x (32, 1, 4, 4) -> Quant(0.5, INT8) -> Conv 3x3 pad 1, 2 channels (INT4 narrow,
    per-channel scales 1/4 and 1/8; an INT16 bias of scale s_in * s_w) -> Relu ->
    Quant(act_scale, UINT8) -> MaxPool 2x2 -> Flatten -> Gemm (INT4, scale 1/2, transB) ->
    Quant(1, INT8). Every scale a power of two. Returns the model and its integer
    parameters."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.quant("x", 0.5, 8)
    w = rng.integers(-7, 8, size=(2, 1, 3, 3))
    s_w = np.array([0.25, 0.125]).reshape(2, 1, 1, 1)
    bias = np.array([3, -5])
    wq = g.weight(w, s_w, 4, narrow=1)
    bq = g.weight(bias, 0.5 * s_w.ravel(), 16)
    y = g.node("Conv", [x, wq, bq], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    y = g.node("Relu", [y])
    y = g.quant(y, act_scale, 8, signed=0, mode=conv_mode, zero=act_zero)
    y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = g.node("Flatten", [y], axis=1)
    fc = rng.integers(-8, 8, size=(3, 8))
    y = g.node("Gemm", [y, g.weight(fc, 0.5, 4)], transB=1)
    y = g.quant(y, 1.0, 8, mode=fc_mode)
    return g.model(y), dict(w=w, bias=bias, fc=fc)


def inputs(n: int = 32, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Float inputs on the input quantizer's grid (scale 1/2) and their integers."""
    x_int = np.random.default_rng(seed).integers(-128, 128, size=(n, 1, 4, 4))
    return (x_int * 0.5).astype(np.float32), x_int
