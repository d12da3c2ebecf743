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
``CEIL``/``UP``/``HALF_DOWN`` rounding (and ``DOWN``/``HALF_UP`` where the output can be
negative, for ``DOWN``), a layer whose output is not quantized before the next layer or the
graph output, float weights without a ``Quant``, ``ceil_mode``, dilated pools, and any
other op type.

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
from hwq.golden.eltwise import add_weights
from hwq.golden.requant import multiplier_from_scale
from hwq.golden.window import conv_output_size
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
from hwq.qonnx.values import Acc, Const, Ints, Weight, fractions, round_array, round_fraction

#: ONNX op types the importer reads (besides qonnx's Quant/IntQuant).
SUPPORTED = ("Quant", "IntQuant", "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
             "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
             "GlobalAveragePool", "ReduceMean", "ReduceSum", "Flatten", "Reshape", "Squeeze",
             "Cast", "Identity", "Dropout", "Constant")
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
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
    """

    network: QuantizedNetwork
    notes: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)

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


class _Importer:
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
        self.ranges: list[tuple[int, int, str]] = []
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
        return self._network(out.tensor)

    def _network(self, output: str) -> ImportResult:
        if self.input_scale is None:
            raise ValueError(f"{self.source}: the input {self.input_name!r} has no Quant node")
        # drop ops the output does not depend on; the output op is the last one read
        needed, ops = {output}, []
        for op in reversed(self.ops):
            if op.name in needed:
                needed.update(op.inputs)
                ops.append(op)
        ops.reverse()
        widest = max(self.ranges, key=lambda r: signed_bits_for(r[0], r[1]))
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
        return ImportResult(network=network, notes=notes, errors=errors)

    def _node(self, node: Any) -> None:
        op_type, where = node.op_type, _where(node)
        if op_type in _WHY:
            raise ValueError(f"{where}: not supported: {_WHY[op_type]}")
        handler = getattr(self, f"_op_{op_type}", None)
        if handler is None or (node.domain not in ("", "ai.onnx") and op_type not in
                               ("Quant", "IntQuant")):
            raise ValueError(f"{where}: op type {op_type!r}"
                             + (f" (domain {node.domain})" if node.domain else "")
                             + f" is not supported; hwq imports {', '.join(SUPPORTED)}")
        ins = [self.values.get(n) if n else None for n in node.input]
        for name, v in zip(node.input, ins, strict=True):
            if name and v is None:
                raise ValueError(f"{where}: input {name!r} is produced by no earlier node")
        try:
            out = handler(node, ins, _attrs(self.onnx, node))
        except _Refused as exc:
            raise ValueError(f"{where}: {exc}") from None
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

    def _push(self, op: Op, lo: int, hi: int, where: str) -> None:
        self.ops.append(op)
        self.ranges.append((lo, hi, where))

    def _ints(self, v: Any, what: str) -> Ints:
        if isinstance(v, Ints):
            return v
        if v is _INPUT:
            raise _Refused(f"{what} is the float graph input; hwq needs it quantized: add an "
                           "input quantizer (a Quant node, e.g. Brevitas QuantIdentity)")
        if isinstance(v, Acc):
            raise _Refused(f"{what} is the unquantized output of {v.node}; hwq requantizes "
                           "every layer's output: add a Quant node (an activation quantizer)"
                           " between them")
        raise _Refused(f"{what} must be a quantized activation, not a "
                       f"{type(v).__name__.lower()}")

    def _weight(self, v: Any, what: str) -> Weight:
        if isinstance(v, Weight):
            return v
        if isinstance(v, Const):
            raise _Refused(f"{what} is a float constant; hwq needs integer weights: quantize "
                           "them with a Quant node (Brevitas weight_quant)")
        raise _Refused(f"{what} must be a quantized constant (weights)")

    # ------------------------------------------------------------------ Quant
    def _op_Quant(self, node: Any, ins: list, attrs: dict) -> Any:
        x, scale, zero, bits = (ins + [None] * 4)[:4]
        if not all(isinstance(v, Const) for v in (scale, zero, bits)):
            raise _Refused("scale, zero point and bit width must be constants")
        if np.any(zero.value != 0):
            raise _Refused(f"zero point {_show(zero.value)} (an asymmetric quantizer); hwq's "
                           "activations and weights have zero point 0")
        b = np.asarray(bits.value, dtype=np.float64)
        if b.size != 1 or b.ravel()[0] != int(b.ravel()[0]) or b.ravel()[0] < 1:
            raise _Refused(f"bit width must be one positive integer, not {_show(b)}")
        bw = int(b.ravel()[0])
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        mode = str(attrs.get("rounding_mode", "ROUND")).upper()
        s = np.asarray(scale.value)
        if not (np.isfinite(s).all() and (s > 0).all()):
            raise _Refused(f"scale must be finite and positive, not {_show(s)}")
        if bw == 1 and signed:
            raise _Refused("1-bit signed quantization is bipolar (+-1), not an hwq format")
        if bw > 62:
            raise _Refused(f"bit width {bw} is beyond hwq's 16-bit activations and 8-bit "
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
        raise _Refused(f"cannot quantize a {type(x).__name__.lower()}")

    _op_IntQuant = _op_Quant

    def _input_quant(self, node: Any, s: np.ndarray, qlo: int, qhi: int, mode: str) -> Ints:
        if s.size != 1:
            raise _Refused("the input quantizer must have one (per-tensor) scale")
        if self.input_scale is not None:
            raise _Refused("the graph input is quantized twice")
        if mode not in ("ROUND", "HALF_EVEN"):
            raise _Refused(f"input rounding {mode}: hwq quantizes its input half to even "
                           "(ROUND)")
        self.input_scale = float(s.ravel()[0])
        self.input_range = (qlo, qhi)
        self.ranges.append((qlo, qhi, _where(node)))
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
            raise _Refused(f"scale of shape {np.shape(scale)} does not broadcast to the "
                           f"weights {ints.shape}") from None
        return Weight(ints=ints, scale=s, bits=signed_bits_for(qlo, qhi), node=_where(node))

    def _requantize_ints(self, x: Ints, s: np.ndarray, qlo: int, qhi: int) -> Ints:
        if s.size == 1 and Fraction(float(s.ravel()[0])) == x.scale and qlo <= x.lo and \
                x.hi <= qhi:
            return x  # the same quantizer again: the identity
        raise _Refused(f"requantizes the already quantized tensor {x.tensor!r} (scale "
                       f"{float(x.scale):.6g} -> {_show(s)}, range {x.lo}..{x.hi} -> "
                       f"{qlo}..{qhi}) with no layer between; hwq requantizes only at a "
                       "layer's output")

    def _requant(self, node: Any, acc: Acc, s: np.ndarray, qlo: int, qhi: int,
                 mode: str) -> Ints:
        """End ``acc`` with the quantizer ``Quant(scale s, qlo..qhi, mode)``: one hwq op."""
        if s.size != 1:
            raise _Refused(f"per-channel activation scale (shape {s.shape}); hwq's "
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
            raise _Refused(f"the clamp leaves no value ({lo}..{hi})")
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
            raise _Refused(f"rounding mode {mode} has no hwq equivalent (hwq rounds "
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
            raise _Refused(f"scale ratio s_in * s_w / s_out: {exc}") from None
        rel = max(abs(Fraction(int(m), 1 << int(sh)) - p) / p
                  for m, sh, p in zip(mult.M, mult.S, rho, strict=True))
        if rel:
            notes.append(f"scale ratio rounded to a 24-bit multiplier (relative error "
                         f"{float(rel):.2g})")
        if max(abs(b) for b in bias) >= 1 << 31:
            raise _Refused(f"bias of {max(abs(b) for b in bias)} accumulator units is "
                           "beyond int32")
        requant = Requant(bias=np.array(bias, dtype=np.int64), M=mult.M, S=mult.S, lo=lo,
                          hi=hi)
        out_name = node.output[0]
        name = self._name(out_name if not acc.post else f"{out_name}_{acc.kind}")
        ann = self.annotation.get("ops", {}).get(out_name, {})
        out_scale = float(ann.get("out_scale", float(s_out))) if isinstance(ann, dict) \
            else float(s_out)
        op = self._make(acc, name, requant, out_scale, ann if isinstance(ann, dict) else {})
        where = _where(node)
        self._push(op, lo, hi, where)
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
            self._push(post, lo, hi, where)
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
            raise _Refused(str(exc)) from None

    # ------------------------------------------------------------------ layers
    def _op_Conv(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        w = self._weight(ins[1], "its weight")
        if len(x.shape) != 3 or w.ints.ndim != 4:
            raise _Refused(f"only 2-D convolutions are imported (input {x.shape}, weight "
                           f"{w.ints.shape})")
        groups = int(attrs.get("group", 1))
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _Refused(f"auto_pad {attrs['auto_pad']} (give explicit pads)")
        kh, kw = w.ints.shape[2:]
        stride = tuple(attrs.get("strides", (1, 1)))
        dil = tuple(attrs.get("dilations", (1, 1)))
        t, l, b, r = attrs.get("pads", (0, 0, 0, 0))
        c, h, wd = x.shape
        if w.ints.shape[1] * groups != c:
            raise _Refused(f"weight {w.ints.shape} with group={groups} does not fit an input "
                           f"of {c} channels")
        shape = (w.ints.shape[0], conv_output_size(h, kh, stride[0], t, b, dil[0]),
                 conv_output_size(wd, kw, stride[1], l, r, dil[1]))
        params = dict(weight=w.ints, bits=self._bits(w, node), stride=stride,
                      padding=(t, b, l, r), dilation=dil, groups=groups)
        return self._layer(node, "conv2d", x, w, ins[2] if len(ins) > 2 else None, params,
                           shape)

    def _op_Gemm(self, node: Any, ins: list, attrs: dict) -> Acc:
        if attrs.get("transA", 0):
            raise _Refused("transA=1 (the input must be (N, K))")
        w = self._weight(ins[1], "its weight")
        w = w if attrs.get("transB", 0) else w.transposed()
        acc = self._linear(node, ins[0], w, ins[2] if len(ins) > 2 else None,
                           Fraction(float(attrs.get("beta", 1.0))))
        alpha = Fraction(float(attrs.get("alpha", 1.0)))
        if alpha != 1:
            acc = self._times(acc, [alpha] * acc.channels)
        return acc

    def _op_MatMul(self, node: Any, ins: list, attrs: dict) -> Acc:
        return self._linear(node, ins[0], self._weight(ins[1], "its weight").transposed(),
                            None, Fraction(1))

    def _linear(self, node: Any, x_value: Any, w: Weight, bias: Any, beta: Fraction) -> Acc:
        x = self._ints(x_value, "its input")
        if len(x.shape) != 1 or w.ints.ndim != 2 or w.ints.shape[1] != x.shape[0]:
            raise _Refused(f"input of shape {x.shape} does not fit weights (out, in) = "
                           f"{w.ints.shape} (flatten first)")
        params = dict(weight=w.ints, bits=self._bits(w, node))
        acc = self._layer(node, "linear", x, w, None, params, (w.ints.shape[0],))
        if bias is not None:
            acc = self._add_const(acc, self._bias_value(bias, acc.channels, beta))
        return acc

    def _layer(self, node: Any, kind: str, x: Ints, w: Weight, bias: Any,
               params: dict[str, Any], shape: tuple[int, ...]) -> Acc:
        s_w = _per_output_channel(w)
        r = tuple(x.scale * s for s in s_w)
        acc = Acc(kind=kind, node=_where(node), inputs=(x.tensor,), params=params, r=r,
                  beta=(Fraction(0),) * len(r), shape=shape)
        if bias is not None:
            acc = self._add_const(acc, self._bias_value(bias, len(r), Fraction(1)))
        return acc

    def _bias_value(self, bias: Any, channels: int, beta: Fraction) -> list[Fraction]:
        if isinstance(bias, Weight):
            vals = [Fraction(int(i)) * s for i, s in
                    zip(bias.ints.ravel(), fractions(bias.scale), strict=True)]
        elif isinstance(bias, Const):
            vals = fractions(bias.value)
        else:
            raise _Refused("the bias must be a constant")
        if len(vals) == 1:
            vals = vals * channels
        if len(vals) != channels:
            raise _Refused(f"bias of {len(vals)} values for {channels} channels")
        return [v * beta for v in vals]

    def _bits(self, w: Weight, node: Any) -> int:
        """The INT width of the weights: their quantizer's, or their values' if narrower."""
        need = max(2, signed_bits_for(int(w.ints.min(initial=0)), int(w.ints.max(initial=0))))
        return max(2, w.bits) if w.bits <= 8 else need

    def _op_GlobalAveragePool(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        if len(x.shape) != 3:
            raise _Refused(f"needs a (C, H, W) input, not {x.shape}")
        c, h, w = x.shape
        return Acc(kind="global_avgpool2d", node=_where(node), inputs=(x.tensor,), params={},
                   r=(x.scale / (h * w),) * c, beta=(Fraction(0),) * c, shape=(c, 1, 1))

    def _op_ReduceMean(self, node: Any, ins: list, attrs: dict, mean: bool = True) -> Acc:
        x = self._ints(ins[0], "its input")
        axes = attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            if not isinstance(ins[1], Const):
                raise _Refused("axes must be a constant")
            axes = ins[1].value.tolist()
        if len(x.shape) != 3 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
            raise _Refused(f"only a mean over H and W of a (C, H, W) tensor is imported (axes "
                           f"{axes}, input {x.shape})")
        acc = self._op_GlobalAveragePool(node, ins, attrs)
        if not mean:
            acc = self._times(acc, [Fraction(x.shape[1] * x.shape[2])] * acc.channels)
        if not attrs.get("keepdims", 1):
            acc = replace(acc, post=acc.post + (("flatten", {}),))
        return acc

    def _op_ReduceSum(self, node: Any, ins: list, attrs: dict) -> Acc:
        return self._op_ReduceMean(node, ins, attrs, mean=False)

    def _op_AveragePool(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        kernel, stride, padding = self._window(attrs, x, "AveragePool")
        if any(padding) and not attrs.get("count_include_pad", 0):
            raise _Refused("count_include_pad=0 with padding divides border windows by "
                           "fewer taps; hwq divides every window by KH*KW")
        c = x.shape[0]
        shape = (c, *(conv_output_size(n, k, s, p0, p1) for n, k, s, p0, p1 in
                      zip(x.shape[1:], kernel, stride, padding[::2], padding[1::2],
                          strict=True)))
        return Acc(kind="avgpool2d", node=_where(node), inputs=(x.tensor,),
                   params=dict(kernel=kernel, stride=stride, padding=padding),
                   r=(x.scale / (kernel[0] * kernel[1]),) * c, beta=(Fraction(0),) * c,
                   shape=shape)

    def _window(self, attrs: dict, x: Ints, what: str) -> tuple[tuple, tuple, tuple]:
        if attrs.get("ceil_mode", 0):
            raise _Refused("ceil_mode=1; hwq's pools round the output size down")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise _Refused(f"dilated {what}")
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _Refused(f"auto_pad {attrs['auto_pad']} (give explicit pads)")
        if len(x.shape) != 3:
            raise _Refused(f"needs a (C, H, W) input, not {x.shape}")
        kernel = tuple(attrs["kernel_shape"])
        stride = tuple(attrs.get("strides", (1, 1)))
        t, l, b, r = attrs.get("pads", (0, 0, 0, 0))
        return kernel, stride, (t, b, l, r)

    def _op_MaxPool(self, node: Any, ins: list, attrs: dict) -> Any:
        if len(node.output) > 1 and node.output[1]:
            raise _Refused("the indices output is not supported")
        v = ins[0]
        if isinstance(v, Acc):
            x = Ints("", Fraction(1), 0, 0, v.shape)
        else:
            x = self._ints(v, "its input")
        kernel, stride, padding = self._window(attrs, x, "MaxPool")
        params = dict(kernel=kernel, stride=stride, padding=padding)
        probe = MaxPool2d(name="probe", inputs=("x",), **params)
        try:
            shape = probe.output_shape([x.shape])
        except ValueError as exc:
            raise _Refused(str(exc).removeprefix("probe: ")) from None
        if isinstance(v, Acc):
            return replace(v, post=v.post + (("maxpool2d", params),), shape=shape)
        name = self._name(node.output[0])
        op = MaxPool2d(name=name, inputs=(x.tensor,), **params)
        self._push(op, x.lo, x.hi, _where(node))
        return replace(x, tensor=name, shape=shape)

    def _op_Add(self, node: Any, ins: list, attrs: dict) -> Acc:
        a, b = ins[:2]
        if isinstance(a, Const) or isinstance(a, Weight):
            a, b = b, a
        if isinstance(a, Acc) and isinstance(b, Const | Weight):
            return self._add_const(a, self._channel_const(b, a, "added constant"))
        if isinstance(a, Acc) and isinstance(b, Acc):
            return self._merge(a, b)
        x, y = self._ints(a, "its first input"), self._ints(b, "its second input")
        if x.shape != y.shape:
            raise _Refused(f"inputs of shapes {x.shape} and {y.shape} (hwq adds tensors of "
                           "one shape)")
        sa, sb = x.scale, y.scale
        w = add_weights(float(sa), float(sb), max_weight=ADD_WEIGHT_MAX, rel_tol=0.0)
        r = sa / w.wa if sa > sb else sb / w.wb
        notes = ()
        if sa / w.wa != sb / w.wb:
            notes = (f"input scales {float(sa):.6g} and {float(sb):.6g} in the ratio "
                     f"{w.wa}:{w.wb} (relative error {w.rel_error:.2g})",)
        c = x.shape[0]
        return Acc(kind="add", node=_where(node), inputs=(x.tensor, y.tensor),
                   params=dict(weights=(w.wa, w.wb)), r=(r,) * c, beta=(Fraction(0),) * c,
                   shape=x.shape, notes=notes)

    def _op_Sub(self, node: Any, ins: list, attrs: dict) -> Acc:
        a, b = ins[:2]
        if not (isinstance(a, Acc) and isinstance(b, Const | Weight)):
            raise _Refused("only a layer's output minus a constant is imported")
        return self._add_const(a, [-v for v in self._channel_const(b, a, "subtrahend")])

    def _op_Mul(self, node: Any, ins: list, attrs: dict) -> Any:
        a, b = ins[:2]
        if isinstance(a, Const):
            a, b = b, a
        if not isinstance(b, Const):
            raise _Refused("only a multiplication by a constant is imported")
        if isinstance(a, Ints):
            k = fractions(b.value)
            if len(set(k)) != 1 or k[0] <= 0:
                raise _Refused("a quantized tensor times anything but one positive constant")
            return replace(a, scale=a.scale * k[0])
        if not isinstance(a, Acc):
            raise _Refused("only a layer's output or a quantized tensor times a constant")
        return self._times(a, self._channel_const(b, a, "factor"))

    def _op_Div(self, node: Any, ins: list, attrs: dict) -> Any:
        a, b = ins[:2]
        if not isinstance(b, Const) or not (np.asarray(b.value) != 0).all():
            raise _Refused("only a division by a non-zero constant is imported")
        k = fractions(b.value)
        if isinstance(a, Ints):
            if len(set(k)) != 1 or k[0] <= 0:
                raise _Refused("a quantized tensor divided by anything but one positive "
                               "constant")
            return replace(a, scale=a.scale / k[0])
        if not isinstance(a, Acc):
            raise _Refused("only a layer's output or a quantized tensor divided by a constant")
        return self._times(a, [1 / v for v in self._channel_const(b, a, "divisor")])

    def _op_BatchNormalization(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = ins[0]
        if not isinstance(x, Acc):
            raise _Refused("BatchNormalization must follow a layer (before its Quant)")
        if not all(isinstance(v, Const) for v in ins[1:5]):
            raise _Refused("BatchNormalization parameters must be constants")
        gamma, beta, mean, var = (np.asarray(v.value, dtype=np.float64) for v in ins[1:5])
        a = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        acc = self._times(x, fractions(a))
        acc = self._add_const(acc, fractions(beta - a * mean))
        return replace(acc, notes=acc.notes + ("BatchNormalization folded in float64",))

    def _op_Relu(self, node: Any, ins: list, attrs: dict) -> Any:
        x = ins[0]
        if isinstance(x, Acc):
            lo = Fraction(0) if x.clip_lo is None else max(x.clip_lo, Fraction(0))
            hi = None if x.clip_hi is None else max(x.clip_hi, Fraction(0))
            return replace(x, clip_lo=lo, clip_hi=hi)
        x = self._ints(x, "its input")
        if x.lo >= 0:
            return x
        raise _Refused(f"ReLU of the quantized tensor {x.tensor!r}; hwq fuses a ReLU into the "
                       "requantization: put it before the Quant node (as Brevitas exports "
                       "QuantReLU)")

    def _op_Clip(self, node: Any, ins: list, attrs: dict) -> Any:
        bounds = []
        for i, key in ((1, "min"), (2, "max")):
            v = ins[i] if len(ins) > i else None
            if v is not None and not isinstance(v, Const):
                raise _Refused("clip bounds must be constants")
            value = float(v.value) if v is not None else attrs.get(key)
            bounds.append(None if value is None or not np.isfinite(value)
                          else Fraction(float(value)))
        lo, hi = bounds
        x = ins[0]
        if isinstance(x, Acc):
            if x.clip_lo is not None and lo is not None:
                lo = max(lo, x.clip_lo)
            if x.clip_hi is not None and hi is not None:
                hi = min(hi, x.clip_hi)
            return replace(x, clip_lo=lo if lo is not None else x.clip_lo,
                           clip_hi=hi if hi is not None else x.clip_hi)
        x = self._ints(x, "its input")
        if (lo is None or lo <= x.lo * x.scale) and (hi is None or hi >= x.hi * x.scale):
            return x
        raise _Refused(f"clamp of the quantized tensor {x.tensor!r}; hwq fuses a clamp into "
                       "the requantization: put it before the Quant node")

    # ------------------------------------------------------------------ shapes
    def _op_Flatten(self, node: Any, ins: list, attrs: dict) -> Any:
        if attrs.get("axis", 1) != 1:
            raise _Refused(f"axis={attrs['axis']}; hwq flattens (N, C, H, W) to (N, C*H*W)")
        return self._flatten(node, ins[0])

    def _op_Reshape(self, node: Any, ins: list, attrs: dict) -> Any:
        target = ins[1]
        if not isinstance(target, Const):
            raise _Refused("the target shape must be a constant")
        dims = [int(d) for d in np.asarray(target.value).ravel()]
        v = ins[0]
        shape = v.shape if isinstance(v, Ints | Acc) else None
        k = int(np.prod(shape)) if shape else -2
        if len(dims) != 2 or dims[1] not in (k, -1):
            raise _Refused(f"reshape to {dims}: only (N, -1) flattening is imported")
        return self._flatten(node, v)

    def _op_Squeeze(self, node: Any, ins: list, attrs: dict) -> Any:
        v = ins[0]
        shape = v.shape if isinstance(v, Ints | Acc) else ()
        if len(shape) != 3 or shape[1:] != (1, 1):
            raise _Refused(f"only (N, C, 1, 1) -> (N, C) is imported, not {shape}")
        return self._flatten(node, v)

    def _flatten(self, node: Any, v: Any) -> Any:
        if isinstance(v, Acc):
            flat = (int(np.prod(v.shape)),)
            return replace(v, post=v.post + (("flatten", {}),), shape=flat)
        x = self._ints(v, "its input")
        if len(x.shape) == 1:
            return x
        name = self._name(node.output[0])
        self._push(Flatten(name=name, inputs=(x.tensor,)), x.lo, x.hi, _where(node))
        return replace(x, tensor=name, shape=(int(np.prod(x.shape)),))

    def _op_Cast(self, node: Any, ins: list, attrs: dict) -> Any:
        if attrs.get("to") not in _FLOAT_TYPES:
            raise _Refused(f"cast to ONNX type {attrs.get('to')}; only float casts are "
                           "imported (hwq's integers are exact in them)")
        return ins[0]

    def _op_Identity(self, node: Any, ins: list, attrs: dict) -> Any:
        return ins[0]

    _op_Dropout = _op_Identity

    def _op_Constant(self, node: Any, ins: list, attrs: dict) -> Const:
        if "value" not in attrs:
            raise _Refused("only a Constant with a 'value' tensor is imported")
        return Const(np.asarray(attrs["value"]))

    # ------------------------------------------------------------------ folding
    def _channel_const(self, c: Const | Weight, acc: Acc, what: str) -> list[Fraction]:
        """A constant that is one value per channel of ``acc`` (or one value)."""
        value = (c.ints * c.scale) if isinstance(c, Weight) else np.asarray(c.value)
        arr = np.asarray(value, dtype=np.float64)
        ch = acc.channels
        full = (ch, *acc.shape[1:]) if len(acc.shape) == 3 else (ch,)
        try:
            b = np.broadcast_to(arr, (1, *full)).reshape(ch, -1)
        except ValueError:
            raise _Refused(f"{what} of shape {arr.shape} does not broadcast to the layer "
                           f"output (N, {', '.join(map(str, full))})") from None
        if (b != b[:, :1]).any():
            raise _Refused(f"{what} varies within a channel; hwq's requant is per channel")
        return fractions(b[:, 0])

    def _add_const(self, acc: Acc, offset: list[Fraction]) -> Acc:
        try:
            return acc.shifted(offset)
        except ValueError as exc:
            raise _Refused(f"{exc} cannot be folded into the requantization") from None

    def _times(self, acc: Acc, factor: list[Fraction]) -> Acc:
        if any(f == 0 for f in factor):
            raise _Refused("a factor of 0 (a constant output) has no hwq requantization")
        negative = [c for c, f in enumerate(factor) if f < 0]
        if negative:
            acc = self._negate(acc, negative)
            factor = [abs(f) for f in factor]
        try:
            return acc.scaled(factor)
        except ValueError as exc:
            raise _Refused(f"{exc} cannot be folded into the requantization") from None

    def _negate(self, acc: Acc, channels: list[int]) -> Acc:
        """Negative factors: negate those output channels' weights and offsets."""
        if acc.kind not in ("conv2d", "linear") or acc.clip_lo is not None or \
                acc.clip_hi is not None:
            raise _Refused("a negative factor; hwq's requant multiplier is positive (only a "
                           "conv or linear layer's channels can be negated, before any clamp)")
        w = acc.params["weight"].copy()
        w[channels] = -w[channels]
        bits = acc.params["bits"]
        if int(np.abs(w).max(initial=0)) > 0 and (
                int(w.min()) < -(1 << (bits - 1)) or int(w.max()) > (1 << (bits - 1)) - 1):
            bits = bits + 1
            if bits > 8:
                raise _Refused("a negative factor would need the negated weights in 9 bits")
        beta = list(acc.beta)
        for c in channels:
            beta[c] = -beta[c]
        return replace(acc, params=dict(acc.params, weight=w, bits=bits), beta=tuple(beta))

    def _merge(self, a: Acc, b: Acc) -> Acc:
        """Two convolutions (or linear layers) of one tensor with one geometry, summed: one
        layer. Per channel, ``r_a * (acc_a + beta_a) + r_b * (acc_b + beta_b)`` is
        ``r * (k_a*acc_a + k_b*acc_b + k_a*beta_a + k_b*beta_b)`` with ``r = min(r_a, r_b)``
        when ``k = r_x / r`` are integers (how the exporter splits a wide layer)."""
        same = (a.kind == b.kind and a.kind in ("conv2d", "linear") and a.inputs == b.inputs
                and not (a.post or b.post)
                and a.clip_lo is a.clip_hi is b.clip_lo is b.clip_hi is None
                and all(a.params[k] == b.params[k] for k in a.params
                        if k not in ("weight", "bits"))
                and a.params["weight"].shape == b.params["weight"].shape)
        r = [min(x, y) for x, y in zip(a.r, b.r, strict=True)]
        ka = [x / m for x, m in zip(a.r, r, strict=True)]
        kb = [y / m for y, m in zip(b.r, r, strict=True)]
        if not same or any(k.denominator != 1 for k in ka + kb):
            raise _Refused(f"adds the unquantized outputs of {a.node} and {b.node}; hwq adds "
                           "two quantized tensors: quantize both inputs")
        shape = (-1,) + (1,) * (a.params["weight"].ndim - 1)
        fa = np.array([int(k) for k in ka], dtype=object).reshape(shape)
        fb = np.array([int(k) for k in kb], dtype=object).reshape(shape)
        w = a.params["weight"].astype(object) * fa + b.params["weight"].astype(object) * fb
        if np.abs(w).max(initial=0) >= 1 << 62:
            raise _Refused(f"the summed weights of {a.node} and {b.node} overflow int64")
        w = w.astype(np.int64)
        bits = max(a.params["bits"], b.params["bits"],
                   signed_bits_for(int(w.min(initial=0)), int(w.max(initial=0))))
        beta = tuple(x * p + y * q for x, y, p, q in zip(a.beta, b.beta, ka, kb, strict=True))
        return replace(a, params=dict(a.params, weight=w, bits=bits), r=tuple(r), beta=beta,
                       notes=a.notes + b.notes)


class _Refused(Exception):
    """A node that does not map (the driver adds the node's name and type)."""


class _Marker:
    def __init__(self, what: str) -> None:
        self.what = what


_INPUT = _Marker("the graph input")
_UNUSABLE = _Marker("a secondary output")


def _where(node: Any) -> str:
    name = node.name or node.output[0]
    return f"node {name!r} ({node.op_type})"


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


def _show(v: Any) -> str:
    arr = np.asarray(v)
    return f"{arr.ravel()[0]:g}" if arr.size == 1 else f"{arr.ravel()[:4].tolist()}..."


def _per_output_channel(w: Weight) -> list[Fraction]:
    """The weight scale per output channel (axis 0); refused if it varies along others."""
    s = w.scale.reshape(w.scale.shape[0], -1)
    if (s != s[:, :1]).any():
        raise _Refused(f"{w.node}: weight scales vary within an output channel; hwq's "
                       "requant is per output channel")
    return fractions(s[:, 0])


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
        raise _Refused(f"weights need {bits} bits ({int(w.min())}..{int(w.max())}); hwq's INT "
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
