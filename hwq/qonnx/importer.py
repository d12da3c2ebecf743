"""Import a QONNX graph (as Brevitas exports it) into a :class:`~hwq.ir.QuantizedNetwork`.

The graph is read node by node (:mod:`hwq.qonnx.values` says what is known of each
tensor). A layer (``Conv``, ``Gemm``/``MatMul``, ``Add`` of two quantized tensors,
``GlobalAveragePool``/``ReduceMean``/``AveragePool``) opens an integer accumulator; the
float operations after it (bias ``Add``/``Sub``, ``Mul``/``Div`` by a positive constant,
``BatchNormalization``, ``Relu``, ``Clip``, ``MaxPool``, ``Flatten``) are folded into it;
the ``Quant`` that follows ends it as one hwq op with its requantization
``clamp(((acc + bias) * M + 2**(S-1)) >> S, lo, hi)``. ``MaxPool`` and
``Flatten``/``Reshape``/``Squeeze`` of a quantized tensor become ``MaxPool2d``/``Flatten``.

**What maps exactly** (hwq's integers equal those of QONNX's definition, real arithmetic):

* ``Quant`` with zero point 0 and ``bit_width`` >= 2 (signed: ``INT<b>``, narrow or not;
  unsigned: ``0 .. 2**b - 1``), per-tensor scale on activations, per-tensor or
  per-output-channel scale on weights (INT weights of up to 8 bits; an unsigned ``b``-bit
  weight takes ``b + 1``). Activations become signed integers of one width
  ``act_bits`` that holds every quantizer's range (an unsigned 8-bit activation needs 9);
  each op's clamp ``lo, hi`` is its quantizer's range, narrowed by ``Relu``/``Clip``.
* the requantization, when ``r = s_in * s_w[c] / s_out`` (times any folded constants) is
  ``M * 2**-S`` with ``M < 2**24`` exactly (e.g. power-of-two scales), the bias is an
  integer number of accumulator units (a bias ``Quant`` whose scale is ``s_in * s_w``, as
  Brevitas's ``Int32Bias`` gives, up to float32 rounding of that product), and the
  rounding is ``FLOOR`` (hwq adds ``1 / (2r)`` to the bias: exact when that is an integer)
  or ties cannot happen; ``HALF_UP`` equals hwq's half up when the output cannot be
  negative.
* ``Add`` of two quantized tensors whose scales are in a ratio of integers up to 127
  (equal scales: a shared quantizer); ``MaxPool`` (no ``ceil_mode``, no dilation); average
  pools (``count_include_pad``, or no padding); ``Flatten``.

**Where hwq approximates** (the import notes which op and by how much):
``M`` has 24 bits (``|M * 2**-S - r| <= 2**-24 * r``); a float bias is rounded to whole
accumulator units; ``ROUND``/``HALF_EVEN`` ties (exactly ``k + 1/2``) round half up in hwq,
to even in QONNX; an ``Add`` whose scale ratio is not a ratio of small integers takes
:func:`hwq.golden.eltwise.add_weights`'s closest pair; a folded ``BatchNormalization``. Then an
output can differ from QONNX's by one step where the exact value lies within that error of
a rounding boundary. qonnx's own float32 execution differs from the real-number definition
by its float rounding too.

**Refused**, naming the node, its op type and why: a zero point, 1-bit (bipolar) or
``FloatQuant``/``Trunc``/``MultiThreshold`` nodes, per-channel activation scales,
``CEIL``/``UP``/``HALF_DOWN`` rounding (``DOWN`` too where the output can be negative), a
layer whose output is not quantized before the next layer or the graph output, float
weights without a ``Quant``, ``ceil_mode``, dilated pools, and any other op type.

A graph written by :mod:`hwq.qonnx.exporter` carries an annotation (op kinds, weight
formats, scales) that the import applies, so export then import gives a network of the
same ops, formats and integer outputs (``M, S`` come back normalized to 24 bits, an add's
weights as the smallest multiple of their ratio that keeps its requantization exact).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hwq.golden._checks import signed_bits_for
from hwq.golden.requant import multiplier_from_scale
from hwq.ir import (
    ADD_WEIGHT_MAX,
    INPUT,
    Add,
    AvgPool2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    Op,
    QuantizedNetwork,
    Requant,
    WeightSpec,
)
from hwq.qonnx import require
from hwq.qonnx.folding import FoldingNodes
from hwq.qonnx.layers import LayerNodes
from hwq.qonnx.values import (
    Acc,
    Const,
    Ints,
    Refused,
    Weight,
    round_array,
    round_fraction,
    show,
    where,
)

#: ONNX op types the importer reads (besides qonnx's Quant/IntQuant).
SUPPORTED = ("Quant", "IntQuant", "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
             "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
             "GlobalAveragePool", "ReduceMean", "ReduceSum", "Flatten", "Reshape", "Squeeze",
             "Cast", "Identity", "Dropout", "Constant")
_WHY = {
    "Trunc": "Brevitas's TruncAvgPool truncation has no hwq equivalent; export the pool as "
             "an AvgPool2d/AdaptiveAvgPool2d followed by a QuantIdentity",
    "BipolarQuant": "binary/bipolar (1-bit) quantization is not an hwq weight format",
    "FloatQuant": "hwq quantizes to integers, not minifloats",
    "MultiThreshold": "thresholds (a FINN-streamlined graph) are not hwq requantizations; "
                      "import the graph before streamlining",
}


@dataclass
class ImportResult:
    """The imported network and, per op, how its arithmetic differs from QONNX's.

    ``notes[op]`` says it in words; ``errors[op]`` in numbers: ``bias`` (largest
    ``|bias - beta|`` in accumulator units, ``beta`` QONNX's exact offset),
    ``multiplier`` (largest ``|M * 2**-S / r - 1|``, ``r`` QONNX's exact scale ratio) and
    ``ties`` (1.0 where exact ties round differently). An op's output differs from
    QONNX's real-number one only where its value lies within
    ``r * bias + |value| * multiplier`` of a rounding boundary (or on a tie).
    ``graph_scales`` are the scales of the graph's input and output quantizers (the
    network's own may come from hwq's annotation instead): QONNX's float input is
    ``graph_scales[0] * x_int`` with ``x_int`` in ``input_range``, its output
    ``graph_scales[1] * y_int``.
    """

    network: QuantizedNetwork
    notes: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    graph_scales: tuple[float, float] = (1.0, 1.0)
    input_range: tuple[int, int] = (0, 0)

    @property
    def exact(self) -> bool:
        """True when every op computes QONNX's integers exactly."""
        return not any(self.notes.values())

    def to_dict(self) -> dict[str, Any]:
        return {"ops": len(self.network.ops), "act_bits": self.network.act_bits,
                "input_shape": list(self.network.input_shape),
                "input_scale": self.network.input_scale, "exact": self.exact,
                "approximations": {k: v for k, v in self.notes.items() if v}}


def import_qonnx(model: Any) -> ImportResult:
    """Read a QONNX model (an ``onnx.ModelProto``, a path or bytes) into an hwq network.

    Raises ``ValueError`` naming the node, its op type and the reason for anything that
    does not map (see the module docstring).
    """
    onnx = require("onnx")
    source = "<model>"
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"No ONNX file at {path}")
        source = str(path)
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ValueError(f"{path}: not an ONNX model ({exc})") from None
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"Model must be an onnx.ModelProto, a path or bytes, not "
                        f"{type(model).__name__}")
    return _Importer(onnx, model, source).run()


