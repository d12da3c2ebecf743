"""The importer's float nodes, folded into a pending requantization or passed through.

``Sub``/``Add`` of a constant (the bias), ``Mul``/``Div`` by a positive constant (a negative
per-channel factor negates a conv's or linear layer's channels), ``BatchNormalization``,
``Relu``/``Clip`` (the clamp), ``Flatten``/``Reshape``/``Squeeze``, float ``Cast``,
``Identity``/``Dropout`` and ``Constant``.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from hwq.golden._checks import signed_range
from hwq.ir import Flatten
from hwq.qonnx.values import Acc, Const, Ints, Refused, Weight, fractions, where

_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


class FoldingNodes:
    """Handlers ``_op_<type>(node, inputs, attributes)`` of the float ops (a mixin of the
    importer, which provides ``_ints``, ``_name`` and ``_push``)."""

    def _op_Sub(self, node: Any, ins: list, attrs: dict) -> Acc:
        a, b = ins[:2]
        if not (isinstance(a, Acc) and isinstance(b, Const | Weight)):
            raise Refused("only a layer's output minus a constant is imported")
        return self._add_const(a, [-v for v in self._channel_const(b, a, "subtrahend")])

    def _op_Mul(self, node: Any, ins: list, attrs: dict) -> Any:
        a, b = ins[:2]
        if isinstance(a, Const):
            a, b = b, a
        if not isinstance(b, Const):
            raise Refused("only a multiplication by a constant is imported")
        if isinstance(a, Ints):
            k = fractions(b.value)
            if len(set(k)) != 1 or k[0] <= 0:
                raise Refused("a quantized tensor times anything but one positive constant")
            return replace(a, scale=a.scale * k[0])
        if not isinstance(a, Acc):
            raise Refused("only a layer's output or a quantized tensor times a constant")
        return self._times(a, self._channel_const(b, a, "factor"))

    def _op_Div(self, node: Any, ins: list, attrs: dict) -> Any:
        a, b = ins[:2]
        if not isinstance(b, Const) or not (np.asarray(b.value) != 0).all():
            raise Refused("only a division by a non-zero constant is imported")
        k = fractions(b.value)
        if isinstance(a, Ints):
            if len(set(k)) != 1 or k[0] <= 0:
                raise Refused("a quantized tensor divided by anything but one positive "
                               "constant")
            return replace(a, scale=a.scale / k[0])
        if not isinstance(a, Acc):
            raise Refused("only a layer's output or a quantized tensor divided by a constant")
        return self._times(a, [1 / v for v in self._channel_const(b, a, "divisor")])

    def _op_BatchNormalization(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = ins[0]
        if not isinstance(x, Acc):
            raise Refused("BatchNormalization must follow a layer (before its Quant)")
        if not all(isinstance(v, Const) for v in ins[1:5]):
            raise Refused("BatchNormalization parameters must be constants")
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
        raise Refused(f"ReLU of the quantized tensor {x.tensor!r}; hwq fuses a ReLU into the "
                       "requantization: put it before the Quant node (as Brevitas exports "
                       "QuantReLU)")

    def _op_Clip(self, node: Any, ins: list, attrs: dict) -> Any:
        bounds = []
        for i, key in ((1, "min"), (2, "max")):
            v = ins[i] if len(ins) > i else None
            if v is not None and not isinstance(v, Const):
                raise Refused("clip bounds must be constants")
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
        raise Refused(f"clamp of the quantized tensor {x.tensor!r}; hwq fuses a clamp into "
                       "the requantization: put it before the Quant node")

    def _op_Flatten(self, node: Any, ins: list, attrs: dict) -> Any:
        if attrs.get("axis", 1) != 1:
            raise Refused(f"axis={attrs['axis']}; hwq flattens (N, C, H, W) to (N, C*H*W)")
        return self._flatten(node, ins[0])

    def _op_Reshape(self, node: Any, ins: list, attrs: dict) -> Any:
        target = ins[1]
        if not isinstance(target, Const):
            raise Refused("the target shape must be a constant")
        dims = [int(d) for d in np.asarray(target.value).ravel()]
        v = ins[0]
        shape = v.shape if isinstance(v, Ints | Acc) else None
        k = int(np.prod(shape)) if shape else -2
        if len(dims) != 2 or dims[1] not in (k, -1):
            raise Refused(f"reshape to {dims}: only (N, -1) flattening is imported")
        return self._flatten(node, v)

    def _op_Squeeze(self, node: Any, ins: list, attrs: dict) -> Any:
        v = ins[0]
        shape = v.shape if isinstance(v, Ints | Acc) else ()
        if len(shape) != 3 or shape[1:] != (1, 1):
            raise Refused(f"only (N, C, 1, 1) -> (N, C) is imported, not {shape}")
        return self._flatten(node, v)

    def _flatten(self, node: Any, v: Any) -> Any:
        if isinstance(v, Acc):
            flat = (int(np.prod(v.shape)),)
            return replace(v, post=v.post + (("flatten", {}),), shape=flat)
        x = self._ints(v, "its input")
        if len(x.shape) == 1:
            return x
        name = self._name(node.output[0])
        self._push(Flatten(name=name, inputs=(x.tensor,)), x.lo, x.hi, where(node))
        return replace(x, tensor=name, shape=(int(np.prod(x.shape)),))

    def _op_Cast(self, node: Any, ins: list, attrs: dict) -> Any:
        if attrs.get("to") not in _FLOAT_TYPES:
            raise Refused(f"cast to ONNX type {attrs.get('to')}; only float casts are "
                           "imported (hwq's integers are exact in them)")
        return ins[0]

    def _op_Identity(self, node: Any, ins: list, attrs: dict) -> Any:
        return ins[0]

    _op_Dropout = _op_Identity

    def _op_Constant(self, node: Any, ins: list, attrs: dict) -> Const:
        if "value" not in attrs:
            raise Refused("only a Constant with a 'value' tensor is imported")
        return Const(np.asarray(attrs["value"]))

    def _channel_const(self, c: Const | Weight, acc: Acc, what: str) -> list[Fraction]:
        """A constant that is one value per channel of ``acc`` (or one value)."""
        value = (c.ints * c.scale) if isinstance(c, Weight) else np.asarray(c.value)
        arr = np.asarray(value, dtype=np.float64)
        ch = acc.channels
        full = (ch, *acc.shape[1:]) if len(acc.shape) == 3 else (ch,)
        try:
            b = np.broadcast_to(arr, (1, *full)).reshape(ch, -1)
        except ValueError:
            raise Refused(f"{what} of shape {arr.shape} does not broadcast to the layer "
                           f"output (N, {', '.join(map(str, full))})") from None
        if (b != b[:, :1]).any():
            raise Refused(f"{what} varies within a channel; hwq's requant is per channel")
        return fractions(b[:, 0])

    def _add_const(self, acc: Acc, offset: list[Fraction]) -> Acc:
        try:
            return acc.shifted(offset)
        except ValueError as exc:
            raise Refused(f"{exc} cannot be folded into the requantization") from None

    def _times(self, acc: Acc, factor: list[Fraction]) -> Acc:
        if any(f == 0 for f in factor):
            raise Refused("a factor of 0 (a constant output) has no hwq requantization")
        negative = [c for c, f in enumerate(factor) if f < 0]
        if negative:
            acc = self._negate(acc, negative)
            factor = [abs(f) for f in factor]
        try:
            return acc.scaled(factor)
        except ValueError as exc:
            raise Refused(f"{exc} cannot be folded into the requantization") from None

    def _negate(self, acc: Acc, channels: list[int]) -> Acc:
        """Negative factors: negate those output channels' weights and offsets."""
        if acc.kind not in ("conv2d", "linear") or acc.clip_lo is not None or \
                acc.clip_hi is not None:
            raise Refused("a negative factor; hwq's requant multiplier is positive (only a "
                           "conv or linear layer's channels can be negated, before any clamp)")
        w = acc.params["weight"].copy()
        w[channels] = -w[channels]
        bits = acc.params["bits"]
        lo, hi = signed_range(bits)
        if int(np.abs(w).max(initial=0)) > 0 and (int(w.min()) < lo or int(w.max()) > hi):
            bits = bits + 1
            if bits > 8:
                raise Refused("a negative factor would need the negated weights in 9 bits")
        beta = list(acc.beta)
        for c in channels:
            beta[c] = -beta[c]
        return replace(acc, params=dict(acc.params, weight=w, bits=bits), beta=tuple(beta))
