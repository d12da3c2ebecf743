"""Export a :class:`~hwq.ir.QuantizedNetwork` as a QONNX graph that computes it bit-exactly.

The graph carries hwq's integers in float tensors and does every step of
:mod:`hwq.golden` with float operations that are exact on the values they can meet, so
``qonnx.core.onnx_exec.execute_onnx`` (qonnx's ``Quant`` in NumPy, every other node in
onnxruntime) returns :func:`hwq.golden.run`'s integer outputs exactly:

* **input** ``input``: float32 ``(B, *input_shape)`` holding the ``act_bits``-bit integer
  input (what ``hwq.golden.run`` takes: quantize a float input with
  :func:`hwq.golden.quantize_input` and the ``input_scale`` of the metadata), then
  ``Quant(scale 1, zero point 0, act_bits, signed, ROUND)``: the identity on valid inputs,
  which marks the tensor ``INT<act_bits>`` for QONNX tools.
* **weights**: integer-valued float32 initializers through ``Quant(scale 1, zero point 0,
  bits)`` (INT: the format's width; POT and codebook weights: the width of their values).
* ``Conv2d``, ``AvgPool2d`` (a depthwise kernel of ones), ``GlobalAvgPool2d`` (ones over
  ``H x W``): float32 ``Conv`` whose partial sums are integers below ``2**24`` in magnitude
  whatever the summation order (``sum |w| * 2**(act_bits-1) < 2**24`` per output channel),
  hence exact. A layer whose bound is larger becomes several ``Conv`` nodes over disjoint
  parts of each output channel's kernel, each below the bound, summed in float64; a weight
  that alone reaches it (POT weights, 16-bit activations) is split into base-``2**k``
  digit planes, each ``Conv`` result times ``2**(k*j)`` in float64.
* ``Linear``: ``Gemm`` in float64; ``Add``: ``a*wa + b*wb`` in float64.
* **requant**, float64: ``Add(bias)``, ``Mul(M)``, ``Add(2**(S-1))``, ``Mul(2**-S)``, each
  result a dyadic number whose numerator stays below ``2**53`` (checked per layer from the
  exact accumulator bound, after dividing common factors of two out of ``M`` and
  ``2**S``), then ``Clip(lo, hi)`` where the quantizer's range is not ``lo..hi``, and
  ``Quant(scale 1, zero point 0, FLOOR)``: ``floor((t*M + 2**(S-1)) * 2**-S)`` is
  hwq's ``(t*M + 2**(S-1)) >> S``.
* ``MaxPool2d``: ``MaxPool`` (padding never wins in ONNX either); ``Flatten``: ``Flatten``.

A layer whose requant product can reach ``2**53`` is refused, naming it. The batch size ``B`` is
fixed (qonnx's executor needs every shape). The metadata (``hwq.network``) keeps what
ONNX cannot say: each op's kind, weight format, output scale and the input scale;
:mod:`hwq.qonnx.importer` reads it back, so export then import gives a network with the same
golden outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hwq import __version__
from hwq.golden._checks import signed_bits_for, signed_range
from hwq.golden.ops import accumulator_range
from hwq.ir import (
    INPUT,
    Add,
    AvgPool2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    QuantizedNetwork,
    Requant,
)
from hwq.qonnx import require

#: qonnx's custom-op domain (``Quant``) and the opsets written.
QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
#: Metadata keys: the writer's format tag and the network annotation.
FORMAT_KEY, FORMAT_TAG = "hwq.format", "hwq-qonnx/1"
NETWORK_KEY = "hwq.network"
#: float32 and float64 hold every integer of magnitude below these exactly.
F32_EXACT, F64_EXACT = 1 << 24, 1 << 53


def export_qonnx(network: QuantizedNetwork, *, batch: int = 1) -> Any:
    """The QONNX ``onnx.ModelProto`` of ``network`` for a batch of ``batch`` samples.

    Raises ``ValueError`` naming the op when a layer cannot be computed exactly in
    float32/float64 (see the module docstring).
    """
    onnx = require("onnx")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"Batch size must be a positive integer, not {batch!r}")
    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a QuantizedNetwork, not {type(network).__name__}")
    network.validate()
    g = _Graph(onnx, int(batch), network.act_bits)
    shapes = network.tensor_shapes()
    # the graph input and its quantizer
    g.inputs.append(g.value_info("input", np.float32, shapes[INPUT]))
    names = {INPUT: g.quant("input", "input::int", network.act_bits, "ROUND", shapes[INPUT])}
    notes = {}
    for op in network.ops:
        xs = [names[t] for t in op.inputs]
        out_shape = shapes[op.name]
        in_shape = shapes[op.inputs[0]]
        if isinstance(op, Conv2d):
            acc = g.conv(op.name, xs[0], op.weight, _weight_bits(op), out_shape,
                         stride=op.stride, padding=op.padding, dilation=op.dilation,
                         groups=op.groups)
            bound = _acc_bound(op.weight, network.act_bits, op.requant.bias)
        elif isinstance(op, AvgPool2d | GlobalAvgPool2d):
            c = in_shape[0]
            if isinstance(op, AvgPool2d):
                kernel, stride, padding = op.kernel, op.stride, op.padding
            else:
                kernel, stride, padding = in_shape[1:], (1, 1), (0, 0, 0, 0)
            ones = np.ones((c, 1, *kernel), dtype=np.int64)
            acc = g.conv(op.name, xs[0], ones, 2, out_shape, stride=stride, padding=padding,
                         dilation=(1, 1), groups=c)
            bound = _acc_bound(ones, network.act_bits, op.requant.bias)
        elif isinstance(op, Linear):
            acc = g.gemm(op.name, xs[0], op.weight, _weight_bits(op), out_shape)
            bound = _acc_bound(op.weight, network.act_bits, op.requant.bias)
        elif isinstance(op, Add):
            acc = g.add(op.name, xs, op.weights, out_shape)
            peak = (1 << (network.act_bits - 1)) * sum(op.weights)
            bound = peak + np.abs(op.requant.bias)
        elif isinstance(op, MaxPool2d):
            (t, b, l, r) = op.padding
            names[op.name] = g.node("MaxPool", [xs[0]], op.name, np.float32, out_shape,
                                    kernel_shape=list(op.kernel), strides=list(op.stride),
                                    pads=[t, l, b, r])
            continue
        elif isinstance(op, Flatten):
            names[op.name] = g.node("Flatten", [xs[0]], op.name, np.float32, out_shape, axis=1)
            continue
        else:  # pragma: no cover - every registered op kind is handled above
            raise ValueError(f"{op.name}: op kind {op.kind!r} has no QONNX export")
        names[op.name] = g.requant(op.name, acc, op.requant, bound, out_shape)
        notes[op.name] = g.chunks.pop(op.name, 1)
    out = names[network.output]
    g.outputs.append(g.value_info(out, np.float32, shapes[network.output]))
    infos = [vi for vi in g.infos if vi.name != out]  # declared once, as the graph output
    graph = onnx.helper.make_graph(g.nodes, "hwq", g.inputs, g.outputs,
                                   initializer=g.initializers, value_info=infos)
    model = onnx.helper.make_model(
        graph, producer_name="hwq", producer_version=__version__,
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET),
                       onnx.helper.make_opsetid(QONNX_DOMAIN, 1)])
    model.ir_version = 8
    annotation = {
        "act_bits": network.act_bits,
        "input_scale": float(network.input_scale),
        "meta": network.meta,
        "ops": {op.name: _op_annotation(op, notes.get(op.name)) for op in network.ops},
    }
    onnx.helper.set_model_props(model, {FORMAT_KEY: FORMAT_TAG,
                                        NETWORK_KEY: json.dumps(annotation, sort_keys=True)})
    onnx.checker.check_model(model)
    return model


def save_qonnx(network: QuantizedNetwork, path: str | os.PathLike, *, batch: int = 1) -> Path:
    """Export ``network`` (:func:`export_qonnx`) and write it to ``path`` atomically."""
    from hwq.serialize import atomic_write

    path = Path(path)
    atomic_write(path, export_qonnx(network, batch=batch).SerializeToString())
    return path


def _weight_bits(op: Conv2d | Linear) -> int:
    """Bit width of the weights' ``Quant``: the INT format's, else that of the values."""
    if op.spec.kind == "int":
        return op.spec.max_bits()
    return max(2, signed_bits_for(int(op.weight.min()), int(op.weight.max())))


def _acc_bound(weight: np.ndarray, act_bits: int, bias: np.ndarray) -> np.ndarray:
    """Per output channel: the largest ``|acc + bias|`` over all ``act_bits`` inputs."""
    lo, hi = accumulator_range(weight, act_bits, bias)
    return np.maximum(np.abs(np.asarray(lo, dtype=object)),
                      np.abs(np.asarray(hi, dtype=object)))


def _op_annotation(op: Any, chunks: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": op.kind}
    if hasattr(op, "out_scale"):
        entry["out_scale"] = float(op.out_scale)
    if op.has_weights:
        spec = op.spec
        entry["spec"] = {"kind": spec.kind, "bits": spec.bits.tolist(),
                         "table": None if spec.table is None else spec.table.tolist(),
                         "table_bits": spec.table_bits}
    if chunks is not None and chunks > 1:
        entry["conv_parts"] = chunks
    return entry


def reduce_multiplier(M: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, S)`` with common factors of two divided out while ``S > 1``: the same
    ``(t*M + 2**(S-1)) >> S`` for every integer ``t``.

    >>> [v.tolist() for v in reduce_multiplier(np.array([12, 8, 3]), np.array([5, 2, 4]))]
    [[3, 4, 3], [3, 1, 4]]
    """
    M, S = np.array(M, dtype=np.int64), np.array(S, dtype=np.int64)
    while True:
        even = (M % 2 == 0) & (S > 1)
        if not even.any():
            return M, S
        M = np.where(even, M // 2, M)
        S = np.where(even, S - 1, S)


def digit_planes(weight: np.ndarray, peak: int, limit: int = F32_EXACT
                 ) -> list[tuple[int, np.ndarray]]:
    """``weight`` as ``sum_j 2**shift_j * plane_j`` with ``|plane| * peak < limit``: signed
    base-``2**k`` digits of ``|w|`` (one plane, shift 0, when ``weight`` already fits).

    >>> [(s, p.tolist()) for s, p in digit_planes(np.array([[-40, 3]]), peak=4, limit=64)]
    [(0, [[-8, 3]]), (4, [[-2, 0]])]
    """
    w = np.asarray(weight, dtype=np.int64)
    if not w.size or int(np.abs(w).max()) * peak < limit:
        return [(0, w)]
    k = ((limit - 1) // peak + 1).bit_length() - 1  # largest k: (2**k - 1) * peak < limit
    if k < 1:
        raise ValueError(f"an activation of magnitude {peak} alone reaches {limit}")
    mag, sign = np.abs(w), np.sign(w)
    planes, shift = [], 0
    while mag.any():
        planes.append((shift, sign * (mag & ((1 << k) - 1))))
        mag, shift = mag >> k, shift + k
    return planes


def kernel_parts(weight: np.ndarray, peak: int, limit: int = F32_EXACT) -> list[np.ndarray]:
    """Split ``weight`` ``(C_out, ...)`` into weights of disjoint support that sum to it,
    each with ``sum |w| * peak < limit`` per output channel (greedy over each channel's
    flattened kernel); ``ValueError`` when one weight alone reaches the limit.

    >>> [p.tolist() for p in kernel_parts(np.array([[3, -2, 1]]), peak=2, limit=8)]
    [[[3, 0, 0]], [[0, -2, 1]]]
    """
    flat = np.asarray(weight, dtype=np.int64).reshape(weight.shape[0], -1)
    mags = np.abs(flat).astype(object) * peak
    if flat.size and max(mags.ravel()) >= limit:
        raise ValueError(f"a weight of magnitude {int(np.abs(flat).max())} times the largest "
                         f"activation {peak} reaches {limit}")
    part_of = np.zeros(flat.shape, dtype=np.int64)
    for c in range(flat.shape[0]):
        part, total = 0, 0
        for k in range(flat.shape[1]):
            if total + mags[c, k] >= limit:
                part, total = part + 1, 0
            part_of[c, k] = part
            total += mags[c, k]
    parts = int(part_of.max()) + 1 if flat.size else 1
    return [np.where(part_of == j, flat, 0).reshape(weight.shape) for j in range(parts)]


class _Graph:
    """Nodes, initializers and value infos of the graph under construction."""

    def __init__(self, onnx: Any, batch: int, act_bits: int) -> None:
        self.onnx, self.batch, self.act_bits = onnx, batch, act_bits
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.infos: list[Any] = []
        self.names: set[str] = set()
        self.chunks: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}

    # -------------------------------------------------------------- primitives
    def _new(self, name: str) -> str:
        if name in self.names:
            raise ValueError(f"Tensor name {name!r} is used twice; rename the op")
        self.names.add(name)
        return name

    def value_info(self, name: str, dtype: type, shape: tuple[int, ...]) -> Any:
        elem = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return self.onnx.helper.make_tensor_value_info(name, elem, [self.batch, *shape])

    def const(self, value: np.ndarray, dtype: type, hint: str) -> str:
        arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self._new(f"{hint}")
            self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def node(self, op_type: str, inputs: list[str], out: str, dtype: type,
             shape: tuple[int, ...], domain: str = "", **attrs: Any) -> str:
        self._new(out)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out,
                                                     domain=domain, **attrs))
        self.infos.append(self.value_info(out, dtype, shape))
        return out

    def quant(self, x: str, out: str, bits: int, rounding: str, shape: tuple[int, ...],
              signed: bool = True, narrow: bool = False) -> str:
        """``Quant(x, scale 1, zero point 0, bits)``: float32 integers of that range."""
        ins = [x, self.const(1.0, np.float32, "hwq::one"), self.const(0.0, np.float32,
                                                                         "hwq::zero"),
               self.const(float(bits), np.float32, f"hwq::bits{bits}")]
        return self.node("Quant", ins, out, np.float32, shape, domain=QONNX_DOMAIN,
                         signed=int(signed), narrow=int(narrow), rounding_mode=rounding)

    # -------------------------------------------------------------- layers
    def conv(self, name: str, x: str, weight: np.ndarray, bits: int, shape: tuple[int, ...],
             *, stride: tuple, padding: tuple, dilation: tuple, groups: int) -> str:
        """Accumulators (float64) of an exact float32 convolution, split if needed: into
        base-``2**k`` digit planes when one weight times the largest activation reaches
        ``2**24``, each plane into kernel parts (:func:`kernel_parts`)."""
        peak = 1 << (self.act_bits - 1)
        t, b, l, r = padding
        accs = []
        planes = digit_planes(weight, peak)
        for i, (shift, plane) in enumerate(planes):
            parts = kernel_parts(plane, peak)
            for j, part in enumerate(parts):
                tag = (f"{i}." if len(planes) > 1 else "") + (f"{j}" if len(parts) > 1 else "")
                wq = self._weight_node(f"{name}::w{tag}", part,
                                       bits if len(planes) == 1 else
                                       max(2, signed_bits_for(int(part.min()),
                                                              int(part.max()))), part.shape)
                acc32 = self.node("Conv", [x, wq], f"{name}::conv{tag}", np.float32, shape,
                                  kernel_shape=list(part.shape[2:]), strides=list(stride),
                                  pads=[t, l, b, r], dilations=list(dilation), group=groups)
                acc = self.node("Cast", [acc32], f"{name}::acc{tag}", np.float64, shape,
                                to=self.onnx.TensorProto.DOUBLE)
                if shift:
                    acc = self.node("Mul", [acc, self.const(float(1 << shift), np.float64,
                                                            f"hwq::pow2_{shift}")],
                                    f"{name}::acc{tag}<<", np.float64, shape)
                accs.append(acc)
        self.chunks[name] = len(accs)
        acc = accs[0]
        for j, other in enumerate(accs[1:], start=1):
            acc = self.node("Add", [acc, other], f"{name}::sum{j}", np.float64, shape)
        return acc

    def _weight_node(self, name: str, w: np.ndarray, bits: int, wshape: tuple) -> str:
        init = self.const(w, np.float32, f"{name}::value")
        ins = [init, self.const(1.0, np.float32, "hwq::one"),
               self.const(0.0, np.float32, "hwq::zero"),
               self.const(float(bits), np.float32, f"hwq::bits{bits}")]
        self._new(name)
        self.nodes.append(self.onnx.helper.make_node(
            "Quant", ins, [name], name=name, domain=QONNX_DOMAIN, signed=1, narrow=0,
            rounding_mode="ROUND"))
        self.infos.append(self.onnx.helper.make_tensor_value_info(
            name, self.onnx.TensorProto.FLOAT, list(wshape)))
        return name

    def gemm(self, name: str, x: str, weight: np.ndarray, bits: int,
             shape: tuple[int, ...]) -> str:
        """Accumulators (float64) of ``x @ weight.T``: exact in float64."""
        wq = self._weight_node(f"{name}::w", weight, bits, weight.shape)
        wd = f"{name}::wd"
        self._new(wd)
        self.nodes.append(self.onnx.helper.make_node(
            "Cast", [wq], [wd], name=wd, to=self.onnx.TensorProto.DOUBLE))
        self.infos.append(self.onnx.helper.make_tensor_value_info(
            wd, self.onnx.TensorProto.DOUBLE, list(weight.shape)))
        xd = self.node("Cast", [x], f"{name}::xd", np.float64, (weight.shape[1],),
                       to=self.onnx.TensorProto.DOUBLE)
        return self.node("Gemm", [xd, wd], f"{name}::acc", np.float64, shape, transB=1)

    def add(self, name: str, xs: list[str], weights: tuple[int, int],
            shape: tuple[int, ...]) -> str:
        """``a * wa + b * wb`` in float64."""
        terms = []
        for x, w, tag in zip(xs, weights, "ab", strict=True):
            xd = self.node("Cast", [x], f"{name}::{tag}", np.float64, shape,
                           to=self.onnx.TensorProto.DOUBLE)
            terms.append(self.node("Mul", [xd, self.const(float(w), np.float64,
                                                           f"{name}::w{tag}")],
                                   f"{name}::{tag}w", np.float64, shape))
        return self.node("Add", terms, f"{name}::acc", np.float64, shape)

    def requant(self, name: str, acc: str, rq: Requant, bound: np.ndarray,
                shape: tuple[int, ...]) -> str:
        """``clamp(((acc + bias) * M + 2**(S-1)) >> S, lo, hi)`` in exact float64 steps,
        then the output's ``Quant``."""
        M, S = reduce_multiplier(rq.M, rq.S)
        need = [int(t) * int(m) + (1 << (int(s) - 1)) for t, m, s in zip(bound, M, S,
                                                                           strict=True)]
        worst = int(np.argmax(np.array(need, dtype=object)))
        if need[worst] >= F64_EXACT:
            raise ValueError(
                f"{name}: (acc + bias) * M + 2**(S-1) can reach {need[worst]} (channel "
                f"{worst}), beyond float64's exact integers (2**53): this layer cannot be "
                "exported exactly")
        per_channel = (1, -1) + (1,) * (len(shape) - 1)

        def vec(v: np.ndarray, hint: str) -> str:
            return self.const(np.asarray(v, dtype=np.float64).reshape(per_channel),
                              np.float64, f"{name}::{hint}")

        t = acc
        if rq.bias.any():
            t = self.node("Add", [acc, vec(rq.bias, "bias")], f"{name}::t", np.float64, shape)
        p = self.node("Mul", [t, vec(M, "M")], f"{name}::p", np.float64, shape)
        half = np.ldexp(1.0, S - 1)
        p = self.node("Add", [p, vec(half, "half")], f"{name}::ph", np.float64, shape)
        v = self.node("Mul", [p, vec(np.ldexp(1.0, -S), "shift")], f"{name}::v", np.float64,
                      shape)
        signed, narrow, bits = _quant_range(rq.lo, rq.hi, self.act_bits)
        if quant_bounds(signed, narrow, bits) != (rq.lo, rq.hi):
            v = self.node("Clip", [v, self.const(float(rq.lo), np.float64, f"{name}::lo"),
                                   self.const(float(rq.hi), np.float64, f"{name}::hi")],
                          f"{name}::clip", np.float64, shape)
        return self.quant(v, name, bits, "FLOOR", shape, signed=signed, narrow=narrow)


def quant_bounds(signed: bool, narrow: bool, bits: int) -> tuple[int, int]:
    """The integer range of a QONNX ``Quant`` (``bits >= 2`` when signed).

    >>> quant_bounds(True, False, 8), quant_bounds(True, True, 8), quant_bounds(False, True, 8)
    ((-128, 127), (-127, 127), (0, 254))
    """
    if signed:
        lo, hi = signed_range(bits)
        return lo + int(narrow), hi
    return 0, (1 << bits) - 1 - int(narrow)


def _quant_range(lo: int, hi: int, act_bits: int) -> tuple[bool, bool, int]:
    """``(signed, narrow, bits)`` of a QONNX quantizer whose range is ``lo..hi`` if one
    is, else the signed ``act_bits`` one (a ``Clip`` does the rest).

    >>> _quant_range(0, 127, 8), _quant_range(-127, 127, 8), _quant_range(0, 6, 8)
    ((False, False, 7), (True, True, 8), (True, False, 8))
    """
    for bits in range(1, act_bits + 1):
        for signed, narrow in ((False, False), (True, True), (True, False)):
            if (bits >= 2 or not signed) and quant_bounds(signed, narrow, bits) == (lo, hi):
                return signed, narrow, bits
    return True, False, act_bits