class _Importer(LayerNodes, FoldingNodes):
    """Reads the graph node by node (the layers' and float ops' handlers are mixed in)."""

    def __init__(self, onnx: Any, model: Any, source: str) -> None:
        self.onnx, self.model, self.source = onnx, model, source
        self.graph = model.graph
        self.values: dict[str, Any] = {}
        self.ops: list[Op] = []
        self.notes: dict[str, list[str]] = {}
        self.errors: dict[str, dict[str, float]] = {}
        self.names: set[str] = {INPUT}
        self.input_name: str | None = None
        self.input_shape: tuple[int, ...] = ()
        self.input_scale: float | None = None
        self.input_range: tuple[int, int] = (0, 0)
        self.ranges: dict[str, tuple[int, int, str]] = {}  # tensor -> lo, hi, node
        props = {p.key: p.value for p in model.metadata_props}
        self.annotation: dict[str, Any] = {}
        from hwq.qonnx.exporter import FORMAT_KEY, FORMAT_TAG, NETWORK_KEY
        if props.get(FORMAT_KEY) == FORMAT_TAG:
            try:
                self.annotation = json.loads(props.get(NETWORK_KEY, "{}"))
            except json.JSONDecodeError:
                self.annotation = {}

    # ------------------------------------------------------------------ driver
    def run(self) -> ImportResult:
        np_helper = self.onnx.numpy_helper
        for init in self.graph.initializer:
            self.values[init.name] = Const(np_helper.to_array(init))
        inputs = [vi for vi in self.graph.input if vi.name not in self.values]
        if len(inputs) != 1:
            raise ValueError(f"{self.source}: the graph must have one input, not "
                             f"{[vi.name for vi in inputs]}")
        vi = inputs[0]
        dims = vi.type.tensor_type.shape.dim
        shape = tuple(d.dim_value for d in dims[1:])
        if len(shape) not in (1, 3) or not all(s >= 1 for s in shape):
            raise ValueError(f"{self.source}: input {vi.name!r} must be (N, C, H, W) or "
                             f"(N, K) with fixed sizes, not "
                             f"{[d.dim_value or d.dim_param for d in dims]}")
        self.input_name, self.input_shape = vi.name, shape
        self.values[vi.name] = _INPUT
        for node in self.graph.node:
            self._node(node)
        if len(self.graph.output) != 1:
            raise ValueError(f"{self.source}: the graph must have one output, not "
                             f"{[o.name for o in self.graph.output]}")
        out_name = self.graph.output[0].name
        out = self.values.get(out_name)
        if isinstance(out, Acc):
            raise ValueError(f"{out.node}: the graph output {out_name!r} is not quantized; "
                             "hwq ends every layer with a requantization: add an output "
                             "quantizer (a Quant node, e.g. Brevitas output_quant or a "
                             "QuantIdentity)")
        if not isinstance(out, Ints) or out.tensor == INPUT:
            raise ValueError(f"{self.source}: the graph output {out_name!r} is not the "
                             "quantized output of a layer")
        return self._network(out.tensor, float(out.scale))

    def _network(self, output: str, output_scale: float) -> ImportResult:
        if self.input_scale is None:
            raise ValueError(f"{self.source}: the input {self.input_name!r} has no Quant node")
        # drop ops the output does not depend on; the output op is the last one read
        needed, ops = {output}, []
        for op in reversed(self.ops):
            if op.name in needed:
                needed.update(op.inputs)
                ops.append(op)
        ops.reverse()
        kept = [self.ranges[t] for t in (INPUT, *(op.name for op in ops))]
        widest = max(kept, key=lambda r: signed_bits_for(r[0], r[1]))
        act_bits = max(2, signed_bits_for(widest[0], widest[1]))
        if act_bits > 16:
            raise ValueError(f"{widest[2]}: its range {widest[0]}..{widest[1]} needs "
                             f"{act_bits}-bit signed activations; hwq's are at most 16 bits")
        ann = self.annotation
        meta = dict(ann.get("meta", {})) if isinstance(ann.get("meta"), dict) else {}
        meta["imported_from"] = Path(self.source).name
        meta.setdefault("input_range", list(self.input_range))
        scale = ann.get("input_scale", self.input_scale)
        network = QuantizedNetwork(input_shape=self.input_shape, act_bits=act_bits,
                                   input_scale=float(scale), ops=ops, meta=meta)
        notes = {op.name: self.notes.get(op.name, []) for op in ops}
        errors = {op.name: self.errors[op.name] for op in ops if op.name in self.errors}
        return ImportResult(network=network, notes=notes, errors=errors,
                            graph_scales=(float(self.input_scale), output_scale),
                            input_range=self.input_range)

    def _node(self, node: Any) -> None:
        op_type, at = node.op_type, where(node)
        if op_type in _WHY:
            raise ValueError(f"{at}: not supported: {_WHY[op_type]}")
        handler = getattr(self, f"_op_{op_type}", None)
        if handler is None or (node.domain not in ("", "ai.onnx") and op_type not in
                               ("Quant", "IntQuant")):
            raise ValueError(f"{at}: op type {op_type!r}"
                             + (f" (domain {node.domain})" if node.domain else "")
                             + f" is not supported; hwq imports {', '.join(SUPPORTED)}")
        ins = [self.values.get(n) if n else None for n in node.input]
        for name, v in zip(node.input, ins, strict=True):
            if name and v is None:
                raise ValueError(f"{at}: input {name!r} is produced by no earlier node")
        try:
            out = handler(node, ins, _attrs(self.onnx, node))
        except Refused as exc:
            raise ValueError(f"{at}: {exc}") from None
        self.values[node.output[0]] = out
        for extra in node.output[1:]:
            self.values[extra] = _UNUSABLE

    # ------------------------------------------------------------------ helpers
    def _name(self, tensor: str) -> str:
        name, i = tensor or "op", 1
        while name in self.names:
            name, i = f"{tensor}_{i}", i + 1
        self.names.add(name)
        return name

    def _push(self, op: Op, lo: int, hi: int, at: str) -> None:
        self.ops.append(op)
        self.ranges[op.name] = (lo, hi, at)

    def _ints(self, v: Any, what: str) -> Ints:
        if isinstance(v, Ints):
            return v
        if v is _INPUT:
            raise Refused(f"{what} is the float graph input; hwq needs it quantized: add an "
                           "input quantizer (a Quant node, e.g. Brevitas QuantIdentity)")
        if isinstance(v, Acc):
            raise Refused(f"{what} is the unquantized output of {v.node}; hwq requantizes "
                           "every layer's output: add a Quant node (an activation quantizer)"
                           " between them")
        raise Refused(f"{what} must be a quantized activation, not a "
                       f"{type(v).__name__.lower()}")

    def _weight(self, v: Any, what: str) -> Weight:
        if isinstance(v, Weight):
            return v
        if isinstance(v, Const):
            raise Refused(f"{what} is a float constant; hwq needs integer weights: quantize "
                           "them with a Quant node (Brevitas weight_quant)")
        raise Refused(f"{what} must be a quantized constant (weights)")

    # ------------------------------------------------------------------ Quant
    def _op_Quant(self, node: Any, ins: list, attrs: dict) -> Any:
        x, scale, zero, bits = (ins + [None] * 4)[:4]
        if not all(isinstance(v, Const) for v in (scale, zero, bits)):
            raise Refused("scale, zero point and bit width must be constants")
        if np.any(zero.value != 0):
            raise Refused(f"zero point {show(zero.value)} (an asymmetric quantizer); hwq's "
                           "activations and weights have zero point 0")
        b = np.asarray(bits.value, dtype=np.float64)
        if b.size != 1 or b.ravel()[0] != int(b.ravel()[0]) or b.ravel()[0] < 1:
            raise Refused(f"bit width must be one positive integer, not {show(b)}")
        bw = int(b.ravel()[0])
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        mode = str(attrs.get("rounding_mode", "ROUND")).upper()
        s = np.asarray(scale.value)
        if not (np.isfinite(s).all() and (s > 0).all()):
            raise Refused(f"scale must be finite and positive, not {show(s)}")
        if bw == 1 and signed:
            raise Refused("1-bit signed quantization is bipolar (+-1), not an hwq format")
        if bw > 62:
            raise Refused(f"bit width {bw} is beyond hwq's 16-bit activations and 8-bit "
                           "weights")
        qlo = -(1 << (bw - 1)) + int(narrow) if signed else 0
        qhi = (1 << (bw - 1)) - 1 if signed else (1 << bw) - 1 - int(narrow)
        if x is _INPUT:
            return self._input_quant(node, s, qlo, qhi, mode)
        if isinstance(x, Const):
            return self._weight_quant(node, x, scale.value, zero.value, qlo, qhi, mode)
        if isinstance(x, Acc):
            return self._requant(node, x, s, qlo, qhi, mode)
        if isinstance(x, Ints):
            return self._requantize_ints(x, s, qlo, qhi)
        raise Refused(f"cannot quantize a {type(x).__name__.lower()}")

    _op_IntQuant = _op_Quant

    def _input_quant(self, node: Any, s: np.ndarray, qlo: int, qhi: int, mode: str) -> Ints:
        if s.size != 1:
            raise Refused("the input quantizer must have one (per-tensor) scale")
        if self.input_scale is not None:
            raise Refused("the graph input is quantized twice")
        if mode not in ("ROUND", "HALF_EVEN"):
            raise Refused(f"input rounding {mode}: hwq quantizes its input half to even "
                           "(ROUND)")
        self.input_scale = float(s.ravel()[0])
        self.input_range = (qlo, qhi)
        self.ranges[INPUT] = (qlo, qhi, where(node))
        return Ints(INPUT, Fraction(self.input_scale), qlo, qhi, self.input_shape)

    def _weight_quant(self, node: Any, x: Const, scale: np.ndarray, zero: np.ndarray,
                      qlo: int, qhi: int, mode: str) -> Weight:
        # QONNX's definition, in the stored dtypes: clip(x / scale + zp) then round
        y = x.value / scale + zero
        y = np.clip(y, qlo, qhi)
        ints = round_array(y, mode).astype(np.int64)
        try:
            s = np.broadcast_to(np.asarray(scale, dtype=np.float64), ints.shape)
        except ValueError:
            raise Refused(f"scale of shape {np.shape(scale)} does not broadcast to the "
                           f"weights {ints.shape}") from None
        return Weight(ints=ints, scale=s, bits=signed_bits_for(qlo, qhi), node=where(node))

    def _requantize_ints(self, x: Ints, s: np.ndarray, qlo: int, qhi: int) -> Ints:
        if s.size == 1 and Fraction(float(s.ravel()[0])) == x.scale and qlo <= x.lo and \
                x.hi <= qhi:
            return x  # the same quantizer again: the identity
        raise Refused(f"requantizes the already quantized tensor {x.tensor!r} (scale "
                       f"{float(x.scale):.6g} -> {show(s)}, range {x.lo}..{x.hi} -> "
                       f"{qlo}..{qhi}) with no layer between; hwq requantizes only at a "
                       "layer's output")

    def _requant(self, node: Any, acc: Acc, s: np.ndarray, qlo: int, qhi: int,
                 mode: str) -> Ints:
        """End ``acc`` with the quantizer ``Quant(scale s, qlo..qhi, mode)``: one hwq op."""
        if s.size != 1:
            raise Refused(f"per-channel activation scale (shape {s.shape}); hwq's "
                           "activations have one scale per tensor")
        s_out = Fraction(float(s.ravel()[0]))
        if acc.kind == "add":
            acc = _add_multiple(acc, s_out)
        lo, hi = qlo, qhi
        if acc.clip_lo is not None:
            lo = max(lo, round_fraction(acc.clip_lo / s_out, mode))
        if acc.clip_hi is not None:
            hi = min(hi, round_fraction(acc.clip_hi / s_out, mode))
        if lo > hi:
            raise Refused(f"the clamp leaves no value ({lo}..{hi})")
        notes = list(acc.notes)
        ties = False
        rho = [r / s_out for r in acc.r]
        if mode == "DOWN" and lo >= 0:
            mode = "FLOOR"  # equal on everything the clamp lets through
        if mode == "FLOOR":
            exact_bias = [b - 1 / (2 * p) for b, p in zip(acc.beta, rho, strict=True)]
        elif mode in ("ROUND", "HALF_EVEN", "HALF_UP"):
            exact_bias = list(acc.beta)
            ties = mode != "HALF_UP" or lo < 0
            if mode == "HALF_UP" and lo < 0:
                notes.append("ties below zero round up in hwq, away from zero in QONNX "
                             "(HALF_UP)")
            elif mode != "HALF_UP":
                notes.append("ties (exactly k + 1/2) round half up in hwq, half to even in "
                             "QONNX")
        else:
            raise Refused(f"rounding mode {mode} has no hwq equivalent (hwq rounds "
                           "floor(x + 1/2)); ROUND, HALF_EVEN, HALF_UP and FLOOR map"
                           + (", DOWN when the output cannot be negative" if mode == "DOWN"
                              else ""))
        bias = [round(b) for b in exact_bias]
        err = max(abs(b - e) for b, e in zip(bias, exact_bias, strict=True))
        if err:
            notes.append(f"bias rounded to whole accumulator units (error up to "
                         f"{float(err):.3g} units)")
        try:
            mult = multiplier_from_scale(np.array([float(p) for p in rho]))
        except ValueError as exc:
            raise Refused(f"scale ratio s_in * s_w / s_out: {exc}") from None
        rel = max(abs(Fraction(int(m), 1 << int(sh)) - p) / p
                  for m, sh, p in zip(mult.M, mult.S, rho, strict=True))
        if rel:
            notes.append(f"scale ratio rounded to a 24-bit multiplier (relative error "
                         f"{float(rel):.2g})")
        if max(abs(b) for b in bias) >= 1 << 31:
            raise Refused(f"bias of {max(abs(b) for b in bias)} accumulator units is "
                           "beyond int32")
        requant = Requant(bias=np.array(bias, dtype=np.int64), M=mult.M, S=mult.S, lo=lo,
                          hi=hi)
        out_name = node.output[0]
        name = self._name(out_name if not acc.post else f"{out_name}_{acc.kind}")
        ann = self.annotation.get("ops", {}).get(out_name, {})
        out_scale = float(ann.get("out_scale", float(s_out))) if isinstance(ann, dict) \
            else float(s_out)
        op = self._make(acc, name, requant, out_scale, ann if isinstance(ann, dict) else {})
        at = where(node)
        self._push(op, lo, hi, at)
        self.notes[name] = notes
        self.errors[name] = {"bias": float(err), "multiplier": float(rel),
                             "ties": float(ties)}
        shape = acc.shape
        for i, (kind, params) in enumerate(acc.post):
            last = i == len(acc.post) - 1
            pname = self._name(out_name if last else f"{out_name}_{kind}{i}")
            post = (MaxPool2d(name=pname, inputs=(name,), **params) if kind == "maxpool2d"
                    else Flatten(name=pname, inputs=(name,)))
            shape = post.output_shape([shape])
            self._push(post, lo, hi, at)
            name = pname
        return Ints(name, s_out, lo, hi, shape)

    def _make(self, acc: Acc, name: str, requant: Requant, out_scale: float,
              ann: dict[str, Any]) -> Op:
        """The hwq op of ``acc`` (the export's annotation chooses a pool or weight format)."""
        p, common = acc.params, dict(name=name, inputs=acc.inputs, requant=requant,
                                     out_scale=out_scale)
        try:
            if acc.kind == "conv2d":
                kind = ann.get("kind")
                if kind in ("avgpool2d", "global_avgpool2d") and _is_pool(p):
                    if kind == "global_avgpool2d":
                        return GlobalAvgPool2d(**common)
                    return AvgPool2d(kernel=p["weight"].shape[2:], stride=p["stride"],
                                     padding=p["padding"], **common)
                return Conv2d(weight=p["weight"], spec=_spec(p, ann), stride=p["stride"],
                              padding=p["padding"], dilation=p["dilation"],
                              groups=p["groups"], **common)
            if acc.kind == "linear":
                return Linear(weight=p["weight"], spec=_spec(p, ann), **common)
            if acc.kind == "add":
                return Add(weights=p["weights"], **common)
            if acc.kind == "avgpool2d":
                return AvgPool2d(**p, **common)
            return GlobalAvgPool2d(**common)
        except ValueError as exc:
            raise Refused(str(exc)) from None


class _Marker:
    def __init__(self, what: str) -> None:
        self.what = what


_INPUT = _Marker("the graph input")
_UNUSABLE = _Marker("a secondary output")


def _attrs(onnx: Any, node: Any) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _spec(params: dict[str, Any], ann: dict[str, Any]) -> WeightSpec:
    """INT of the quantizer's width, or the export's annotated format if the weights fit it."""
    entry = ann.get("spec")
    if isinstance(entry, dict):
        try:
            spec = WeightSpec(kind=entry["kind"], bits=np.asarray(entry["bits"]),
                              table=None if entry.get("table") is None
                              else np.asarray(entry["table"]),
                              table_bits=int(entry.get("table_bits", 8)))
            spec.validate(params["weight"], "annotation")
            return spec
        except (KeyError, TypeError, ValueError):
            pass  # not hwq's annotation of these weights: use the quantizer's
    w, bits = params["weight"], params["bits"]
    if bits > 8:
        raise Refused(f"weights need {bits} bits ({int(w.min())}..{int(w.max())}); hwq's INT "
                       "weights have at most 8")
    return WeightSpec(kind="int", bits=np.int64(bits))


def _add_multiple(acc: Acc, s_out: Fraction) -> Acc:
    """An add's weights ``k * (wa, wb)`` (still <= 127) with the smallest ``k`` that makes
    the requant's ratio ``r / (k * s_out)`` exactly ``M * 2**-S`` (24-bit ``M``), if any:
    ``(6, 3)`` and not ``(2, 1)`` when ``3 * M`` would not fit 24 bits."""
    wa, wb = acc.params["weights"]
    for k in range(1, ADD_WEIGHT_MAX // max(wa, wb) + 1):
        rho = [r / (k * s_out) for r in acc.r]
        try:
            mult = multiplier_from_scale(np.array([float(p) for p in rho]))
        except ValueError:
            continue
        if all(Fraction(int(m), 1 << int(sh)) == p
               for m, sh, p in zip(mult.M, mult.S, rho, strict=True)):
            return replace(acc, r=tuple(r / k for r in acc.r),
                           beta=tuple(b * k for b in acc.beta),
                           params=dict(acc.params, weights=(wa * k, wb * k)))
    return acc


def _is_pool(p: dict[str, Any]) -> bool:
    """A depthwise convolution with a kernel of ones (an average pool's window sum)."""
    w = p["weight"]
    return (w.shape[1] == 1 and p["groups"] == w.shape[0] and bool((w == 1).all())
            and tuple(p["dilation"]) == (1, 1))


__all__ = ["SUPPORTED", "ImportResult", "import_qonnx"]
